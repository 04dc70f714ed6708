# CPU-sized CIFAR MobileNetV2 for the classification study (tools/ablation.py --tasks cls --cls-models
# mobilenetv2): the model of ../classification/mobilenet-v2_8xb16_cifar10.py (CIFAR strides) at half its width,
# with the study's data and 24-epoch schedule. widen_factor 0.5: 30 M multiply-adds per image instead of 91 M
# (the last 1x1 conv keeps its 1280 channels, as MobileNetV2 does at widths below 1).
_base_ = ['../classification/_base_/models/mobilenet-v2_cifar.py', './_base_/synthetic-cifar10-hard_1xb64-24e.py']

model = dict(backbone=dict(widen_factor=0.5))
