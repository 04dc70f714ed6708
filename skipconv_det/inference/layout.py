# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""How a feature map travels in the lattice domain: as the kept lattices of its SkipConv pattern, not as a full map.

A SkipConv pattern (without shifted channels) keeps the same lattices in every channel (``skip_phases(pattern)[0]``;
checkerboard: (even, even) and (odd, odd)). A map whose skipped positions nobody reads is carried as one tensor per
kept lattice, (N, C, h, w) each: half the data for the checkerboard, a quarter for the grid. The complement lattices
(the skipped positions) get tensors of their own only where someone needs them (see :mod:`.plan`).

Coordinates: a lattice ``(a, b)`` holds the full map's rows ``a, a + 2, ...`` (every row if ``a`` is None) and columns
likewise; full position ``(i, j)`` lies at lattice index ``(i // 2, j // 2)`` (``i`` on a None axis). A lattice
tensor may be stored larger than the lattice (the size of the pattern's first lattice, which is the largest): the
positions past the lattice's own extent hold values nobody reads (:func:`lattice_extent` says where they start).
"""
from typing import NamedTuple, Optional, Tuple

import torch

from ..ops import skip_phases

Axis = Optional[int]  # a lattice's parity on one axis; None: every position
LatticeSpec = Tuple[Axis, Axis]
Cell = Tuple[int, int]
CELLS: Tuple[Cell, ...] = ((0, 0), (0, 1), (1, 0), (1, 1))

# Patterns whose kept positions are the same in every channel: those a map can travel as (shifted channels make each
# channel group keep other positions, so a 1x1 conv after them reads skipped positions of other groups).
LATTICE_PATTERNS = ('checkerboard', 'row', 'col', 'grid')


class Lattice(NamedTuple):
    """A feature map in the lattice domain: the values at its kept lattices, and what its skipped positions hold.

    Attributes:
        kept (tuple[Tensor]): One (N, C, h, w) tensor per kept lattice of the pattern, in ``skip_phases`` order.
        size (tuple[int, int]): (H, W) of the full map.
        constant (Tensor, optional): For a map that is a SkipConv output (a *linear* map: its skipped positions are
            its fill), the per-channel value of the skipped positions that the fill gives no source (a folded
            BatchNorm's shift); None for 0.
        skipped (tuple[Tensor], optional): One tensor per complement lattice (:func:`complement`) when the skipped
            positions are carried explicitly.
    """
    kept: Tuple[torch.Tensor, ...]
    size: Tuple[int, int]
    constant: Optional[torch.Tensor] = None
    skipped: Optional[Tuple[torch.Tensor, ...]] = None

    @property
    def shape(self) -> torch.Size:
        """The full map's shape, (N, C, H, W)."""
        n, c = self.kept[0].shape[:2]
        return torch.Size((n, c) + tuple(self.size))


class PaddedMap(NamedTuple):
    """A full map written inside a border, for the convolutions that read it (see :func:`~.functional.conv_lattices`).

    Attributes:
        padded (Tensor): (N, C, H + 2 pad_h, W + 2 pad_w), the border filled with ``pad_value``; its storage runs on
            past the end (the slack), so that views shifted by up to one stride step stay inside it.
        pad (tuple[int, int]): (pad_h, pad_w).
        storage (Tensor, optional): The flat tensor ``padded`` lies in, where it may be reused once the map is
            read (see :func:`~.write.release`).
    """
    padded: torch.Tensor
    pad: Tuple[int, int]
    storage: Optional[torch.Tensor] = None

    @property
    def map(self) -> torch.Tensor:
        """The full map: a view of the inside of ``padded``."""
        (ph, pw), (hp, wp) = self.pad, self.padded.shape[2:]
        return self.padded[:, :, ph:hp - ph, pw:wp - pw]


def kept_lattices(pattern: str) -> Tuple[LatticeSpec, ...]:
    """The lattices a pattern keeps (in every channel)."""
    return tuple(skip_phases(pattern)[0])


def complement(pattern: str) -> Tuple[LatticeSpec, ...]:
    """The lattices of the positions a pattern skips: those of its other phases."""
    return tuple(lattice for phase in skip_phases(pattern)[1:] for lattice in phase)


def cells_of(lattice: LatticeSpec) -> Tuple[Cell, ...]:
    """The cells (i % 2, j % 2) a lattice covers."""
    a, b = lattice
    return tuple((r, s) for r in ((0, 1) if a is None else (a, )) for s in ((0, 1) if b is None else (b, )))


def lattice_of(cell: Cell, lattices: Tuple[LatticeSpec, ...]) -> Optional[int]:
    """The index of the lattice that holds ``cell``, or None."""
    return next((k for k, lattice in enumerate(lattices) if cell in cells_of(lattice)), None)


def axis_extent(size: int, parity: Axis) -> int:
    """How many positions of an axis of ``size`` a lattice axis holds."""
    return size if parity is None else (size - parity + 1) // 2


def lattice_extent(size: Tuple[int, int], lattice: LatticeSpec) -> Tuple[int, int]:
    """The rows and columns of a map of ``size`` that a lattice holds."""
    return axis_extent(size[0], lattice[0]), axis_extent(size[1], lattice[1])


def lattice_index(parity: Axis, start: int, step: int) -> Tuple[int, int]:
    """Full positions ``start + step * k`` (on a lattice axis of ``parity``) as lattice indices ``(start', step')``."""
    if parity is None:
        return start, step
    assert start % 2 == parity and step % 2 == 0, 'the positions lie on another lattice'
    return start // 2, step // 2


def supports(pattern: str, shift_channels: bool) -> bool:
    """Whether SkipConv's outputs with this pattern can travel in the lattice domain."""
    return pattern in LATTICE_PATTERNS and not shift_channels
