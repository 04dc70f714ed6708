# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""SkipConv's output assembled from its four cells, interleaved: the formulation exported to ONNX and compiled by
torch.compile.

Every pattern has period 2, so the output is four interleaved cells (i % 2, j % 2) of about a quarter of its
size each. A kept cell is one convolution with twice the stride; a skipped cell is its fill (the rules of
:mod:`~.fill`, translated to cell coordinates); and the four cells are interleaved into the output (a pixel
shuffle, written as stacks and reshapes). A fill is built for its runtime:
- exported to ONNX, as depthwise convolutions of the kept cells whose taps are the fill's weighted shifts, times a
  constant map where the weights change at the output's border, so that onnxruntime's blocked layout (NCHWc)
  keeps them, as it keeps the kept cells' convolutions, rather than reordering each kept cell out to slice it;
- under torch.compile, as weighted sums of shifted slices of the kept cells, which inductor fuses with the
  interleave into one kernel.
No op writes into a view, so the graph has no ``ScatterND`` with index tensors (and the TorchScript exporter, which
mistranslates the in-place fills of the eager assembly, has nothing in place to translate).
"""
from contextlib import contextmanager
from functools import lru_cache
from typing import Dict, FrozenSet, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from .fill import axis_groups, fill_sources
from .lattice import cell_size
from .patterns import CELLS, Cell, kept_cells_of

# How a skipped cell's fill is computed: depthwise convolutions of the kept cells suit onnxruntime's blocked
# layout; inductor fuses shifted slices and adds into the interleave instead.
FILLED_BY = ('convolutions', 'slices')
_forced: Optional[str] = None  # what cell_assembly() forces SkipConv's skipped cells to be filled by


@contextmanager
def cell_assembly(filled_by: str = 'convolutions'):
    """Within it, SkipConv assembles its output from cells in eager mode too, with its skipped cells
    ``filled_by='convolutions'`` (as exported to ONNX) or ``'slices'`` (as under torch.compile): to compare the
    assemblies, and to test them without exporting or compiling."""
    if filled_by not in FILLED_BY:
        raise ValueError(f"filled_by must be 'convolutions' or 'slices', got {filled_by!r}")
    global _forced
    previous, _forced = _forced, filled_by
    try:
        yield
    finally:
        _forced = previous


def forced_cell_assembly() -> Optional[str]:
    """What :func:`cell_assembly` forces skipped cells to be filled by here (None outside it)."""
    return _forced


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

    The cell's first, middle and last rows and columns (:func:`~.fill.axis_groups`) are blocks on which each
    offset is either inside the output or not, and the fill rule (:func:`~.fill.fill_sources`) gives each block its
    offsets. A neighbour outside the output reads 0, so there an offset's weight does not matter: offsets whose
    weights agree wherever both are inside share one term (with 'linear', the 4-neighbours are one term weighted
    by the inverse of their count, however the borders cut them).
    """
    row_groups, col_groups = axis_groups(out_size[0], cell[0]), axis_groups(out_size[1], cell[1])
    blocks = [(r, c) for r in range(len(row_groups)) for c in range(len(col_groups))]
    weights: Dict[Tuple[int, int], Dict[Tuple[int, int], float]] = {}  # offset -> block -> weight
    no_source = {}
    for r, c in blocks:
        offsets = fill_sources(fill, cell, kept, row_groups[r][1], col_groups[c][1])
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


def _terms_by_slices(terms: Sequence[_FillTerm], computed: Dict[Cell, torch.Tensor], padded: Dict[Cell, torch.Tensor],
                     like: torch.Tensor, size: Tuple[int, int], out_size: Tuple[int, int]) -> List[torch.Tensor]:
    """Each fill term as a weighted sum of shifted slices of the kept cells (``padded`` as in :func:`_shifted`)."""
    parts = []
    for term in terms:
        total = None
        for source, row_shift, col_shift in term.sources:
            part = _shifted(computed, source, row_shift, col_shift, size, padded, out_size)
            total = part if total is None else total + part
        if isinstance(term.weight, tuple):
            total = total * _block_map(like, term.weight)
        elif term.weight != 1:
            total = total * term.weight
        parts.append(total)
    return parts


def _depthwise_shifts(computed: Dict[Cell, torch.Tensor], source: Cell, taps: Dict[Tuple[int, int], float],
                      size: Tuple[int, int], out_size: Tuple[int, int]) -> torch.Tensor:
    """``sum(w * computed[source][r + dr, c + dc] for (dr, dc), w in taps.items())`` for r, c of a cell of
    ``size``, 0 outside the output: one depthwise convolution of the kept cell, whose zero padding is the outside
    of the output (a Pad before it, which onnxruntime fuses into the convolution)."""
    src = computed[source]
    (h, w), (sh, sw) = size, cell_size(out_size, source)
    if taps == {(0, 0): 1.0} and (h, w) == (sh, sw):
        return src  # a copy of the kept cell ('nearest')
    # The kernel spans the shifts, and 0 so that the padding never is negative; and far enough that the output has
    # the size of the filled cell.
    r0, c0 = min(0, *(dr for dr, _ in taps)), min(0, *(dc for _, dc in taps))
    r1, c1 = max(sh - h, *(dr for dr, _ in taps)), max(sw - w, *(dc for _, dc in taps))
    kernel = [[taps.get((dr, dc), 0.0) for dc in range(c0, c1 + 1)] for dr in range(r0, r1 + 1)]
    channels = int(src.shape[1])  # a constant weight for the TorchScript exporter too, whose shapes are traced
    weight = src.new_tensor([[kernel]] * channels)
    pads = (-c0, w + c1 - sw, -r0, h + r1 - sh)
    if any(pads):
        src = F.pad(src, pads)
    return F.conv2d(src, weight, groups=channels)


def _terms_by_convolutions(terms: Sequence[_FillTerm], computed: Dict[Cell, torch.Tensor], like: torch.Tensor,
                           size: Tuple[int, int], out_size: Tuple[int, int]) -> List[torch.Tensor]:
    """The fill terms as depthwise convolutions of the kept cells: per source cell one for the terms of constant
    weight (the weight in its taps), and one per term weighted by a :data:`BlockMap`, whose sum is multiplied by
    the map."""
    constant: Dict[Cell, Dict[Tuple[int, int], float]] = {}
    mapped = []
    for term in terms:
        per_source = constant if not isinstance(term.weight, tuple) else {}
        scale = term.weight if per_source is constant else 1.0
        for source, row_shift, col_shift in term.sources:
            taps = per_source.setdefault(source, {})
            taps[row_shift, col_shift] = taps.get((row_shift, col_shift), 0.0) + scale
        if per_source is not constant:
            mapped.append((per_source, term.weight))
    parts = []
    for per_source, weight in [(constant, None)] + mapped:
        total = None
        for source, taps in sorted(per_source.items()):
            part = _depthwise_shifts(computed, source, taps, size, out_size)
            total = part if total is None else total + part
        if total is not None:
            parts.append(total if weight is None else total * _block_map(like, weight))
    return parts


def _filled_cell(fill: str, cell: Cell, kept: FrozenSet[Cell], computed: Dict[Cell, torch.Tensor],
                 padded: Dict[Cell, torch.Tensor], like: torch.Tensor, channels: Tuple[int, int],
                 out_size: Tuple[int, int], shift: Optional[torch.Tensor], filled_by: str) -> torch.Tensor:
    """A skipped cell of one channel range, from the kept cells in ``computed`` (``padded`` as in
    :func:`_shifted`), by ``filled_by`` (one of :data:`FILLED_BY`)."""
    size = cell_size(out_size, cell)
    # torch.compile traces the planning once per graph anyway, and warns about a cache it would bypass.
    plan = _fill_terms.__wrapped__ if torch.compiler.is_compiling() else _fill_terms
    terms, no_source = ((), None) if fill == 'zero' else plan(fill, cell, kept, tuple(out_size))
    if filled_by == 'convolutions':
        parts = _terms_by_convolutions(terms, computed, like, size, out_size)
    else:
        parts = _terms_by_slices(terms, computed, padded, like, size, out_size)
    if not parts:
        return _constant(like, channels, size, shift)
    value = parts[0]
    for part in parts[1:]:
        value = value + part
    if no_source is not None and shift is not None:
        value = value + _constant(like, channels, size, shift) * _block_map(like, no_source)
    return value


def assemble_from_cells(x: torch.Tensor, cell_conv, phases: Sequence, ranges: Sequence[Tuple[int, int]],
                        fill: str, shift: Optional[torch.Tensor], out_size: Tuple[int, int],
                        filled_by: str) -> torch.Tensor:
    """The SkipConv output from its cells.

    Args:
        x (Tensor): The input.
        cell_conv: ``cell_conv(cell, channels) -> Tensor``: output channels (c0, c1) at the positions of
            ``cell`` (a stride-doubled convolution).
        phases, ranges: Each phase's lattices and the output-channel range that keeps it (see ``skip_conv2d``).
        fill, shift: As in ``skip_conv2d``; the kept cells' convolutions already add ``shift``.
        out_size: (H_out, W_out).
        filled_by (str): How skipped cells are filled: 'convolutions' (for onnxruntime) or 'slices' (for
            inductor).
    """
    height, width = (-(-n // 2) for n in out_size)  # the cells, padded to the size of cell (0, 0)
    per_cell: Dict[Cell, List[torch.Tensor]] = {cell: [] for cell in CELLS}
    for channels, lattices in zip(ranges, phases):
        if channels[1] <= channels[0]:
            continue
        kept = kept_cells_of(lattices)
        computed = {cell: cell_conv(cell, channels) for cell in CELLS
                    if cell in kept and min(cell_size(out_size, cell)) > 0}
        like, padded = next(iter(computed.values()), x), {}
        for cell in CELLS:
            if min(cell_size(out_size, cell)) == 0:
                part = like.new_zeros((like.shape[0], channels[1] - channels[0], height, width))
            else:
                part = computed.get(cell)
                if part is None:
                    part = _filled_cell(fill, cell, kept, computed, padded, like, channels, out_size, shift,
                                        filled_by)
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
