# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""The 3-stage CIFAR ResNet of He et al. (ResNet-20/32/44/56/110), built from mmpretrain's own blocks.

K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image Recognition", CVPR 2016, Sec. 4.2.
https://arxiv.org/abs/1512.03385

mmpretrain 1.2.0's ``ResNet_CIFAR`` only knows the ImageNet depths (18/34/50/101/152, four stages of 64-512
channels). The CIFAR ResNets the SkipConv paper and most CIFAR work use have depth 6n + 2: three stages of n basic
blocks with 16, 32 and 64 channels. They differ from ``ResNet_CIFAR`` only in the depth table and the defaults,
so this class adds exactly that and reuses everything else (stem, blocks, ``conv_cfg`` plumbing).
"""
from mmpretrain.models.backbones import ResNet_CIFAR
from mmpretrain.models.backbones.resnet import BasicBlock
from mmpretrain.registry import MODELS


@MODELS.register_module()
class CifarResNet(ResNet_CIFAR):
    """ResNet-(6n+2) for 32x32 inputs: a 3x3 stem and three stages of n basic blocks (16, 32, 64 channels).

    One difference from the paper: where a stage changes width, mmpretrain's ``ResLayer`` projects the shortcut
    with a 1x1 conv + BN (the paper's option B) instead of the paper's parameter-free zero-padding (option A).
    That adds 0.01M parameters to ResNet-56 and makes every shortcut an ordinary conv that ``conv_cfg`` reaches.

    Args:
        depth (int): 20, 32, 44, 56 or 110.
        stem_channels (int): Output channels of the 3x3 stem. Default: 16.
        base_channels (int): Channels of the first stage (doubled per stage). Default: 16.
        num_stages (int): Number of stages. Default: 3.
        strides (Sequence[int]): Stride of the first block of each stage. Default: (1, 2, 2).
        dilations (Sequence[int]): Dilation of each stage. Default: (1, 1, 1).
        out_indices (Sequence[int]): Stages to output. Default: (2, ).
        **kwargs: Any other argument of mmpretrain's ``ResNet_CIFAR`` / ``ResNet`` (``conv_cfg``, ``norm_cfg``,
            ``zero_init_residual``, ``init_cfg``, ...).

    Example:
        >>> import torch
        >>> from skipconv_det.models.backbones import CifarResNet
        >>> self = CifarResNet(depth=56)
        >>> [tuple(out.shape) for out in self(torch.rand(1, 3, 32, 32))]
        [(1, 64, 8, 8)]
    """

    arch_settings = {depth: (BasicBlock, ((depth - 2) // 6, ) * 3) for depth in (20, 32, 44, 56, 110)}

    def __init__(self,
                 depth,
                 stem_channels=16,
                 base_channels=16,
                 num_stages=3,
                 strides=(1, 2, 2),
                 dilations=(1, 1, 1),
                 out_indices=(2, ),
                 **kwargs):
        super().__init__(
            depth,
            stem_channels=stem_channels,
            base_channels=base_channels,
            num_stages=num_stages,
            strides=strides,
            dilations=dilations,
            out_indices=out_indices,
            **kwargs)
