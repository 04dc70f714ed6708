# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""The geometry of SkipConv: the output's size and cells, which output positions each lattice convolution
computes, from which input window, with which padding, and which channel blocks run as one convolution. Plain
integers throughout, so that the jit tracer and torch.compile see no tensor arithmetic in the planning."""
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

from torch.nn.modules.utils import _pair

IntOrPair = Union[int, Tuple[int, int]]


class AxisPlan(NamedTuple):
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


def plan_axis(size: int, kernel: int, stride: int, dilation: int, pad_lo: int, out_size: int,
              offset: Optional[int]) -> Optional[AxisPlan]:
    """Plan output positions ``offset, offset + 2, ...`` (every position if offset is None) of one axis.

    Output i reads the input from ``i * stride - pad_lo``, so lattice position t reads from
    ``first + step * t`` with ``step = period * stride``: a convolution of stride ``step``. Its symmetric padding
    is what the first window needs on the low side; windows that need more on the high side are left to
    :meth:`AxisPlan.strip`. Returns None when the output holds no position of this lattice.
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
    return AxisPlan(offset, period, count, step, first, extent, crop, pad, main)


def resolve_padding(padding: Union[str, IntOrPair], kernel: Tuple[int, int],
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


class SpatialGeometry(NamedTuple):
    """A convolution's spatial geometry, each a (height, width) pair: input ``size``, ``out_size``, ``kernel``,
    ``stride``, ``pads`` (per axis (low, high), string padding resolved) and ``dilation``."""
    size: tuple
    out_size: tuple
    kernel: Tuple[int, int]
    stride: Tuple[int, int]
    pads: Tuple[Tuple[int, int], Tuple[int, int]]
    dilation: Tuple[int, int]


def spatial_geometry(input_size: Sequence[int], kernel: Tuple[int, int], stride: Tuple[int, int],
                     padding: Union[str, IntOrPair], dilation: Tuple[int, int]) -> SpatialGeometry:
    """The geometry of a convolution of an input of spatial ``input_size``; a ValueError where F.conv2d would
    refuse it (string padding with a stride, an input smaller than the dilated kernel)."""
    pads = resolve_padding(padding, kernel, dilation)
    if isinstance(padding, str) and padding == 'same' and stride != (1, 1):
        raise ValueError("padding='same' is not supported for strided convolutions (as in F.conv2d).")
    size = tuple(input_size)
    out_size = tuple((s + lo + hi - d * (k - 1) - 1) // st + 1
                     for s, (lo, hi), k, st, d in zip(size, pads, kernel, stride, dilation))
    if min(out_size) < 1:
        raise ValueError(f'SkipConv: input of spatial size {size} with padding {padding} is smaller than the '
                         f'dilated kernel {kernel} (dilation {dilation}); pad it or use a smaller kernel.')
    return SpatialGeometry(size, out_size, kernel, stride, pads, dilation)


def channel_blocks(c0: int, c1: int, out_channels: int, in_channels: int,
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


def cell_size(out_size: Tuple[int, int], cell: Tuple[int, int]) -> Tuple[int, int]:
    """Rows and columns of the output that lie in ``cell`` (i % 2, j % 2)."""
    return tuple((n - parity + 1) // 2 for n, parity in zip(out_size, cell))
