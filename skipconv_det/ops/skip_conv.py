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
"""
from functools import partial
from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.registry import MODELS
from torch.nn.modules.utils import _pair

from ._autograd import _Scatter, _scatter
from ._cells import assemble_from_cells, assembles_from_cells
from ._custom_op import opaque_under_compile, skip_conv2d_op
from ._lattice_conv import _pads_explicitly, cell_conv, lattice_pieces
from ._layout import _suggested_memory_format
from ._saved import InputCopies
from ._torch_compat import _conv2d
from .fill import check_fill, fill_regions, kept_cells_of
from .lattice import IntOrPair, _resolve_padding, _skipped_cells, _split_ranges

# Each pattern splits the 2x2 cell of output positions (i % 2, j % 2) into phases; phase g is what channel group g
# keeps when channels are shifted, and phase 0 is the pattern itself. A phase is a list of lattices (a, b):
# rows i % 2 == a (every row if a is None) and columns j % 2 == b (every column if b is None).
_PHASES = {
    'checkerboard': (((0, 0), (1, 1)), ((0, 1), (1, 0))),
    'row': (((0, None),), ((1, None),)),
    'col': (((None, 0),), ((None, 1),)),
    'grid': (((0, 0),), ((0, 1),), ((1, 0),), ((1, 1),)),
    'none': (((None, None),),),
}
SKIP_PATTERNS = tuple(_PHASES)
# Each phase keeps the same number of the four cells.
_DENSITY = {pattern: len(kept_cells_of(phases[0])) / 4 for pattern, phases in _PHASES.items()}


def _check_pattern(skip_pattern: str) -> None:
    if skip_pattern not in _PHASES:
        raise ValueError(f'Unknown skip_pattern {skip_pattern!r}; use one of {", ".join(SKIP_PATTERNS)}.')


def skip_phases(skip_pattern: str) -> tuple:
    """The phases of a pattern: phase g (what channel group g keeps when channels are shifted; phase 0 is the
    pattern itself) as a tuple of lattices (a, b): output rows i % 2 == a (every row if a is None) and columns
    j % 2 == b (every column if b is None)."""
    _check_pattern(skip_pattern)
    return _PHASES[skip_pattern]


def skip_density(skip_pattern: str) -> float:
    """Fraction of output positions a pattern keeps (on an even-sized grid)."""
    _check_pattern(skip_pattern)
    return _DENSITY[skip_pattern]


def skip_mask(skip_pattern: str,
              out_channels: int,
              height: int,
              width: int,
              shift_channels: bool = False,
              device: Optional[torch.device] = None) -> torch.Tensor:
    """The kept positions as a bool tensor of shape (out_channels, height, width), written from the formulas of
    docs/operator.md (Patterns, shift_channels). The fast path never uses it; it defines the reference
    ``F.conv2d(...) * mask``."""
    _check_pattern(skip_pattern)
    i = torch.arange(height, device=device).view(1, -1, 1)
    j = torch.arange(width, device=device).view(1, 1, -1)
    num_phases = len(_PHASES[skip_pattern])
    g = torch.zeros(out_channels, dtype=torch.long, device=device)
    if shift_channels:
        for phase, chans in enumerate(torch.arange(out_channels).tensor_split(num_phases)):
            g[chans.to(g.device)] = phase
    g = g.view(-1, 1, 1)
    if skip_pattern == 'checkerboard':
        keep = (i + j + g) % 2 == 0
    elif skip_pattern == 'row':
        keep = (i + g) % 2 == 0
    elif skip_pattern == 'col':
        keep = (j + g) % 2 == 0
    elif skip_pattern == 'grid':
        keep = (i % 2 == g // 2) & (j % 2 == g % 2)
    else:
        keep = torch.ones_like(i + j + g, dtype=torch.bool)
    return keep.expand(out_channels, height, width)


def skip_conv2d(x: torch.Tensor,
                weight: torch.Tensor,
                bias: Optional[torch.Tensor] = None,
                stride: IntOrPair = 1,
                padding: Union[str, IntOrPair] = 0,
                dilation: IntOrPair = 1,
                groups: int = 1,
                skip_pattern: str = 'checkerboard',
                shift_channels: bool = False,
                fill: str = 'linear',
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
    _check_pattern(skip_pattern)
    check_fill(fill)
    if x.dim() != 4:
        raise ValueError(f'SkipConv expects a 4D input (N, C, H, W), got shape {tuple(x.shape)}; '
                         'add a batch dimension with x.unsqueeze(0).')
    if weight.dim() != 4:
        raise ValueError(f'SkipConv expects a 4D weight (C_out, C_in // groups, kH, kW), got {tuple(weight.shape)}.')
    out_channels = weight.shape[0]
    in_channels = weight.shape[1] * groups
    if x.shape[1] != in_channels:
        raise ValueError(f'SkipConv got an input with {x.shape[1]} channels, but its weight expects '
                         f'{in_channels} (= {weight.shape[1]} per group x {groups} groups); '
                         'feed a tensor of shape (N, {in_channels}, H, W) or fix in_channels.')
    if x.device != weight.device:
        raise ValueError(f'SkipConv got an input on {x.device} but its weight is on {weight.device}; move one '
                         f'of them, e.g. x.to({str(weight.device)!r}) or layer.to({str(x.device)!r}).')
    if not x.is_floating_point() or (x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type)):
        raise TypeError(f'SkipConv got a {x.dtype} input for a {weight.dtype} weight; it needs the same floating '
                        f'dtype for both, e.g. x.to({weight.dtype}) or layer.to({x.dtype}).')
    stride, dilation = _pair(stride), _pair(dilation)
    if opaque_under_compile(x, weight, bias, padding, shift):
        return skip_conv2d_op(x, weight, bias, list(stride), list(_pair(padding)), list(dilation), groups,
                              skip_pattern, shift_channels, fill, shift)
    if shift is not None:
        if shift.requires_grad and torch.is_grad_enabled():  # a learnt shift: plain autograd
            out = skip_conv2d(x, weight, bias, stride, padding, dilation, groups, skip_pattern, shift_channels, fill)
            return out + shift.view(1, -1, 1, 1)
        # Kept positions get it with the bias; fills of them carry it on (their weights sum to 1).
        bias = shift if bias is None else bias + shift
    if skip_pattern == 'none':
        return _conv2d(x, weight, bias, stride, padding, dilation, groups)

    kernel = tuple(weight.shape[2:])
    pads = _resolve_padding(padding, kernel, dilation)
    if isinstance(padding, str) and padding == 'same' and stride != (1, 1):
        raise ValueError("padding='same' is not supported for strided convolutions (as in F.conv2d).")
    size = tuple(x.shape[2:])
    out_size = tuple((s + lo + hi - d * (k - 1) - 1) // st + 1
                     for s, (lo, hi), k, st, d in zip(size, pads, kernel, stride, dilation))
    if min(out_size) < 1:
        raise ValueError(f'SkipConv: input of spatial size {size} with padding {padding} is smaller than the '
                         f'dilated kernel {kernel} (dilation {dilation}); pad it or use a smaller kernel.')
    phases = _PHASES[skip_pattern]
    if shift_channels:
        ranges = _split_ranges(out_channels, len(phases))
    else:
        ranges = [(0, out_channels)] + [(0, 0)] * (len(phases) - 1)
    if assembles_from_cells():
        # A fixed-shape graph: plain ints, so that the TorchScript exporter records no shape arithmetic.
        size, out_size = (tuple(int(n) for n in s) for s in (size, out_size))
        memory_format = _suggested_memory_format(x, weight)
        convs = partial(cell_conv, x, size, kernel, stride, pads, dilation, out_size, bias=bias, groups=groups,
                        weight=weight.contiguous(memory_format=memory_format), memory_format=memory_format,
                        copies=InputCopies(x))
        return assemble_from_cells(x, convs, phases, ranges, fill, shift, out_size)

    copies = InputCopies(x, weight, bias)  # the copies of x that lattices read, kept for backward as recipes
    if any(p for axis in pads for p in axis) and _pads_explicitly(x, weight):
        # Every lattice then fits in the padded input and is a single convolution (of a cropped view).
        x = copies.make(F.pad, x, (*pads[1], *pads[0]))
        size, pads = tuple(x.shape[2:]), ((0, 0), (0, 0))

    # The output layout follows ATen's convolution: channels_last if the input's or the weight's strides
    # suggest it (the same stride heuristic, so that ambiguous shapes such as N=0 or 1x1 agree too).
    memory_format = _suggested_memory_format(x, weight)
    # Once here rather than in each lattice's conv call, which would copy the weight to this layout every time.
    weight = weight.contiguous(memory_format=memory_format)
    kwargs = dict(weight=weight, bias=bias, groups=groups, memory_format=memory_format, copies=copies)
    pieces = lattice_pieces(x, phases, ranges, size, out_size, kernel, stride, pads, dilation, **kwargs)
    regions, parts = [p[0] for p in pieces], [p[1] for p in pieces]
    out_like = ((x.shape[0], out_channels) + out_size, parts[0].dtype if parts else x.dtype, x.device)
    fills, skipped = (), ()
    if fill != 'zero':  # the fill writes every skipped position
        fills = fill_regions(fill, [(r, kept_cells_of(lattices)) for r, lattices in zip(ranges, phases)
                                    if r[1] > r[0]], *out_size)
    elif memory_format == torch.channels_last:
        skipped = tuple(
            (slice(None), slice(c0, c1), slice(a, None, 2), slice(None) if b is None else slice(b, None, 2))
            for (c0, c1), lattices in zip(ranges, phases) if c1 > c0 for a, b in _skipped_cells(lattices))
    else:
        skipped = None
    if torch.jit.is_tracing() or not (torch.is_grad_enabled() and any(p.requires_grad for p in parts)):
        # Without a gradient to take, the Function only adds overhead. The tracer (used by FLOP counters) cannot
        # record a Function with Python-object arguments, and torch.compile (2.14) breaks the graph on one under
        # no_grad (it cannot set the tuple arguments on ctx); plain in-place copies do the same.
        return _scatter(out_like, memory_format, regions, skipped, fills, shift, parts)
    return _Scatter.apply(out_like, memory_format, tuple(regions), skipped, fills, shift, *parts)


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
                 fill: str = 'linear') -> None:
        _check_pattern(skip_pattern)
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
        return _DENSITY[self.skip_pattern]

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
