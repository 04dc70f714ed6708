# Planned by tools/plan.py: a SkipConv setting per layer of faster-rcnn_r18-w16-scratch_fpn_1xb8-6e_synthetic-coco.py
# for at most 0.62x of its FLOPs, with the least predicted loss increase (+0.0035;
# predicted FLOPs ratio 0.618); layers: 7 checkerboard/linear, 8 dense, 14 grid+shift/linear.
# Measured after 150 dense warm-up iterations on 12 training batches (seed 0).
# Command: python tools/plan.py configs/demo/faster-rcnn_r18-w16-scratch_fpn_1xb8-6e_synthetic-coco.py --flops-ratio 0.62 --warmup-iters 150 --batches 12 --work-dir work_dirs/plan/det --out configs/demo/faster-rcnn_r18-w16-scratch-skipconv-plan0.62_fpn_1xb8-6e_synthetic-coco.py
_base_ = 'faster-rcnn_r18-w16-scratch_fpn_1xb8-6e_synthetic-coco.py'
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
            'backbone.conv1',
            'backbone.layer1.0.conv1',
            'backbone.layer2.0.conv1',
            'backbone.layer3.1.conv2',
            'neck.lateral_convs.3.conv',
            'neck.fpn_convs.2.conv',
            'rpn_head.rpn_conv',
        ],
        exclude=[],
    ),
    skip_pattern='grid',
    shift_channels=True,
    fill='linear',
    include=[
        'backbone.layer1.0.conv2',
        'backbone.layer1.1.conv2',
        'backbone.layer2.0.conv2',
        'backbone.layer2.1.conv1',
        'backbone.layer2.1.conv2',
        'backbone.layer3.0.conv1',
        'backbone.layer3.0.conv2',
        'backbone.layer3.1.conv1',
        'backbone.layer4.0.conv1',
        'backbone.layer4.0.conv2',
        'backbone.layer4.1.conv1',
        'backbone.layer4.1.conv2',
        'neck.fpn_convs.1.conv',
        'neck.fpn_convs.3.conv',
    ],
    exclude=[],
)
