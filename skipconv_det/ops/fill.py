# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""What a SkipConv's skipped output positions hold: ``fill='zero' | 'nearest' | 'linear'``.

Zeros at half the positions of a feature map cost the layers that read it their localisation (RoIAlign's bilinear
samples, RPN objectness), while a fill that passes computed values on keeps it for the same multiply-adds, in the
spirit of PerforatedCNNs (Figurnov et al., NIPS 2016), which fill perforated outputs from their nearest computed
neighbour. The rules (positions are on the conv's output grid, "kept" is per channel):

- ``'zero'``: exactly 0, bias included.
- ``'nearest'``: the value of the first kept position inside the output among (i, j-1), (i-1, j), (i-1, j-1),
  (i, j+1), (i+1, j), (i+1, j+1), (i-1, j+1), (i+1, j-1); 0 if none.
- ``'linear'``: the mean of the kept 4-neighbours inside the output; else of the kept diagonal neighbours; else 0.

Every pattern has period 2, so a skipped position's sources depend only on its cell (i % 2, j % 2) and on whether
it lies on the output's first or last row or column. A fill is therefore a short list of strided-slice ops,
:class:`FillOp`, planned once per (pattern phase, output size) and applied to the assembled output in place.
"""
from functools import lru_cache
from typing import FrozenSet, List, NamedTuple, Optional, Sequence, Tuple

import torch

from ._extension import fill_kernel_applies

FILLS = ('zero', 'nearest', 'linear')
# The default of every API that takes a fill: the fill that keeps a detector's accuracy (README, accuracy study).
DEFAULT_FILL = 'linear'

_NEAREST_ORDER = ((0, -1), (-1, 0), (-1, -1), (0, 1), (1, 0), (1, 1), (-1, 1), (1, -1))
_EDGE_NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))
_DIAGONAL_NEIGHBOURS = ((-1, -1), (-1, 1), (1, -1), (1, 1))

Cell = Tuple[int, int]


class FillOp(NamedTuple):
    """``out[..., rows, cols] = weight * sum(out[..., rows + di, cols + dj] for di, dj in offsets)`` (0 when
    ``offsets`` is empty). ``rows`` and ``cols`` are slices of the output grid; sources are kept positions."""
    rows: slice
    cols: slice
    offsets: Tuple[Tuple[int, int], ...]

    @property
    def weight(self) -> float:
        return 1.0 / len(self.offsets) if self.offsets else 0.0

    def source(self, offset: Tuple[int, int]) -> Tuple[slice, slice]:
        di, dj = offset
        return _shift(self.rows, di), _shift(self.cols, dj)


def _shift(s: slice, d: int) -> slice:
    return slice(s.start + d, s.stop + d, s.step)


def check_fill(fill: str) -> None:
    if fill not in FILLS:
        raise ValueError(f'Unknown fill {fill!r}; use one of {", ".join(FILLS)}.')


def _axis_groups(size: int, parity: int) -> List[Tuple[slice, FrozenSet[int]]]:
    """Positions ``parity, parity + 2, ...`` of an axis of ``size``, split by the neighbour offsets (-1, 0, +1)
    that stay inside the axis: the first position, the last one and those in between."""
    positions = range(parity, size, 2)
    if not positions:
        return []
    first, last = positions[0], positions[-1]
    low, high = first == 0, last == size - 1

    def allowed(i):
        return frozenset(d for d in (-1, 0, 1) if 0 <= i + d < size)

    if len(positions) == 1:
        return [(slice(first, first + 1, 2), allowed(first))]
    groups = []
    start, stop = first + 2 * low, last + 1 - 2 * high
    if low:
        groups.append((slice(first, first + 1, 2), allowed(first)))
    if start < stop:
        groups.append((slice(start, stop, 2), frozenset((-1, 0, 1))))
    if high:
        groups.append((slice(last, last + 1, 2), allowed(last)))
    return groups


def _sources(fill: str, cell: Cell, kept: FrozenSet[Cell], rows_ok: FrozenSet[int],
             cols_ok: FrozenSet[int]) -> Tuple[Tuple[int, int], ...]:
    """The offsets a skipped position of ``cell`` takes its value from, given the offsets inside the output."""
    a, b = cell

    def usable(offset):
        di, dj = offset
        return di in rows_ok and dj in cols_ok and ((a + di) % 2, (b + dj) % 2) in kept

    if fill == 'nearest':
        return next(((o,) for o in _NEAREST_ORDER if usable(o)), ())
    edge = tuple(o for o in _EDGE_NEIGHBOURS if usable(o))
    return edge or tuple(o for o in _DIAGONAL_NEIGHBOURS if usable(o))


@lru_cache(maxsize=1024)
def plan_fill(fill: str, kept: FrozenSet[Cell], height: int, width: int) -> Tuple[FillOp, ...]:
    """The ops that fill every skipped position of an output of ``height`` x ``width`` whose kept positions are
    the cells ``kept`` (a set of (i % 2, j % 2)). Positions with the same sources on a whole row or column
    parity share one op."""
    check_fill(fill)
    ops = []
    for cell in ((a, b) for a in (0, 1) for b in (0, 1) if (a, b) not in kept):
        row_groups, col_groups = _axis_groups(height, cell[0]), _axis_groups(width, cell[1])
        cell_ops = []
        for rows, rows_ok in row_groups:
            per_col = [FillOp(rows, cols, _sources(fill, cell, kept, rows_ok, cols_ok))
                       for cols, cols_ok in col_groups]
            if len({op.offsets for op in per_col}) == 1:  # the same sources across the row: one op
                per_col = [per_col[0]._replace(cols=slice(cell[1], width, 2))]
            cell_ops.append(per_col)
        # A row group with one op spans the whole row parity (merged above, or the only column group).
        if all(len(r) == 1 for r in cell_ops) and len({r[0].offsets for r in cell_ops}) == 1:
            cell_ops = [[cell_ops[0][0]._replace(rows=slice(cell[0], height, 2))]]  # ... and down the column
        ops += [op for r in cell_ops for op in r]
    return tuple(ops)


def fill_regions(fill: str, kept_cells: Sequence[Tuple[Tuple[int, int], FrozenSet[Cell]]], height: int,
                 width: int) -> Tuple[Tuple[slice, FillOp], ...]:
    """Each ``(channels, op)`` that fills an output: ``kept_cells`` lists each output-channel range ``(c0, c1)``
    with the cells it keeps."""
    # torch.compile traces the planning once per graph anyway, and warns about a cache it would bypass.
    plan = plan_fill.__wrapped__ if torch.compiler.is_compiling() else plan_fill
    return tuple((slice(c0, c1), op) for (c0, c1), kept in kept_cells for op in plan(fill, kept, height, width))


def apply_fill(out: torch.Tensor, regions: Sequence[Tuple[slice, FillOp]],
               shift: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Write the fill of every skipped position of ``out`` (whose kept positions are computed) in place.
    Positions without a source hold 0, or the per-channel ``shift`` (see :func:`~.skip_conv.skip_conv2d`).

    On the CPU the compiled kernel (:mod:`._extension`) writes each op's targets once; elsewhere PyTorch ops do
    (:func:`apply_fill_by_torch_ops`), with the same results."""
    if regions and fill_kernel_applies(out):
        for channels, op in regions:
            if not op.offsets:
                fill_constant(out[:, channels, op.rows, op.cols], shift, channels)
        plan, weights = _kernel_plan(out, [r for r in regions if r[1].offsets])
        if plan:
            torch.ops.skipconv_det.apply_fill_(out, plan, weights)
        return out
    return apply_fill_by_torch_ops(out, regions, shift)


def kernel_ranges(out: torch.Tensor, channels: slice, rows: slice, cols: slice) -> List[int]:
    """A region of ``out`` as the kernels read it: c0, c1, first row, rows, row step, first column, columns,
    column step."""
    c0, c1, _ = channels.indices(out.shape[1])
    rows, cols = range(*rows.indices(out.shape[2])), range(*cols.indices(out.shape[3]))
    return [c0, c1, rows.start, len(rows), rows.step, cols.start, len(cols), cols.step]


def _kernel_plan(out: torch.Tensor, regions: Sequence[Tuple[slice, FillOp]]) -> Tuple[List[int], List[float]]:
    """The fill ops as the kernels read them: per op its region, the number of sources and their offsets."""
    plan, weights = [], []
    for channels, op in regions:
        plan += kernel_ranges(out, channels, op.rows, op.cols) + [len(op.offsets)]
        plan += [d for offset in op.offsets for d in offset]
        weights.append(op.weight)
    return plan, weights


def assemble_in_planes(out: torch.Tensor, regions: Sequence[tuple], parts: Sequence[torch.Tensor],
                       fills: Sequence[Tuple[slice, FillOp]], shift: Optional[torch.Tensor] = None) -> bool:
    """Write SkipConv's NCHW output in one pass per (sample, channel) plane with the compiled kernel: each part
    into its region ``(:, channels, rows, cols)``, then the ``fills``, while the plane is in cache. Whether it
    could (a contiguous CPU output, a fill to write, the kernel built); if not, ``out`` is untouched."""
    if not (fills and out.is_contiguous() and fill_kernel_applies(out)
            and all(part.dtype == out.dtype for part in parts)):
        return False
    encoded = [n for region in regions for n in kernel_ranges(out, *region[1:])]
    plan, weights = _kernel_plan(out, fills)
    torch.ops.skipconv_det.assemble_(out, list(parts), encoded, plan, weights, shift)
    return True


def apply_fill_by_torch_ops(out: torch.Tensor, regions: Sequence[Tuple[slice, FillOp]],
                            shift: Optional[torch.Tensor] = None) -> torch.Tensor:
    """:func:`apply_fill` with PyTorch ops, one per source (and one for the weight) per fill op."""
    # In NCHW a stride-2 view reads and writes single elements, so several sources are summed from contiguous
    # copies of the kept lattices (one per cell and channel range, shared by the ops) and written once. In
    # channels_last each position's channels lie together and the strided views are fast as they are.
    by_lattice = out.dim() == 4 and not out.is_contiguous(memory_format=torch.channels_last)
    lattices = {}
    for channels, op in regions:
        target = out[:, channels, op.rows, op.cols]
        if not op.offsets:
            fill_constant(target, shift, channels)
        elif len(op.offsets) == 1:
            target.copy_(out[(slice(None), channels) + op.source(op.offsets[0])])
        elif by_lattice:
            first, second, *rest = (_lattice_source(out, lattices, channels, op, o) for o in op.offsets)
            total = torch.add(first, second)
            for src in rest:
                total.add_(src)
            target.copy_(total.mul_(op.weight))
        else:
            first, *rest = (out[(slice(None), channels) + op.source(o)] for o in op.offsets)
            target.copy_(first)
            for src in rest:
                target.add_(src)
            target.mul_(op.weight)
    return out


def _lattice_source(out: torch.Tensor, lattices: dict, channels: slice, op: FillOp,
                    offset: Tuple[int, int]) -> torch.Tensor:
    """``out[:, channels][op.source(offset)]`` as a slice of a contiguous copy of the source's lattice (the
    positions of its cell (i % 2, j % 2)), copied on first use into ``lattices``."""
    rows, cols = op.source(offset)
    cell = (rows.start % 2, cols.start % 2)
    key = (channels.start, channels.stop, cell)
    if key not in lattices:
        lattices[key] = out[:, channels, cell[0]::2, cell[1]::2].contiguous()
    r0, c0 = rows.start // 2, cols.start // 2
    return lattices[key][:, :, r0:r0 + len(range(*op.rows.indices(out.shape[2]))),
                         c0:c0 + len(range(*op.cols.indices(out.shape[3])))]


def fill_constant(target: torch.Tensor, shift: Optional[torch.Tensor], channels: slice) -> None:
    """Set ``target`` (a region of the output) to 0, or to ``shift[channels]`` per channel."""
    if shift is None:
        target.zero_()
    else:
        target.copy_(shift[channels].view(1, -1, 1, 1).expand_as(target))


def kept_cells_of(lattices) -> FrozenSet[Cell]:
    """The cells (i % 2, j % 2) that a phase's lattices (a, b) cover (None: both parities)."""
    return frozenset((a, b) for la, lb in lattices for a in ((0, 1) if la is None else (la,))
                     for b in ((0, 1) if lb is None else (lb,)))
