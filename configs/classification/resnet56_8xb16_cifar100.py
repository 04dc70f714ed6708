# ResNet-56 on CIFAR-100, from scratch. mmpretrain's CIFAR-100 data pipeline (as CIFAR-10's, with CIFAR-100
# normalisation) and its CIFAR-100 schedule (see ./_base_/schedules/cifar100_bs128.py).
_base_ = [
    './_base_/models/resnet56_cifar.py',
    'mmpretrain::_base_/datasets/cifar100_bs16.py',
    './_base_/schedules/cifar100_bs128.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['skipconv_det'], allow_failed_imports=False)

model = dict(head=dict(num_classes=100))
