# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""VGG with narrower stages: mmpretrain's VGG with the stage widths as an argument.

K. Simonyan, A. Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition", ICLR 2015.
https://arxiv.org/abs/1409.1556

mmpretrain 1.2.0's ``VGG`` fixes its widths at 64, 128, 256, 512 and 512 channels; a CIFAR VGG-16 then costs about
eight times a ResNet-20's multiply-adds, more than a CPU demo can train for several seeds. ``ResNet`` takes
``base_channels`` and ``MobileNetV2`` a ``widen_factor`` for this; this class gives VGG the same, and nothing else.
"""
import torch.nn as nn
from mmpretrain.models.backbones import VGG
from mmpretrain.models.backbones.vgg import make_vgg_layer
from mmpretrain.registry import MODELS


@MODELS.register_module()
class NarrowVGG(VGG):
    """VGG whose stage i has ``base_channels * 2**min(i, 3)`` channels (``base_channels=64`` is mmpretrain's VGG).

    Args:
        depth (int): 11, 13, 16 or 19.
        base_channels (int): Width of the first stage. Default: 64.
        dilations (Sequence[int]): Dilation of each stage. Default: (1, 1, 1, 1, 1).
        conv_cfg, norm_cfg, act_cfg, ceil_mode, with_last_pool: As in mmpretrain's ``VGG``.
        **kwargs: Any other argument of mmpretrain's ``VGG`` (``num_classes=-1`` is required: its classifier
            assumes the full width).

    Example:
        >>> import torch
        >>> from skipconv_det.models.backbones import NarrowVGG
        >>> self = NarrowVGG(16, base_channels=16, norm_cfg=dict(type='BN'))
        >>> [tuple(out.shape) for out in self(torch.rand(1, 3, 32, 32))]
        [(1, 128, 1, 1)]
    """

    def __init__(self,
                 depth,
                 base_channels=64,
                 dilations=(1, 1, 1, 1, 1),
                 conv_cfg=None,
                 norm_cfg=None,
                 act_cfg=dict(type='ReLU'),
                 ceil_mode=False,
                 with_last_pool=True,
                 **kwargs):
        if kwargs.get('num_classes', -1) > 0:
            raise ValueError('NarrowVGG has no classifier of its own: use num_classes=-1 and a classification head.')
        super().__init__(depth, dilations=dilations, conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg,
                         ceil_mode=ceil_mode, with_last_pool=with_last_pool, **kwargs)
        # The parent builds its layers at full width; rebuild them at this width with the same settings (the
        # module order, and so range_sub_modules, stay the same).
        layers, in_channels = [], 3
        for i, num_blocks in enumerate(self.stage_blocks):
            out_channels = base_channels * 2**min(i, 3)
            layers += make_vgg_layer(in_channels, out_channels, num_blocks, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
                                     act_cfg=act_cfg, dilation=dilations[i], with_norm=norm_cfg is not None,
                                     ceil_mode=ceil_mode)
            in_channels = out_channels
        if not with_last_pool:
            layers.pop(-1)
        self.features = nn.Sequential(*layers)
        self.in_channels = in_channels
