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
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.registry import MODELS
from torch.nn.modules.utils import _pair

from .fill import FILLS, apply_fill, check_fill, fill_adjoint, fill_constant, fill_regions, kept_cells_of

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
_DENSITY = {'checkerboard': 0.5, 'row': 0.5, 'col': 0.5, 'grid': 0.25, 'none': 1.0}

IntOrPair = Union[int, Tuple[int, int]]
# Inputs up to this many elements (512 KiB in float32), or up to this many times their weight's size, are padded
# explicitly (see _pads_explicitly).
_SMALL_INPUT_NUMEL = 1 << 17
_WEIGHT_MULTIPLE = 4
# Lattice convs on NCHW CPU inputs of at least this many positions (H x W) take the polyphase input gradient.
_POLYPHASE_MIN_POSITIONS = 1 << 15


def _split_ranges(n: int, sections: int) -> List[Tuple[int, int]]:
    """``torch.arange(n).tensor_split(sections)`` as (start, stop) pairs, in plain ints (so torch.compile traces
    the planning without reading tensors back)."""
    size, extra = divmod(int(n), sections)  # int: shapes are tensors under the jit tracer
    bounds = [i * size + min(i, extra) for i in range(sections + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _pads_explicitly(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether one padded copy of the input beats computing the border positions from strips. Each strip is a
    conv call of its own, with a fixed cost and (oneDNN) a reorder of the whole weight, so the copy wins on inputs
    that are small outright or next to their weight (deep layers: 512 channels at 25x42 has a 4x larger weight)."""
    return x.numel() <= max(_SMALL_INPUT_NUMEL, _WEIGHT_MULTIPLE * weight.numel())


def _check_pattern(skip_pattern: str) -> None:
    if skip_pattern not in _PHASES:
        raise ValueError(f'Unknown skip_pattern {skip_pattern!r}; use one of {", ".join(SKIP_PATTERNS)}.')


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
    """The kept positions as a bool tensor of shape (out_channels, height, width), written from the SPEC's
    formulas. The fast path never uses it; it defines the reference ``F.conv2d(...) * mask``."""
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


class _AxisPlan(NamedTuple):
    """One spatial axis of a sub-lattice: positions ``offset + period * t`` for t < count of the output.

    Lattice position t reads the input window starting at ``first + step * t`` (``extent`` long). The main
    convolution (stride ``step``) covers t < ``main``: it reads the input from ``crop`` on with symmetric zero
    padding ``pad``, the largest padding that every window of the axis has on its low side, so it never computes a
    position outside the lattice. The ``count - main`` trailing positions (at most a few, where the window pokes
    into padding beyond ``pad``) come from a thin explicitly padded strip.
    """
    offset: int
    period: int
    count: int
    step: int
    first: int
    extent: int
    crop: int
    pad: int
    main: int

    def output_index(self, start: int, stop: int) -> slice:
        """Where lattice positions [start, stop) lie in the full output."""
        return slice(self.offset + self.period * start, self.offset + self.period * (stop - 1) + 1, self.period)

    def strip(self, size: int, start: int) -> Tuple[int, int, int, int]:
        """Input range and explicit (low, high) padding that make positions [start, count) a padding-free
        convolution: ``(in_start, in_stop, pad_lo, pad_hi)``."""
        lo = self.first + self.step * start
        hi = self.first + self.step * (self.count - 1) + self.extent
        in_start = min(max(lo, 0), size)  # the strip may lie wholly in the padding
        in_stop = min(max(hi, in_start), size)
        pad_lo = max(0, min(in_start - lo, hi - lo))
        return in_start, in_stop, pad_lo, hi - lo - pad_lo - (in_stop - in_start)


def _plan_axis(size: int, kernel: int, stride: int, dilation: int, pad_lo: int, out_size: int,
               offset: Optional[int]) -> Optional[_AxisPlan]:
    """Plan output positions ``offset, offset + 2, ...`` (every position if offset is None) of one axis.

    Output i reads the input from ``i * stride - pad_lo``, so lattice position t reads from
    ``first + step * t`` with ``step = period * stride``: a convolution of stride ``step``. Its symmetric padding
    is what the first window needs on the low side; windows that need more on the high side are left to
    :meth:`_AxisPlan.strip`. Returns None when the output holds no position of this lattice.
    """
    period = 1 if offset is None else 2
    offset = offset or 0
    count = len(range(offset, out_size, period))
    if count == 0:
        return None
    step = period * stride
    extent = dilation * (kernel - 1) + 1
    first = offset * stride - pad_lo
    crop, pad = max(first, 0), max(-first, 0)
    # Windows of the main conv must end inside the input plus its symmetric padding.
    main = min(count, max(0, (size - 1 + pad - extent + 1 - first) // step + 1))
    return _AxisPlan(offset, period, count, step, first, extent, crop, pad, main)


def _resolve_padding(padding: Union[str, IntOrPair], kernel: Tuple[int, int],
                     dilation: Tuple[int, int]) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """Per-axis (low, high) zero padding, 'same' and 'valid' included (as F.conv2d resolves them)."""
    if padding == 'valid':
        return (0, 0), (0, 0)
    if padding == 'same':
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return tuple((t // 2, t - t // 2) for t in totals)
    if isinstance(padding, str):
        raise ValueError(f"Invalid padding string {padding!r}; use 'same', 'valid' or integers.")
    ph, pw = _pair(padding)
    return (ph, ph), (pw, pw)


def _channel_blocks(c0: int, c1: int, out_channels: int, in_channels: int,
                    groups: int) -> List[Tuple[int, int, int, int, int]]:
    """Split output channels [c0, c1) of a grouped conv into blocks computable by one conv each.

    Returns (out_start, out_stop, in_start, in_stop, groups) per block: a partial group at either end is a
    groups=1 conv on that group's inputs; whole groups in between stay one grouped conv. No block computes a
    channel outside [c0, c1).
    """
    if groups == 1 or (c0, c1) == (0, out_channels):
        return [(c0, c1, 0, in_channels, groups)]
    opg, ipg = out_channels // groups, in_channels // groups
    blocks = []
    c = c0
    while c < c1:
        g = c // opg
        if c % opg == 0 and c1 >= (g + 1) * opg:
            g_end = min(c1 // opg, groups)  # run of whole groups
            blocks.append((c, g_end * opg, g * ipg, g_end * ipg, g_end - g))
            c = g_end * opg
        else:
            stop = min(c1, (g + 1) * opg)
            blocks.append((c, stop, g * ipg, (g + 1) * ipg, 1))
            c = stop
    return blocks


def _strides_like_channels_last(t: torch.Tensor) -> bool:
    """ATen's ``is_channels_last_strides_2d``, the rule behind a 4D tensor's suggested memory format (plain
    ints, so the jit tracer of FLOP counters can run it)."""
    sizes, strides = t.shape, t.stride()
    if strides[1] == 0:
        return False
    least = 0
    for d in (1, 3, 2, 0):
        if sizes[d] == 0 or strides[d] < least or (d == 0 and least == strides[1]):
            return False
        least = strides[d] * (sizes[d] if sizes[d] > 1 else 1)
    return True


def _suggested_memory_format(*tensors: torch.Tensor) -> torch.memory_format:
    """channels_last if any of the tensors' strides suggest it (ATen's rule for a convolution's output layout,
    with input and weight), else contiguous."""
    return (torch.channels_last if any(_strides_like_channels_last(t) for t in tensors) else
            torch.contiguous_format)


def _conv2d(x, weight, bias, stride, padding, dilation, groups):
    """``F.conv2d``, steered clear of torch 2.14 CPU crashes found by fuzzing, through exact rewrites:

    - a strided 1x1 conv runs as a stride-1 conv of the subsampled input (the backward of strided 1x1
      channels_last convs corrupts memory);
    - dilation along a kernel axis of size 1 is dropped (it is moot), and where a dilated strided axis has windows
      wholly in the padding the bias is added afterwards (channels_last convs with a bias crash there).

    And for speed: a lattice's stride-2 conv on a large NCHW CPU input gets a polyphase input gradient
    (:class:`_Stride2Conv`).
    """
    kernel, stride = tuple(weight.shape[2:]), _pair(stride)
    if kernel == (1, 1) and stride != (1, 1) and not isinstance(padding, str):
        ph, pw = _pair(padding)
        # The layout F.conv2d would give (the subsampled input alone can suggest another on tiny shapes).
        memory_format = _suggested_memory_format(x, weight)
        if ph or pw:
            x = F.pad(x, (pw, pw, ph, ph))
        x = _window(x, slice(None, None, stride[0]), slice(None, None, stride[1]), memory_format=memory_format)
        return F.conv2d(x, weight, bias, 1, 0, 1, groups).contiguous(memory_format=memory_format)
    dilation = tuple(d if k > 1 else 1 for k, d in zip(kernel, _pair(dilation)))
    if (stride == (2, 2) and dilation == (1, 1) and not isinstance(padding, str) and x.device.type == 'cpu'
            and x.shape[2] * x.shape[3] >= _POLYPHASE_MIN_POSITIONS and torch.is_grad_enabled()
            and (x.requires_grad or weight.requires_grad) and not torch.jit.is_tracing()
            and _suggested_memory_format(x, weight) == torch.contiguous_format):
        return _Stride2Conv.apply(x, weight, bias, _pair(padding), groups)
    if bias is not None and not isinstance(padding, str) and any(
            d > 1 and p >= d * (k - 1) + 1 for p, d, k in zip(_pair(padding), dilation, kernel)):
        return F.conv2d(x, weight, None, stride, padding, dilation, groups) + bias.view(-1, 1, 1)
    return F.conv2d(x, weight, bias, stride, padding, dilation, groups)


def _phase_taps(parity: int, pad: int, kernel: int, out_count: int,
                in_count: int) -> Optional[Tuple[slice, int, int]]:
    """One axis of a stride-2 convolution's input gradient at input positions ``parity + 2u`` (u < in_count).

    Output t, tap k reads input ``2t + k - pad``, so these positions receive the taps k of parity
    ``(parity + pad) % 2``, from outputs ``u + c - m`` (m-th such tap): a stride-1 correlation of the output
    gradient with those taps flipped. Returns the flipped taps as a slice of the flipped kernel, and the (low,
    high) padding of the output gradient (negative crops) that gives exactly in_count results; None if no tap
    reaches these positions.
    """
    k0 = (parity + pad) % 2
    taps = len(range(k0, kernel, 2))
    if taps == 0 or in_count == 0:
        return None
    c = (parity + pad - k0) // 2
    lo = taps - 1 - c
    first = kernel - 1 - k0 - 2 * (taps - 1)
    return slice(first, first + 2 * taps - 1, 2), lo, in_count + taps - 1 - out_count - lo


def _polyphase_input_grad(grad: torch.Tensor, weight: torch.Tensor, input_shape: torch.Size,
                          padding: Tuple[int, int], groups: int) -> torch.Tensor:
    """The input gradient of ``F.conv2d(x, weight, None, 2, padding, 1, groups)``, in NCHW, as four stride-1
    correlations: one per input phase (row and column parity), each with the taps that reach that phase."""
    kh, kw = weight.shape[2:]
    # (C_in, C_out // groups, kh, kw), flipped: the input gradient correlates the output gradient with it.
    flipped = weight.unflatten(0, (groups, -1)).transpose(1, 2).flatten(0, 1).flip(2, 3)
    grad_x = grad.new_empty(input_shape)
    for r in (0, 1):
        for q in (0, 1):
            target = grad_x[:, :, r::2, q::2]
            rows = _phase_taps(r, padding[0], kh, grad.shape[2], target.shape[2])
            cols = _phase_taps(q, padding[1], kw, grad.shape[3], target.shape[3])
            if rows is None or cols is None:
                target.zero_()
                continue
            (ky, top, bottom), (kx, left, right) = rows, cols
            target.copy_(F.conv2d(F.pad(grad, (left, right, top, bottom)), flipped[:, :, ky, kx], None, 1, 0, 1,
                                  groups))
    return grad_x


class _Stride2Conv(torch.autograd.Function):
    """``F.conv2d`` with stride 2 (a lattice's convolution), whose input gradient is computed polyphase (see
    :func:`_polyphase_input_grad`).

    On the CPU in NCHW, torch's stride-2 input gradient also copies the whole input-sized gradient, so on large
    maps it costs about half the stride-1 layer's, and two lattices cost the dense layer's; the four stride-1
    correlations take 0.5-0.65x its time on 200x336 maps (64 to 256 channels) but more on 100x168 and smaller
    ones, hence ``_POLYPHASE_MIN_POSITIONS``.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, padding, groups):
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.groups, ctx.has_bias = padding, groups, bias is not None
        return F.conv2d(x, weight, bias, 2, padding, 1, groups)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _polyphase_input_grad(grad, weight, x.shape, ctx.padding, ctx.groups)
        if ctx.needs_input_grad[1]:
            grad_w = torch.ops.aten.convolution_backward(grad, x, weight, None, [2, 2], list(ctx.padding), [1, 1],
                                                         False, [0, 0], ctx.groups, [False, True, False])[1]
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None, None


def _skipped_cells(lattices) -> List[Tuple[int, Optional[int]]]:
    """The cells (i % 2, j % 2) of the output that a phase's lattices leave out; (a, None) for a whole row parity."""
    kept = kept_cells_of(lattices)
    cells = []
    for a in (0, 1):
        free = [b for b in (0, 1) if (a, b) not in kept]
        cells += [(a, None)] if len(free) == 2 else [(a, b) for b in free]
    return cells


def _scatter(out_like, memory_format, regions, skipped, fills, shift, parts):
    shape, dtype, device = out_like
    out = torch.empty(shape, dtype=dtype, device=device, memory_format=memory_format)
    if skipped is None:
        fill_constant(out, shift, slice(None))
    for region in skipped or ():
        fill_constant(out[region], shift, region[1])
    for region, part in zip(regions, parts):
        out[region].copy_(part)
    return apply_fill(out, fills, shift)


class _Scatter(torch.autograd.Function):
    """Write lattice results into the output: zero the ``skipped`` regions (or, if None, all of it first; the
    ``shift`` instead of zero if given), copy each part into its region, then write the ``fills`` (see
    :mod:`.fill`) from the kept positions.

    In channels_last each position's channels lie together, so zeroing just the skipped positions is a chunked
    fill that writes the output once; in NCHW it would be an element-strided fill, several times slower than one
    memset. Doing it in one Function keeps backward to strided reads of the output gradient (autograd's in-place
    slice copies would clone the full gradient once per lattice).
    """

    @staticmethod
    def forward(ctx, out_like, memory_format, regions, skipped, fills, shift, *parts):
        ctx.regions, ctx.fills = regions, fills
        return _scatter(out_like, memory_format, regions, skipped, fills, shift, parts)

    @staticmethod
    def backward(ctx, grad_out):
        if ctx.fills:
            grad_out = fill_adjoint(grad_out, ctx.fills)
        return (None, ) * 6 + tuple(grad_out[region] for region in ctx.regions)


class _Window(torch.autograd.Function):
    """``F.pad(x[:, :, rows, cols], pads)`` as a new tensor in ``memory_format``, with a backward that writes into
    a zero gradient of x's own layout: autograd's slicing backward makes a contiguous (NCHW) one, and summing that
    with a channels_last gradient is a slow transposing add."""

    @staticmethod
    def forward(ctx, x, rows, cols, pads, memory_format):
        ctx.like = (x.shape, x.dtype, x.device, _suggested_memory_format(x))
        ctx.window = rows, cols, pads
        return _window(x, rows, cols, pads, memory_format)

    @staticmethod
    def backward(ctx, grad):
        shape, dtype, device, memory_format = ctx.like
        rows, cols, (wl, wh, hl, hh) = ctx.window
        grad_x = torch.empty(shape, dtype=dtype, device=device, memory_format=memory_format).zero_()
        grad_x[:, :, rows, cols].copy_(grad[:, :, hl:grad.shape[2] - hh, wl:grad.shape[3] - wh])
        return grad_x, None, None, None, None


def _window(x, rows: slice, cols: slice, pads=(0, 0, 0, 0), memory_format=torch.contiguous_format):
    """The input a lattice's conv reads: rows and columns of x (a crop, a subsampling, a border strip), padded
    explicitly by ``pads`` (F.pad's order) and laid out in ``memory_format``."""
    if torch.is_grad_enabled() and x.requires_grad and not torch.jit.is_tracing():
        return _Window.apply(x, rows, cols, pads, memory_format)
    return F.pad(x[:, :, rows, cols], pads).contiguous(memory_format=memory_format)


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
    if any(p for axis in pads for p in axis) and _pads_explicitly(x, weight):
        # Every lattice then fits in the padded input and is a single convolution (of a cropped view).
        x = F.pad(x, (*pads[1], *pads[0]))
        size, pads = tuple(x.shape[2:]), ((0, 0), (0, 0))

    phases = _PHASES[skip_pattern]
    if shift_channels:
        ranges = _split_ranges(out_channels, len(phases))
    else:
        ranges = [(0, out_channels)] + [(0, 0)] * (len(phases) - 1)

    # The output layout follows ATen's convolution: channels_last if the input's or the weight's strides
    # suggest it (the same stride heuristic, so that ambiguous shapes such as N=0 or 1x1 agree too).
    memory_format = _suggested_memory_format(x, weight)
    # Once here rather than in each lattice's conv call, which would copy the weight to this layout every time.
    weight = weight.contiguous(memory_format=memory_format)
    regions, parts = [], []

    def conv(inp, strides, padding, rows, cols):
        """Output channels [c0, c1) of lattice positions ``rows`` x ``cols`` (ranges of t) from ``inp``."""
        for o0, o1, i0, i1, g in _channel_blocks(c0, c1, out_channels, in_channels, groups):
            part = inp if (i0, i1) == (0, in_channels) else inp[:, i0:i1]
            if not part.is_contiguous(memory_format=memory_format):
                # A channel slice (grouped blocks) or a strided input is copied here, in the output's layout:
                # oneDNN would copy it anyway. (Crops, subsamplings and strips come from _window already laid out.)
                part = part.contiguous(memory_format=memory_format)
            parts.append(_conv2d(part, weight[o0:o1], None if bias is None else bias[o0:o1], strides, padding,
                                 dilation, g))
            regions.append((slice(None), slice(o0, o1), ph.output_index(*rows), pw.output_index(*cols)))

    for phase, lattices in enumerate(phases):
        c0, c1 = ranges[phase]
        if c1 <= c0:
            continue  # no channel keeps this phase: it stays zero
        for a, b in lattices:
            ph, pw = (_plan_axis(size[ax], kernel[ax], stride[ax], dilation[ax], pads[ax][0], out_size[ax], off)
                      for ax, off in ((0, a), (1, b)))
            if ph is None or pw is None:
                continue  # the output is too small to hold this lattice
            steps = (ph.step, pw.step)
            if ph.main and pw.main:
                if kernel == (1, 1) and ph.pad == pw.pad == 0 and (ph.step, pw.step) != (1, 1):
                    # A 1x1 kernel reads only the lattice's own pixels: subsample them (a quarter of the input,
                    # where a cropped view would be copied whole) and run a stride-1 conv.
                    rows, cols = (slice(p.crop, p.crop + p.step * (p.main - 1) + 1, p.step) for p in (ph, pw))
                    conv(_window(x, rows, cols, memory_format=memory_format), (1, 1), 0, (0, ph.main), (0, pw.main))
                else:  # (x itself when nothing is cropped: a no-op slice still costs a full copy in backward)
                    inp = (_window(x, slice(ph.crop, None), slice(pw.crop, None), memory_format=memory_format)
                           if ph.crop or pw.crop else x)
                    conv(inp, steps, (ph.pad, pw.pad), (0, ph.main), (0, pw.main))
            if ph.main < ph.count:  # bottom rows, full width
                h0, h1, hl, hh = ph.strip(size[0], ph.main)
                w0, w1, wl, wh = pw.strip(size[1], 0)
                conv(_window(x, slice(h0, h1), slice(w0, w1), (wl, wh, hl, hh), memory_format), steps, 0,
                     (ph.main, ph.count), (0, pw.count))
            if ph.main and pw.main < pw.count:  # right columns of the main rows
                w0, w1, wl, wh = pw.strip(size[1], pw.main)
                conv(_window(x, slice(ph.crop, None), slice(w0, w1), (wl, wh, 0, 0), memory_format), steps,
                     (ph.pad, 0), (0, ph.main), (pw.main, pw.count))
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
    if torch.jit.is_tracing():
        # The tracer (used by FLOP counters) cannot record a Function with Python-object arguments; plain
        # in-place copies trace fine and do the same.
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
