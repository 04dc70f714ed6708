# CPU-sized CIFAR VGG-16-BN for the classification study (tools/ablation.py --tasks cls --cls-models vgg16bn): the
# model of ../classification/vgg16bn_8xb16_cifar10.py (13 convs with BN) at a quarter of its width, with the
# study's data and 24-epoch schedule. Stages of 16/32/64/128/128 channels instead of 64/128/256/512/512: 20 M
# multiply-adds per image instead of 314 M, half of a ResNet-20's.
_base_ = ['../classification/_base_/models/vgg16bn_cifar.py', './_base_/synthetic-cifar10-hard_1xb64-24e.py']

# NarrowVGG is mmpretrain's VGG with base_channels (registered by skipconv_det).
model = dict(backbone=dict(type='NarrowVGG', base_channels=16), head=dict(in_channels=128))
