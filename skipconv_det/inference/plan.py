# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""Write plans: where each position of a materialised map (or of a map's skipped lattices) takes its value from.

A value written by the lattice domain is ``act(sum of terms)`` at every target position, where a term is one of

- a *linear* map (:class:`Term` ``'linear'``): a SkipConv output (or a sum of them with one pattern and fill) carried as
  its kept lattices; at a kept position its kept value, at a skipped one its fill (``plan_fill``: the mean of kept
  neighbours) or, with no kept neighbour, its ``constant``;
- an *explicit* map (``'explicit'``): kept and skipped lattices both carried, each position read where it lies;
- a *full* map (``'full'``): read at the same position (a residual that is already a plain tensor).

Every pattern has period 2, so the sources of a target position depend only on its cell (i % 2, j % 2) and on
whether it lies on the first or last row or column of the map. A plan is therefore a short list of :class:`Region`
s, each a block of one cell whose positions all read the same inputs at the same relative places, planned once per
(terms, map size, target) and run by :mod:`.write` (a compiled CPU kernel, or PyTorch ops).
"""
from functools import lru_cache
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch

from ..ops import plan_fill
from .layout import CELLS, Cell, cells_of, complement, kept_lattices, lattice_index, lattice_of


class Term(NamedTuple):
    """One summand of a written value (see the module docstring). ``pattern``/``fill``: None for a full map."""
    kind: str  # 'linear', 'explicit' or 'full'
    pattern: Optional[str] = None
    fill: Optional[str] = None

    def num_inputs(self) -> int:
        """How many tensors the term hands to the plan, in order: kept lattices, then skipped lattices."""
        if self.kind == 'full':
            return 1
        kept = len(kept_lattices(self.pattern))
        return kept + len(complement(self.pattern)) if self.kind == 'explicit' else kept


class Source(NamedTuple):
    """``weight * inputs[input][..., row + row_step * k, col + col_step * m]`` for position (k, m) of a region."""
    input: int
    row: int
    row_step: int
    col: int
    col_step: int
    weight: float


class Region(NamedTuple):
    """Positions ``(a + 2 (first_row + k), b + 2 (first_col + m))`` of the full map, k < rows and m < cols, in cell
    (a, b): their value is the sum of ``sources`` plus the constants of the linear terms ``constant_terms``."""
    cell: Cell
    first_row: int
    rows: int
    first_col: int
    cols: int
    sources: Tuple[Source, ...]
    constant_terms: Tuple[int, ...]


class Target(NamedTuple):
    """What a plan writes: the full map (``kind='map'``, every position) or the skipped lattices of ``pattern``
    (``kind='skipped'``, one tensor per lattice of :func:`~.layout.complement`)."""
    kind: str
    pattern: Optional[str] = None

    def cells(self) -> Tuple[Cell, ...]:
        if self.kind == 'map':
            return CELLS
        return tuple(cell for lattice in complement(self.pattern) for cell in cells_of(lattice))


def planned(planner):
    """A cached planner, or under torch.compile the function itself (dynamo runs the planning once per graph, and
    warns about a cache it would bypass)."""
    return planner.__wrapped__ if torch.compiler.is_compiling() else planner


def _axis_groups(size: int, parity: int) -> List[Tuple[int, int, frozenset]]:
    """Positions ``parity + 2 k`` of an axis of ``size`` as runs (first k, count, offsets -1/0/+1 that stay inside):
    the first position, the last one and those in between, each with its own border."""
    count = (size - parity + 1) // 2
    if count <= 0:
        return []

    def inside(k):
        i = parity + 2 * k
        return frozenset(d for d in (-1, 0, 1) if 0 <= i + d < size)

    ends = {0, count - 1}
    runs = [(k, 1, inside(k)) for k in sorted(ends) if inside(k) != frozenset((-1, 0, 1))]
    middle = [k for k in range(count) if k not in {r[0] for r in runs}]
    if middle:
        runs.append((middle[0], len(middle), frozenset((-1, 0, 1))))
    return sorted(runs)


def _fill_offsets(fill: str, pattern: str, cell: Cell, row: int, col: int, size: Tuple[int, int]):
    """The offsets of the kept neighbours whose mean fills skipped position (row, col) (none: the constant)."""
    if fill == 'zero':
        return ()
    kept = frozenset(c for lattice in kept_lattices(pattern) for c in cells_of(lattice))
    for op in planned(plan_fill)(fill, kept, *size):
        if row in range(*op.rows.indices(size[0])) and col in range(*op.cols.indices(size[1])):
            return op.offsets
    raise AssertionError(f'no fill op covers ({row}, {col}) of cell {cell}')


def _term_sources(term: Term, first_input: int, cell: Cell, row: int, col: int,
                  size: Tuple[int, int]) -> Tuple[Tuple[Source, ...], bool]:
    """The sources of a term at full position (row, col) of ``cell`` (steps per region position), and whether the
    term's constant applies there."""
    if term.kind == 'full':
        return (Source(first_input, row, 2, col, 2, 1.0), ), False
    kept = kept_lattices(term.pattern)

    def source(lattices, offset, r, c, weight):
        index = lattice_of(((r % 2), (c % 2)), lattices)
        (row0, row_step), (col0, col_step) = (lattice_index(p, x, 2) for p, x in zip(lattices[index], (r, c)))
        return Source(first_input + offset + index, row0, row_step, col0, col_step, weight)

    if lattice_of(cell, kept) is not None:
        return (source(kept, 0, row, col, 1.0), ), False
    if term.kind == 'explicit':
        return (source(complement(term.pattern), len(kept), row, col, 1.0), ), False
    offsets = _fill_offsets(term.fill, term.pattern, cell, row, col, size)
    if not offsets:
        return (), True
    return tuple(source(kept, 0, row + di, col + dj, 1.0 / len(offsets)) for di, dj in offsets), False


def _continues(first: Region, second: Region, along_rows: bool) -> bool:
    """Whether ``second`` extends ``first`` (along rows or columns) with the same sources at the same steps."""
    if len(first.sources) != len(second.sources) or first.constant_terms != second.constant_terms:
        return False
    for a, b in zip(first.sources, second.sources):
        if along_rows:
            same = (a.input, a.row_step, a.col, a.col_step, a.weight) == (b.input, b.row_step, b.col, b.col_step,
                                                                         b.weight)
            if not (same and b.row == a.row + a.row_step * first.rows):
                return False
        else:
            same = (a.input, a.row, a.row_step, a.col_step, a.weight) == (b.input, b.row, b.row_step, b.col_step,
                                                                         b.weight)
            if not (same and b.col == a.col + a.col_step * first.cols):
                return False
    return True


def _merge(regions: List[Region], along_rows: bool) -> List[Region]:
    merged = []
    for region in regions:
        last = merged[-1] if merged else None
        if last is not None and last.cell == region.cell and _continues(last, region, along_rows) and (
                (last.first_col, last.cols) == (region.first_col, region.cols) if along_rows else
                (last.first_row, last.rows) == (region.first_row, region.rows)):
            merged[-1] = last._replace(rows=last.rows + region.rows) if along_rows else last._replace(
                cols=last.cols + region.cols)
        else:
            merged.append(region)
    return merged


@lru_cache(maxsize=4096)
def plan_write(terms: Tuple[Term, ...], size: Tuple[int, int], target: Target) -> Tuple[Region, ...]:
    """The regions that write ``target`` as the sum of ``terms`` on a map of ``size`` (H, W). The inputs the
    sources index are the terms' tensors in order (:meth:`Term.num_inputs`)."""
    firsts = [sum(t.num_inputs() for t in terms[:k]) for k in range(len(terms))]
    regions = []
    for cell in target.cells():
        rows, cols = _axis_groups(size[0], cell[0]), _axis_groups(size[1], cell[1])
        bands = []
        for k0, count_r, _ in rows:
            band = []
            for m0, count_c, _ in cols:
                row, col = cell[0] + 2 * k0, cell[1] + 2 * m0
                sources, constants = [], []
                for index, (term, first) in enumerate(zip(terms, firsts)):
                    found, constant = _term_sources(term, first, cell, row, col, size)
                    sources += found
                    if constant:
                        constants.append(index)
                band.append(Region(cell, k0, count_r, m0, count_c, tuple(sources), tuple(constants)))
            bands.append(_merge(band, along_rows=False))
        # Bands with the same column runs and continuing sources merge down the rows.
        merged_bands: List[List[Region]] = []
        for band in bands:
            last = merged_bands[-1] if merged_bands else None
            if last is not None and len(last) == len(band) and all(
                    (a.first_col, a.cols) == (b.first_col, b.cols) and _continues(a, b, along_rows=True)
                    for a, b in zip(last, band)):
                merged_bands[-1] = [a._replace(rows=a.rows + b.rows) for a, b in zip(last, band)]
            else:
                merged_bands.append(band)
        regions += [region for band in merged_bands for region in band]
    return tuple(regions)


def target_position(target: Target, region: Region, pad: Sequence[int] = (0, 0)) -> Tuple[int, int, int, int, int]:
    """Where a region lies in its target tensor: (target index, first row, row step, first column, column step)."""
    a, b = region.cell
    row, col = a + 2 * region.first_row, b + 2 * region.first_col
    if target.kind == 'map':
        return 0, pad[0] + row, 2, pad[1] + col, 2
    lattices = complement(target.pattern)
    index = lattice_of(region.cell, lattices)
    (row0, row_step), (col0, col_step) = (lattice_index(p, x, 2) for p, x in zip(lattices[index], (row, col)))
    return index, row0, row_step, col0, col_step


# A weight over a cell, constant on blocks: (row block sizes, column block sizes, value per block, rows first).
BlockMap = Tuple[Tuple[int, ...], Tuple[int, ...], Tuple[Tuple[float, ...], ...]]


class CellSource(NamedTuple):
    """``weight * inputs[input][..., row + row_step * k, col + col_step * m]`` at position (k, m) of a whole cell,
    read as 0 outside the input; ``weight`` a float or a :data:`BlockMap` (0 where the source is not used)."""
    input: int
    row: int
    row_step: int
    col: int
    col_step: int
    weight: object


class CellPlan(NamedTuple):
    """A target cell as a sum of whole-cell shifted slices (the form inductor fuses and exporters record as a few
    ops): its size, its sources, and the map of each set of constants it adds."""
    cell: Cell
    size: Tuple[int, int]
    sources: Tuple[CellSource, ...]
    constants: Tuple[Tuple[Tuple[int, ...], object], ...]


def _block_value(values: dict, blocks) -> object:
    """A float if every block holds the same value, else the :data:`BlockMap`."""
    (row_sizes, col_sizes), grid = blocks
    table = tuple(tuple(values.get((r, c), 0.0) for c in range(len(col_sizes))) for r in range(len(row_sizes)))
    flat = {v for row in table for v in row}
    return flat.pop() if len(flat) == 1 else (row_sizes, col_sizes, table)


@lru_cache(maxsize=4096)
def plan_cells(terms: Tuple[Term, ...], size: Tuple[int, int], target: Target) -> Tuple[CellPlan, ...]:
    """:func:`plan_write`'s regions regrouped per target cell: each distinct source shift over the whole cell, weighted
    by a map that is its weight on the regions that read it and 0 elsewhere."""
    regions = planned(plan_write)(terms, size, target)
    plans = []
    for cell in target.cells():
        rows, cols = ((n - p + 1) // 2 for n, p in zip(size, cell))
        mine = [r for r in regions if r.cell == cell]
        if rows <= 0 or cols <= 0 or not mine:
            plans.append(CellPlan(cell, (max(rows, 0), max(cols, 0)), (), ()))
            continue
        row_cuts = sorted({r.first_row for r in mine} | {r.first_row + r.rows for r in mine})
        col_cuts = sorted({r.first_col for r in mine} | {r.first_col + r.cols for r in mine})
        row_sizes = tuple(b - a for a, b in zip(row_cuts, row_cuts[1:]))
        col_sizes = tuple(b - a for a, b in zip(col_cuts, col_cuts[1:]))
        sources, constants = {}, {}
        for region in mine:
            blocks = [(i, j) for i in range(len(row_sizes)) for j in range(len(col_sizes))
                      if region.first_row <= row_cuts[i] < region.first_row + region.rows
                      and region.first_col <= col_cuts[j] < region.first_col + region.cols]
            for s in region.sources:
                key = (s.input, s.row - s.row_step * region.first_row, s.row_step, s.col - s.col_step * region.first_col,
                       s.col_step)
                for block in blocks:
                    values = sources.setdefault(key, {})
                    values[block] = values.get(block, 0.0) + s.weight
            if region.constant_terms:
                for block in blocks:
                    constants.setdefault(region.constant_terms, {})[block] = 1.0
        grid = ((row_sizes, col_sizes), None)
        plans.append(CellPlan(cell, (rows, cols),
                              tuple(CellSource(*key, _block_value(values, grid)) for key, values in sources.items()),
                              tuple((terms_, _block_value(values, grid)) for terms_, values in constants.items())))
    return tuple(plans)
