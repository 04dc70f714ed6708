# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""Fold BatchNorm into the convolution before it, exactly for SkipConv too.

A SkipConv's skipped positions hold zeros or values filled in from kept ones, and BN then shifts them like every
other position. Folding BN's scale into the weight and its shift into a conv bias would leave the shift out at the
positions the conv does not compute, so a SkipConv keeps the shift apart (``SkipConv2d.shift``), added after the
fill. mmcv's ``fuse_conv_bn`` gets this right on SkipConvs without a bias (the usual conv-BN pair) through
``SkipConv2d``; this one also folds SkipConvs with a bias of their own.
"""
import torch
import torch.nn as nn
from mmcv.cnn.utils.fuse_conv_bn import _fuse_conv_bn
from torch.nn.modules.batchnorm import _BatchNorm

from ..ops import SkipConv2d


@torch.no_grad()
def _fuse_skipconv_bn(conv: SkipConv2d, bn: _BatchNorm) -> SkipConv2d:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    if conv.shift is not None:
        shift = shift + conv.shift * scale
    conv.weight = nn.Parameter(conv.weight * scale.view(-1, 1, 1, 1))
    if conv.bias is not None:
        conv.bias.mul_(scale)
    conv.shift = shift
    return conv


def fuse_conv_bn(module: nn.Module) -> nn.Module:
    """Fold every BatchNorm that directly follows a conv (in module registration order, as mmcv's
    ``fuse_conv_bn``) into it and replace the BN with ``nn.Identity``; for inference (eval mode).

    Args:
        module (nn.Module): The model; changed in place.

    Returns:
        nn.Module: The model with BNs folded.
    """
    last_conv, last_conv_name = None, None
    for name, child in module.named_children():
        if isinstance(child, (_BatchNorm, nn.SyncBatchNorm)):
            if last_conv is None:  # a BN that follows something else
                continue
            fuse = _fuse_skipconv_bn if isinstance(last_conv, SkipConv2d) else _fuse_conv_bn
            module._modules[last_conv_name] = fuse(last_conv, child)
            module._modules[name] = nn.Identity()
            last_conv = None
        elif isinstance(child, nn.Conv2d):
            last_conv, last_conv_name = child, name
        else:
            fuse_conv_bn(child)
    return module
