# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""SkipConv: convolution computed only on a structured lattice of output positions.

P. Singh, V. P. Namboodiri, "SkipConv: Skip Convolution for Computationally Efficient Deep CNNs", IJCNN 2020.
https://ieeexplore.ieee.org/abstract/document/9207705

The output equals ``F.conv2d(x, weight, bias, ...) * skip_mask(...)`` (exact zeros, bias included, at skipped
positions), but the dense output is never computed. Every pattern keeps a union of period-2 sub-lattices of the
output grid, and a sub-lattice is an ordinary convolution with twice the stride. We align each sub-lattice with the
input through the convolution's own (implicit) zero padding rather than padding or shifting the input, so the
big convolution reads the input in place; the few border positions that would need asymmetric padding come from
thin padded strips. The work done is exactly the kept positions' multiply-adds, which FLOP counters that trace
aten convolutions (mmengine.analysis) see as such.

Exported to ONNX and under torch.compile the output is assembled from its four cells instead, and compiled
inference can hold SkipConv as one opaque op: :func:`skip_conv2d` chooses the path once per call
(:mod:`._paths`).
"""
from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.registry import MODELS
from torch.nn.modules.utils import _pair

from ._cells import forced_cell_assembly
from ._custom_op import compile_mode_in_effect, skip_conv2d_by_custom_op
from ._paths import PATHS, choose_path
from .fill import DEFAULT_FILL, check_fill
from .lattice import IntOrPair
from .patterns import check_pattern, skip_density

# Every path a call can take (chosen by choose_path), each taking skip_conv2d's checked arguments.
_PATHS = {'custom_op': skip_conv2d_by_custom_op, **PATHS}


def _check_operands(x: torch.Tensor, weight: torch.Tensor, groups: int) -> None:
    if x.dim() != 4:
        raise ValueError(f'SkipConv expects a 4D input (N, C, H, W), got shape {tuple(x.shape)}; '
                         'add a batch dimension with x.unsqueeze(0).')
    if weight.dim() != 4:
        raise ValueError(f'SkipConv expects a 4D weight (C_out, C_in // groups, kH, kW), got {tuple(weight.shape)}.')
    in_channels = weight.shape[1] * groups
    if x.shape[1] != in_channels:
        raise ValueError(f'SkipConv got an input with {x.shape[1]} channels, but its weight expects '
                         f'{in_channels} (= {weight.shape[1]} per group x {groups} groups); '
                         f'feed a tensor of shape (N, {in_channels}, H, W) or fix in_channels.')
    if x.device != weight.device:
        raise ValueError(f'SkipConv got an input on {x.device} but its weight is on {weight.device}; move one '
                         f'of them, e.g. x.to({str(weight.device)!r}) or layer.to({str(x.device)!r}).')
    if not x.is_floating_point() or (x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type)):
        raise TypeError(f'SkipConv got a {x.dtype} input for a {weight.dtype} weight; it needs the same floating '
                        f'dtype for both, e.g. x.to({weight.dtype}) or layer.to({x.dtype}).')


def skip_conv2d(x: torch.Tensor,
                weight: torch.Tensor,
                bias: Optional[torch.Tensor] = None,
                stride: IntOrPair = 1,
                padding: Union[str, IntOrPair] = 0,
                dilation: IntOrPair = 1,
                groups: int = 1,
                skip_pattern: str = 'checkerboard',
                shift_channels: bool = False,
                fill: str = DEFAULT_FILL,
                shift: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Functional SkipConv: ``F.conv2d`` computed only on the pattern's output positions; the others hold zeros
    or values filled in from their computed neighbours (``fill``).

    Args:
        x (Tensor): Input of shape (N, C_in, H, W), NCHW or channels_last; the output keeps its memory format.
        weight (Tensor): Dense weight of shape (C_out, C_in // groups, kH, kW).
        bias (Tensor, optional): Shape (C_out,). Added at kept positions only. Default: None.
        stride, padding, dilation, groups: As in ``F.conv2d`` (padding may be 'same' or 'valid').
        skip_pattern (str): One of 'checkerboard', 'row', 'col', 'grid', 'none', defined on the output grid.
            Default: 'checkerboard'.
        shift_channels (bool): Split the output channels into as many contiguous groups as the pattern has
            phases and shift the pattern by one phase per group, so the groups together cover every position.
            Default: False.
        fill (str): What the skipped positions hold: 'zero' (exact zeros, bias included), 'nearest' (the value of
            the nearest computed neighbour) or 'linear' (the mean of the computed 4-neighbours, else of the
            diagonal ones); see :mod:`skipconv_det.ops.fill` for the exact rules. No fill costs a multiply-add of
            the convolution. Default: 'linear'.
        shift (Tensor, optional): Shape (C_out,). Added at every output position, kept and skipped, after the
            fill: where a BatchNorm folded into the conv puts its shift (see
            :func:`skipconv_det.models.fuse_conv_bn`). Default: None.

    Returns:
        Tensor: (N, C_out, H_out, W_out); with ``fill='zero'`` equal to ``F.conv2d(...) * skip_mask(...)``
        (plus ``shift``).
    """
    check_pattern(skip_pattern)
    check_fill(fill)
    _check_operands(x, weight, groups)
    stride, dilation = _pair(stride), _pair(dilation)
    # A learnt shift takes plain autograd: added after the path, which then has no shift to carry.
    learnt_shift = shift if shift is not None and shift.requires_grad and torch.is_grad_enabled() else None
    if learnt_shift is not None:
        shift = None
    path = choose_path(x, weight, bias, padding, shift, skip_pattern, compile_mode_in_effect(),
                       forced_cell_assembly())
    out = _PATHS[path](x, weight, bias, stride, padding, dilation, groups, skip_pattern, shift_channels, fill, shift)
    return out if learnt_shift is None else out + learnt_shift.view(1, -1, 1, 1)


@MODELS.register_module('SkipConv')
class SkipConv2d(nn.Conv2d):
    """A drop-in ``nn.Conv2d`` that computes its output only on a structured lattice of positions.

    Weights and state_dict are exactly those of ``nn.Conv2d`` (a dense checkpoint loads into it and back); the
    output is zero (bias included) outside the lattice, and the skipped positions cost no multiply-adds in the
    forward or the backward pass. Registered as ``SkipConv`` for ``mmcv.cnn.build_conv_layer``:
    ``conv_cfg=dict(type='SkipConv', skip_pattern='grid', shift_channels=True)``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode:
            As in ``nn.Conv2d``. Non-zero padding modes pad explicitly first, as ``nn.Conv2d`` does.
        skip_pattern (str): 'checkerboard' (keep (i + j) % 2 == 0), 'row' (i % 2 == 0), 'col' (j % 2 == 0),
            'grid' (i and j even) or 'none' (plain convolution), on the output grid. Default: 'checkerboard'.
        shift_channels (bool): Shift the pattern per contiguous output-channel group so the groups together
            cover every position. Recommended with 'grid', which otherwise leaves positions dead through a
            network. Default: False.
        fill (str): What the skipped positions hold: 'zero', 'nearest' or 'linear' (see :func:`skip_conv2d`).
            Default: 'linear'.

    Folding a following BatchNorm (:func:`skipconv_det.models.fuse_conv_bn`, or mmcv's ``fuse_conv_bn`` on a
    SkipConv without a bias) keeps the outputs exact: BN's shift becomes the buffer ``shift``, added at every
    position, skipped ones included.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: IntOrPair,
                 stride: IntOrPair = 1,
                 padding: Union[str, IntOrPair] = 0,
                 dilation: IntOrPair = 1,
                 groups: int = 1,
                 bias: bool = True,
                 padding_mode: str = 'zeros',
                 device=None,
                 dtype=None,
                 skip_pattern: str = 'checkerboard',
                 shift_channels: bool = False,
                 fill: str = DEFAULT_FILL) -> None:
        check_pattern(skip_pattern)
        check_fill(fill)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device, dtype)
        self.register_buffer('shift', None)
        self.skip_pattern = skip_pattern
        self.shift_channels = shift_channels
        self.fill = fill

    def __setattr__(self, name, value):
        # Folding BN into a conv (mmcv.cnn.fuse_conv_bn, torch.nn.utils.fuse_conv_bn_eval) assigns the conv a new
        # weight and bias. On a conv built without a bias the assigned bias is exactly BN's shift, which belongs at
        # skipped positions too: keep it as `shift`. With a bias of our own (or a shift already) the two parts
        # cannot be told apart, and the folded model would silently differ: refuse.
        if name == 'bias' and isinstance(value, torch.Tensor) and 'fill' in self.__dict__:
            if self.bias is None and self.shift is None:
                self.shift = value.detach()
                return
            raise RuntimeError('Assigning a bias to a SkipConv2d that has one (or a folded shift) loses what the '
                               'skipped positions hold; fold BatchNorm with skipconv_det.models.fuse_conv_bn.')
        super().__setattr__(name, value)

    @property
    def density(self) -> float:
        """Fraction of output positions computed (on an even-sized output)."""
        return skip_density(self.skip_pattern)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padding = self.padding
        if self.padding_mode != 'zeros':
            if x.dim() == 4:
                x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = 0
        return skip_conv2d(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups,
                           self.skip_pattern, self.shift_channels, self.fill, self.shift)

    def extra_repr(self) -> str:
        return (f'{super().extra_repr()}, skip_pattern={self.skip_pattern!r}, '
                f'shift_channels={self.shift_channels}, fill={self.fill!r}, density={self.density:g}')
