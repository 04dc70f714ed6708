# ResNet-56 for CIFAR (He et al., CVPR 2016, Sec. 4.2): 3x3 stem, three stages of 9 basic blocks with 16, 32 and
# 64 channels, global average pooling and one linear layer. CifarResNet is registered by skipconv_det.
model = dict(
    type='ImageClassifier',
    backbone=dict(type='CifarResNet', depth=56),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=64,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
    ))
