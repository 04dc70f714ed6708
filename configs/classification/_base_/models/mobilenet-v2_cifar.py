# MobileNetV2 (width 1.0) for CIFAR: mmpretrain's MobileNetV2 with a stride-1 stem and stride-1 second stage, so
# a 32x32 image ends on a 4x4 map (as in https://github.com/kuangliu/pytorch-cifar/blob/master/models/mobilenetv2.py).
# MobileNetV2_CIFAR is registered by skipconv_det.
model = dict(
    type='ImageClassifier',
    backbone=dict(type='MobileNetV2_CIFAR', widen_factor=1.0),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=1280,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
    ))
