# VGG-16 (with BN) for 32x32 inputs, the usual CIFAR variant
# (e.g. https://github.com/kuangliu/pytorch-cifar/blob/master/models/vgg.py): the 13 convs of VGG-16 and a single
# linear classifier on the 512-d feature left after the five 2x2 poolings, instead of the ImageNet model's three
# 4096-wide FC layers (mmpretrain's VGG without its classifier: num_classes=-1).
model = dict(
    type='ImageClassifier',
    backbone=dict(type='VGG', depth=16, norm_cfg=dict(type='BN'), num_classes=-1),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=512,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
    ))
