# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""An ``RPNHead`` whose shared conv honours ``conv_cfg``.

mmdet's ``RPNHead`` hard-codes its shared 3x3 conv as ``nn.Conv2d`` (or ``ConvModule`` without ``conv_cfg`` when
``num_convs > 1``), so a config cannot change its conv type. This subclass builds the same layers from
``conv_cfg``; with ``conv_cfg=None`` it is exactly ``RPNHead`` (same layers, same state_dict keys).
"""
from typing import Optional

from mmcv.cnn import ConvModule, build_conv_layer
from mmdet.models.dense_heads import RPNHead
from mmdet.registry import MODELS
from torch import nn


@MODELS.register_module()
class ConvCfgRPNHead(RPNHead):
    """``RPNHead`` with ``conv_cfg`` for its shared conv(s); the prediction convs rpn_cls/rpn_reg stay dense.

    Args:
        *args, **kwargs: As in ``mmdet.models.dense_heads.RPNHead``.
        conv_cfg (dict, optional): Config of the shared 3x3 conv(s), e.g. ``dict(type='SkipConv')``.
            Default: None (``nn.Conv2d``).
    """

    def __init__(self, *args, conv_cfg: Optional[dict] = None, **kwargs) -> None:
        # Set before RPNHead.__init__, which calls _init_layers.
        self.conv_cfg = conv_cfg
        super().__init__(*args, **kwargs)

    def _init_layers(self) -> None:
        super()._init_layers()
        if self.num_convs > 1:
            # As RPNHead builds them, plus conv_cfg; inplace=False for the same autograd reason as there.
            self.rpn_conv = nn.Sequential(*[
                ConvModule(self.in_channels if i == 0 else self.feat_channels, self.feat_channels, 3, padding=1,
                           conv_cfg=self.conv_cfg, inplace=False) for i in range(self.num_convs)
            ])
        else:
            self.rpn_conv = build_conv_layer(self.conv_cfg, self.in_channels, self.feat_channels, 3, padding=1)
