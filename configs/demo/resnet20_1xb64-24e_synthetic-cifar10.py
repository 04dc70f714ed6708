# CPU-sized CIFAR ResNet-20 for the classification study (tools/ablation.py --tasks cls --cls-models resnet20): the
# model of ../classification/resnet56_8xb16_cifar10.py at depth 20, with the study's data and 24-epoch schedule.
_base_ = ['../classification/_base_/models/resnet56_cifar.py', './_base_/synthetic-cifar10-hard_1xb64-24e.py']

model = dict(backbone=dict(depth=20))
