# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""MobileNetV2 for 32x32 inputs: mmpretrain's MobileNetV2 with the CIFAR strides.

M. Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018.
https://arxiv.org/abs/1801.04381

The ImageNet network downsamples by 32, which turns a CIFAR image into a 1x1 map: the last stages then see a
single position, and a SkipConv there has nothing to skip. The usual CIFAR adaptation (e.g.
https://github.com/kuangliu/pytorch-cifar/blob/master/models/mobilenetv2.py) runs the stem and the second stage at
stride 1, so the network downsamples by 8 and ends on a 4x4 map. Nothing else changes.
"""
from mmcv.cnn import ConvModule
from mmpretrain.models.backbones import MobileNetV2
from mmpretrain.registry import MODELS


@MODELS.register_module()
class MobileNetV2_CIFAR(MobileNetV2):
    """MobileNetV2 with a stride-1 stem and a stride-1 second stage (output stride 8 instead of 32).

    Takes exactly the arguments of mmpretrain's ``MobileNetV2`` (``widen_factor``, ``out_indices``,
    ``conv_cfg``, ``norm_cfg``, ``act_cfg``, ...).

    Example:
        >>> import torch
        >>> from skipconv_det.models.backbones import MobileNetV2_CIFAR
        >>> self = MobileNetV2_CIFAR()
        >>> [tuple(out.shape) for out in self(torch.rand(1, 3, 32, 32))]
        [(1, 1280, 4, 4)]
    """

    # expand_ratio, channels, num_blocks, stride: MobileNetV2.arch_settings with stage 2 at stride 1 (was 2).
    arch_settings = [[1, 16, 1, 1], [6, 24, 2, 1], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1],
                     [6, 160, 3, 2], [6, 320, 1, 1]]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # The parent hard-codes a stride-2 stem; rebuild it at stride 1 with the same settings.
        self.conv1 = ConvModule(
            in_channels=3,
            out_channels=self.conv1.conv.out_channels,
            kernel_size=3,
            stride=1,
            padding=1,
            conv_cfg=self.conv_cfg,
            norm_cfg=self.norm_cfg,
            act_cfg=self.act_cfg)
