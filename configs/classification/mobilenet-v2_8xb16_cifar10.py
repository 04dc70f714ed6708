# MobileNetV2 on CIFAR-10, from scratch. Data pipeline and schedule are mmpretrain's CIFAR-10 ones (as in its
# resnet/resnet18_8xb16_cifar10.py): random 32x32 crop of the 4-px padded image + horizontal flip, batch 8 x 16 =
# 128, SGD lr 0.1, momentum 0.9, weight decay 1e-4, 200 epochs, lr x0.1 at epochs 100 and 150.
_base_ = [
    './_base_/models/mobilenet-v2_cifar.py',
    'mmpretrain::_base_/datasets/cifar10_bs16.py',
    'mmpretrain::_base_/schedules/cifar10_bs128.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['skipconv_det'], allow_failed_imports=False)
