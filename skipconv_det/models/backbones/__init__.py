"""mmpretrain backbones (imports mmpretrain), registered by ``import skipconv_det`` where mmpretrain is installed."""
from .cifar_resnet import CifarResNet
from .mobilenet_v2_cifar import MobileNetV2_CIFAR
from .narrow_vgg import NarrowVGG

__all__ = ['CifarResNet', 'MobileNetV2_CIFAR', 'NarrowVGG']
