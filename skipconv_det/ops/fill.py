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
:class:`FillOp`, planned once per (pattern phase, output size): eager SkipConv writes it into the assembled
output in place (:mod:`._fill_in_place`), the exported and compiled formulation translates it to cells
(:mod:`._cells`).
"""
from functools import lru_cache
from typing import FrozenSet, List, NamedTuple, Sequence, Tuple

import torch

from .patterns import Cell

FILLS = ('zero', 'nearest', 'linear')
# The default of every API that takes a fill: the fill that keeps a detector's accuracy (README, accuracy study).
DEFAULT_FILL = 'linear'

_NEAREST_ORDER = ((0, -1), (-1, 0), (-1, -1), (0, 1), (1, 0), (1, 1), (-1, 1), (1, -1))
_EDGE_NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))
_DIAGONAL_NEIGHBOURS = ((-1, -1), (-1, 1), (1, -1), (1, 1))


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
    """Raise a ValueError listing the fills if ``fill`` is not one of them."""
    if fill not in FILLS:
        raise ValueError(f'Unknown fill {fill!r}; use one of {", ".join(FILLS)}.')


def axis_groups(size: int, parity: int) -> List[Tuple[slice, FrozenSet[int]]]:
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


def fill_sources(fill: str, cell: Cell, kept: FrozenSet[Cell], rows_ok: FrozenSet[int],
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
        row_groups, col_groups = axis_groups(height, cell[0]), axis_groups(width, cell[1])
        cell_ops = []
        for rows, rows_ok in row_groups:
            per_col = [FillOp(rows, cols, fill_sources(fill, cell, kept, rows_ok, cols_ok))
                       for cols, cols_ok in col_groups]
            if len({op.offsets for op in per_col}) == 1:  # the same sources across the row: one op
                per_col = [per_col[0]._replace(cols=slice(cell[1], width, 2))]
            cell_ops.append(per_col)
        # A row group with one op spans the whole row parity (merged above, or the only column group).
        if all(len(r) == 1 for r in cell_ops) and len({r[0].offsets for r in cell_ops}) == 1:
            cell_ops = [[cell_ops[0][0]._replace(rows=slice(cell[0], height, 2))]]  # ... and down the column
        ops += [op for r in cell_ops for op in r]
    return tuple(ops)


# Every (channels, op) that fills an output: the FillOps of each output-channel range.
FillPlan = Tuple[Tuple[slice, FillOp], ...]


def plan_output_fill(fill: str, kept_by_channels: Sequence[Tuple[Tuple[int, int], FrozenSet[Cell]]], height: int,
                     width: int) -> FillPlan:
    """The fill of a whole output: ``kept_by_channels`` lists each output-channel range ``(c0, c1)`` with the
    cells it keeps."""
    # torch.compile traces the planning once per graph anyway, and warns about a cache it would bypass.
    plan = plan_fill.__wrapped__ if torch.compiler.is_compiling() else plan_fill
    return tuple((slice(c0, c1), op) for (c0, c1), kept in kept_by_channels for op in plan(fill, kept, height, width))
