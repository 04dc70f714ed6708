from .cifar_resnet import CifarResNet
from .mobilenet_v2_cifar import MobileNetV2_CIFAR

__all__ = ['CifarResNet', 'MobileNetV2_CIFAR']
