# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""SkipConv's skip patterns: which output positions each output channel keeps (docs/operator.md, Definition).

Every pattern has period 2: it keeps some of the four cells (i % 2, j % 2) of the output grid. Each pattern splits
the cells into phases; phase g is what channel group g keeps when channels are shifted, and phase 0 is the pattern
itself. A phase is a tuple of lattices (a, b): rows i % 2 == a (every row if a is None) and columns j % 2 == b
(every column if b is None).
"""
from typing import FrozenSet, List, Optional, Sequence, Tuple

import torch

Cell = Tuple[int, int]
Lattice = Tuple[Optional[int], Optional[int]]
CELLS: Tuple[Cell, ...] = ((0, 0), (0, 1), (1, 0), (1, 1))

_PHASES = {
    'checkerboard': (((0, 0), (1, 1)), ((0, 1), (1, 0))),
    'row': (((0, None),), ((1, None),)),
    'col': (((None, 0),), ((None, 1),)),
    'grid': (((0, 0),), ((0, 1),), ((1, 0),), ((1, 1),)),
    'none': (((None, None),),),
}
SKIP_PATTERNS = tuple(_PHASES)


def kept_cells_of(lattices: Sequence[Lattice]) -> FrozenSet[Cell]:
    """The cells (i % 2, j % 2) that a phase's lattices (a, b) cover (None: both parities)."""
    return frozenset((a, b) for la, lb in lattices for a in ((0, 1) if la is None else (la,))
                     for b in ((0, 1) if lb is None else (lb,)))


def skipped_cells(lattices: Sequence[Lattice]) -> List[Lattice]:
    """The cells (i % 2, j % 2) of the output that a phase's lattices leave out; (a, None) for a whole row parity."""
    kept = kept_cells_of(lattices)
    cells = []
    for a in (0, 1):
        free = [b for b in (0, 1) if (a, b) not in kept]
        cells += [(a, None)] if len(free) == 2 else [(a, b) for b in free]
    return cells


# Each phase keeps the same number of the four cells.
_DENSITY = {pattern: len(kept_cells_of(phases[0])) / 4 for pattern, phases in _PHASES.items()}


def check_pattern(skip_pattern: str) -> None:
    """Raise a ValueError listing the patterns if ``skip_pattern`` is not one of them."""
    if skip_pattern not in _PHASES:
        raise ValueError(f'Unknown skip_pattern {skip_pattern!r}; use one of {", ".join(SKIP_PATTERNS)}.')


def skip_phases(skip_pattern: str) -> tuple:
    """The phases of a pattern: phase g (what channel group g keeps when channels are shifted; phase 0 is the
    pattern itself) as a tuple of lattices (a, b): output rows i % 2 == a (every row if a is None) and columns
    j % 2 == b (every column if b is None)."""
    check_pattern(skip_pattern)
    return _PHASES[skip_pattern]


def skip_density(skip_pattern: str) -> float:
    """Fraction of output positions a pattern keeps (on an even-sized grid)."""
    check_pattern(skip_pattern)
    return _DENSITY[skip_pattern]


def split_ranges(n: int, sections: int) -> List[Tuple[int, int]]:
    """``torch.arange(n).tensor_split(sections)`` as (start, stop) pairs, in plain ints (so torch.compile traces
    the planning without reading tensors back)."""
    size, extra = divmod(int(n), sections)  # int: shapes are tensors under the jit tracer
    bounds = [i * size + min(i, extra) for i in range(sections + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def phase_channels(skip_pattern: str, out_channels: int, shift_channels: bool) -> List[Tuple[int, int]]:
    """The output-channel range (c0, c1) that keeps each phase of the pattern: with ``shift_channels``, the
    contiguous groups of ``torch.arange(out_channels).tensor_split(phases)``; else every channel keeps phase 0
    and the other phases are empty ranges."""
    num_phases = len(skip_phases(skip_pattern))
    if shift_channels:
        return split_ranges(out_channels, num_phases)
    return [(0, out_channels)] + [(0, 0)] * (num_phases - 1)


def skip_mask(skip_pattern: str,
              out_channels: int,
              height: int,
              width: int,
              shift_channels: bool = False,
              device: Optional[torch.device] = None) -> torch.Tensor:
    """The kept positions as a bool tensor of shape (out_channels, height, width), written from the formulas of
    docs/operator.md. The fast path never uses it; it defines the reference ``F.conv2d(...) * mask``."""
    check_pattern(skip_pattern)
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
