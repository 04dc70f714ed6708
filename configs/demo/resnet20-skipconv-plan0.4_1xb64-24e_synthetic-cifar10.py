# Planned by tools/plan.py: a SkipConv setting per layer of resnet20_1xb64-24e_synthetic-cifar10.py
# for at most 0.4x of its FLOPs, with the least predicted loss increase (+0.1382;
# predicted FLOPs ratio 0.392); layers: 6 checkerboard/linear, 4 dense, 11 grid+shift/linear.
# Measured after 600 dense warm-up iterations on 12 training batches (seed 0).
# Command: python tools/plan.py configs/demo/resnet20_1xb64-24e_synthetic-cifar10.py --flops-ratio 0.4 --warmup-iters 600 --batches 12 --work-dir work_dirs/plan/resnet20 --out configs/demo/resnet20-skipconv-plan0.4_1xb64-24e_synthetic-cifar10.py
_base_ = 'resnet20_1xb64-24e_synthetic-cifar10.py'
custom_imports = dict(imports=['skipconv_det'], allow_failed_imports=False)

# One SkipConvModel per setting, each converting exactly the layers it lists.
model = dict(
    _delete_=True,
    type='SkipConvModel',
    model=dict(
        type='SkipConvModel',
        model={{_base_.model}},
        skip_pattern='checkerboard',
        shift_channels=False,
        fill='linear',
        include=[
            'backbone.layer1.0.conv2',
            'backbone.layer1.2.conv2',
            'backbone.layer2.0.conv1',
            'backbone.layer2.0.conv2',
            'backbone.layer2.1.conv1',
            'backbone.layer2.2.conv1',
        ],
        exclude=[],
    ),
    skip_pattern='grid',
    shift_channels=True,
    fill='linear',
    include=[
        'backbone.layer1.1.conv1',
        'backbone.layer1.1.conv2',
        'backbone.layer1.2.conv1',
        'backbone.layer2.1.conv2',
        'backbone.layer2.2.conv2',
        'backbone.layer3.0.conv1',
        'backbone.layer3.0.conv2',
        'backbone.layer3.1.conv1',
        'backbone.layer3.1.conv2',
        'backbone.layer3.2.conv1',
        'backbone.layer3.2.conv2',
    ],
    exclude=[],
)
