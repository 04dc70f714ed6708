# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""SkipConv's output assembled from its four cells, interleaved: the formulation exported to ONNX.

Every pattern has period 2, so the output is four interleaved cells (i % 2, j % 2) of about a quarter of its
size each. A kept cell is one convolution with twice the stride; a skipped cell is its fill, a weighted sum of
shifted slices of the kept cells (the ops of :func:`~.fill.plan_fill`, translated to cell coordinates); and the
four cells are interleaved into the output (a pixel shuffle, written as stacks and reshapes). No op
writes into a view, so the exported graph holds convolutions, slices, adds and concatenations that runtimes do
well, not ``ScatterND`` with index tensors (and the TorchScript exporter, which mistranslates the in-place fills
of the eager assembly, has nothing in place to translate).
"""
from contextlib import contextmanager
from functools import lru_cache
from typing import Dict, FrozenSet, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from .fill import Cell, _axis_groups, _sources, kept_cells_of

_CELLS = ((0, 0), (0, 1), (1, 0), (1, 1))
_forced = False


@contextmanager
def cell_assembly():
    """Within it, SkipConv assembles its output from cells in eager mode too (as when exported to ONNX): to
    compare the two assemblies, and to test the exported one without exporting."""
    global _forced
    previous, _forced = _forced, True
    try:
        yield
    finally:
        _forced = previous


def assembles_from_cells() -> bool:
    """Whether SkipConv's output is assembled from cells: under ONNX export, or in :func:`cell_assembly`."""
    return _forced or torch.onnx.is_in_onnx_export()


def cell_size(out_size: Tuple[int, int], cell: Cell) -> Tuple[int, int]:
    """Rows and columns of the output that lie in ``cell``."""
    return tuple((n - parity + 1) // 2 for n, parity in zip(out_size, cell))


def _constant(like: torch.Tensor, channels: Tuple[int, int], size: Tuple[int, int],
              shift: Optional[torch.Tensor]) -> torch.Tensor:
    """Positions without a source: 0, or the per-channel ``shift``."""
    shape = (like.shape[0], channels[1] - channels[0]) + tuple(size)
    if shift is None:
        return like.new_zeros(shape)
    return shift[channels[0]:channels[1]].to(like.dtype).view(1, -1, 1, 1).expand(shape)


# A weight over a cell, constant on blocks of its rows and columns: (row block sizes, column block sizes,
# value per block).
BlockMap = Tuple[Tuple[int, ...], Tuple[int, ...], Tuple[Tuple[float, ...], ...]]


class _FillTerm(NamedTuple):
    """``weight * sum(source slices)``: the sources are ``(cell, row shift, column shift)`` of kept cells, read
    with zeros outside the output; ``weight`` is a float or a :data:`BlockMap` over the filled cell."""
    sources: Tuple[Tuple[Cell, int, int], ...]
    weight: Union[float, BlockMap]


def _source(cell: Cell, offset: Tuple[int, int]) -> Tuple[Cell, int, int]:
    """The cell of the neighbour at ``offset`` and how far its index lies from the filled position's."""
    rows, cols = cell[0] + offset[0], cell[1] + offset[1]
    return (rows % 2, cols % 2), rows // 2, cols // 2


@lru_cache(maxsize=1024)
def _fill_terms(fill: str, cell: Cell, kept: FrozenSet[Cell],
                out_size: Tuple[int, int]) -> Tuple[Tuple[_FillTerm, ...], Optional[BlockMap]]:
    """The fill of a skipped cell as a sum of weighted terms, and the map of its positions that have no source
    (None if every position has one). Plain Python, so that tracers see constants.

    The cell's first, middle and last rows and columns (:func:`~.fill._axis_groups`) are blocks on which each
    offset is either inside the output or not, and the fill rule (:func:`~.fill._sources`) gives each block its
    offsets. A neighbour outside the output reads 0, so there an offset's weight does not matter: offsets whose
    weights agree wherever both are inside share one term (with 'linear', the 4-neighbours are one term weighted
    by the inverse of their count, however the borders cut them).
    """
    row_groups, col_groups = _axis_groups(out_size[0], cell[0]), _axis_groups(out_size[1], cell[1])
    blocks = [(r, c) for r in range(len(row_groups)) for c in range(len(col_groups))]
    weights: Dict[Tuple[int, int], Dict[Tuple[int, int], float]] = {}  # offset -> block -> weight
    no_source = {}
    for r, c in blocks:
        offsets = _sources(fill, cell, kept, row_groups[r][1], col_groups[c][1])
        no_source[r, c] = 0.0 if offsets else 1.0
        for offset in offsets:
            weights.setdefault(offset, {})[r, c] = 1.0 / len(offsets)
    groups: List[Tuple[List[Tuple[Cell, int, int]], Dict[Tuple[int, int], float]]] = []
    for offset, weight in weights.items():
        inside = {(r, c) for r, c in blocks if offset[0] in row_groups[r][1] and offset[1] in col_groups[c][1]}
        weight = {block: weight.get(block, 0.0) for block in inside}
        for sources, group in groups:
            if all(group[block] == w for block, w in weight.items() if block in group):
                sources.append(_source(cell, offset))
                group.update(weight)
                break
        else:
            groups.append(([_source(cell, offset)], weight))

    def block_map(values):
        rows = tuple(len(range(*s.indices(out_size[0]))) for s, _ in row_groups)
        cols = tuple(len(range(*s.indices(out_size[1]))) for s, _ in col_groups)
        return rows, cols, tuple(tuple(values.get((r, c), 0.0) for c in range(len(cols))) for r in range(len(rows)))

    terms = tuple(
        _FillTerm(tuple(sources), next(iter(group.values())) if len(set(group.values())) == 1 else block_map(group))
        for sources, group in groups if group)
    return terms, (block_map(no_source) if any(no_source.values()) else None)


def _block_map(like: torch.Tensor, weight: BlockMap) -> torch.Tensor:
    """A :data:`BlockMap` as a (1, 1, h, w) tensor like ``like``."""
    rows, cols, values = weight
    return torch.cat([
        torch.cat([like.new_full((1, 1, h, w), v) for w, v in zip(cols, row_values)], dim=3)
        for h, row_values in zip(rows, values)
    ], dim=2)


def _shifted(computed: Dict[Cell, torch.Tensor], source: Cell, row_shift: int, col_shift: int,
             size: Tuple[int, int], padded: Dict[Cell, torch.Tensor], out_size: Tuple[int, int]) -> torch.Tensor:
    """``computed[source][r + row_shift, c + col_shift]`` for r, c of a cell of ``size``, 0 outside the output. A
    kept cell read beyond its edges is padded once (by one on every side, up to the size of cell (0, 0)) and kept
    in ``padded`` for every skipped cell that reads it."""
    (h, w), (sh, sw) = size, cell_size(out_size, source)
    if 0 <= row_shift and row_shift + h <= sh and 0 <= col_shift and col_shift + w <= sw:
        return computed[source][:, :, row_shift:row_shift + h, col_shift:col_shift + w]
    if source not in padded:
        largest = cell_size(out_size, (0, 0))
        padded[source] = F.pad(computed[source], (1, largest[1] + 1 - sw, 1, largest[0] + 1 - sh))
    return padded[source][:, :, 1 + row_shift:1 + row_shift + h, 1 + col_shift:1 + col_shift + w]


def _filled_cell(fill: str, cell: Cell, kept: FrozenSet[Cell], computed: Dict[Cell, torch.Tensor],
                 padded: Dict[Cell, torch.Tensor], like: torch.Tensor, channels: Tuple[int, int],
                 out_size: Tuple[int, int], shift: Optional[torch.Tensor]) -> torch.Tensor:
    """A skipped cell of one channel range, from the kept cells in ``computed`` (``padded`` as in
    :func:`_shifted`)."""
    size = cell_size(out_size, cell)
    terms, no_source = ((), None) if fill == 'zero' else _fill_terms(fill, cell, kept, tuple(out_size))
    value = None
    for term in terms:
        total = None
        for source, row_shift, col_shift in term.sources:
            part = _shifted(computed, source, row_shift, col_shift, size, padded, out_size)
            total = part if total is None else total + part
        if isinstance(term.weight, tuple):
            total = total * _block_map(like, term.weight)
        elif term.weight != 1:
            total = total * term.weight
        value = total if value is None else value + total
    if value is None:
        return _constant(like, channels, size, shift)
    if no_source is not None and shift is not None:
        value = value + _constant(like, channels, size, shift) * _block_map(like, no_source)
    return value


def assemble_from_cells(x: torch.Tensor, cell_conv, phases: Sequence, ranges: Sequence[Tuple[int, int]],
                        fill: str, shift: Optional[torch.Tensor], out_size: Tuple[int, int]) -> torch.Tensor:
    """The SkipConv output from its cells.

    Args:
        x (Tensor): The input.
        cell_conv: ``cell_conv(cell, channels) -> Tensor``: output channels (c0, c1) at the positions of
            ``cell`` (a stride-doubled convolution).
        phases, ranges: Each phase's lattices and the output-channel range that keeps it (see ``skip_conv2d``).
        fill, shift: As in ``skip_conv2d``; the kept cells' convolutions already add ``shift``.
        out_size: (H_out, W_out).
    """
    height, width = (-(-n // 2) for n in out_size)  # the cells, padded to the size of cell (0, 0)
    per_cell: Dict[Cell, List[torch.Tensor]] = {cell: [] for cell in _CELLS}
    for channels, lattices in zip(ranges, phases):
        if channels[1] <= channels[0]:
            continue
        kept = kept_cells_of(lattices)
        computed = {cell: cell_conv(cell, channels) for cell in _CELLS
                    if cell in kept and min(cell_size(out_size, cell)) > 0}
        like, padded = next(iter(computed.values()), x), {}
        for cell in _CELLS:
            if min(cell_size(out_size, cell)) == 0:
                part = like.new_zeros((like.shape[0], channels[1] - channels[0], height, width))
            else:
                part = computed.get(cell)
                if part is None:
                    part = _filled_cell(fill, cell, kept, computed, padded, like, channels, out_size, shift)
                rows, cols = cell_size(out_size, cell)
                if (rows, cols) != (height, width):
                    part = F.pad(part, (0, width - cols, 0, height - rows))
            per_cell[cell].append(part)
    cells = {cell: torch.cat(parts, dim=1) if len(parts) > 1 else parts[0] for cell, parts in per_cell.items()}
    # pixel_shuffle(2) of the stacked cells, as two interleaving stacks: columns within each row parity, then
    # rows (ONNX Concat and Reshape, which runtimes copy faster than DepthToSpace).
    rows = [torch.stack((cells[a, 0], cells[a, 1]), dim=-1).flatten(3) for a in (0, 1)]
    out = torch.stack(rows, dim=3).flatten(2, 3)
    if out.shape[2:] != out_size:
        out = out[:, :, :out_size[0], :out_size[1]]
    return out
