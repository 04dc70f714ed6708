# Planned by tools/plan.py: a SkipConv setting per layer of mobilenet-v2-w0.5_1xb64-24e_synthetic-cifar10.py
# for at most 0.62x of its FLOPs, with the least predicted loss increase (+0.2896;
# predicted FLOPs ratio 0.618); layers: 29 checkerboard/linear, 5 dense.
# Measured after 600 dense warm-up iterations on 12 training batches (seed 0, BN batch statistics).
# Command: python tools/plan.py configs/demo/mobilenet-v2-w0.5_1xb64-24e_synthetic-cifar10.py --flops-ratio 0.62 --kernel-sizes 1 --bn-stats batch --choices checkerboard --warmup-iters 600 --batches 12 --work-dir work_dirs/plan/mobilenetv2_1x1 --cfg-options train_dataloader.dataset.data_root=data/synthetic_cifar10_medium/ --out configs/demo/mobilenet-v2-w0.5-skipconv-1x1-plan0.62_1xb64-24e_synthetic-cifar10.py
_base_ = 'mobilenet-v2-w0.5_1xb64-24e_synthetic-cifar10.py'
custom_imports = dict(imports=['skipconv_det'], allow_failed_imports=False)

# One SkipConvModel per setting, each converting exactly the layers it lists.
model = dict(
    _delete_=True,
    type='SkipConvModel',
    model={{_base_.model}},
    skip_pattern='checkerboard',
    shift_channels=False,
    fill='linear',
    include=[
        'backbone.layer2.0.conv.2.conv',
        'backbone.layer2.1.conv.0.conv',
        'backbone.layer2.1.conv.2.conv',
        'backbone.layer3.0.conv.0.conv',
        'backbone.layer3.1.conv.0.conv',
        'backbone.layer3.1.conv.2.conv',
        'backbone.layer3.2.conv.0.conv',
        'backbone.layer3.2.conv.2.conv',
        'backbone.layer4.0.conv.0.conv',
        'backbone.layer4.1.conv.0.conv',
        'backbone.layer4.1.conv.2.conv',
        'backbone.layer4.2.conv.0.conv',
        'backbone.layer4.2.conv.2.conv',
        'backbone.layer4.3.conv.0.conv',
        'backbone.layer4.3.conv.2.conv',
        'backbone.layer5.0.conv.0.conv',
        'backbone.layer5.0.conv.2.conv',
        'backbone.layer5.1.conv.0.conv',
        'backbone.layer5.1.conv.2.conv',
        'backbone.layer5.2.conv.0.conv',
        'backbone.layer5.2.conv.2.conv',
        'backbone.layer6.0.conv.0.conv',
        'backbone.layer6.1.conv.0.conv',
        'backbone.layer6.1.conv.2.conv',
        'backbone.layer6.2.conv.0.conv',
        'backbone.layer6.2.conv.2.conv',
        'backbone.layer7.0.conv.0.conv',
        'backbone.layer7.0.conv.2.conv',
        'backbone.conv2.conv',
    ],
    exclude=[],
)
