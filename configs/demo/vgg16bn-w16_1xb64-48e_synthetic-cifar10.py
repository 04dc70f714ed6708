# The CPU-sized VGG-16-BN of vgg16bn-w16_1xb64-24e_synthetic-cifar10.py on the 48-epoch schedule
# (tools/ablation.py --tasks cls --cls-models vgg16bn-48e), where every dense run leaves the loss plateau.
_base_ = ['../classification/_base_/models/vgg16bn_cifar.py', './_base_/synthetic-cifar10-hard_1xb64-48e.py']

# NarrowVGG is mmpretrain's VGG with base_channels (registered by skipconv_det).
model = dict(backbone=dict(type='NarrowVGG', base_channels=16), head=dict(in_channels=128))
