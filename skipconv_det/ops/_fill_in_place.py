# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""Writing a planned fill (:data:`~.fill.FillPlan`) into an eager SkipConv output whose kept positions are
computed, in place: by the compiled kernel on the CPU, else by PyTorch ops, with the same results."""
from typing import Optional, Tuple

import torch

from . import _kernels
from .fill import FillOp, FillPlan


def apply_fill(out: torch.Tensor, fill_plan: FillPlan, shift: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Write the fill of every skipped position of ``out`` (whose kept positions are computed) in place.
    Positions without a source hold 0, or the per-channel ``shift`` (see :func:`~.skip_conv.skip_conv2d`).

    On the CPU the compiled kernel (:func:`._kernels.fill_in_place`) writes each op's targets once; elsewhere
    PyTorch ops do (:func:`apply_fill_by_torch_ops`), with the same results."""
    if fill_plan and _kernels.kernels_apply(out):
        for channels, op in fill_plan:
            if not op.offsets:
                fill_constant(out[:, channels, op.rows, op.cols], shift, channels)
        with_sources = tuple((channels, op) for channels, op in fill_plan if op.offsets)
        if with_sources:
            _kernels.fill_in_place(out, with_sources)
        return out
    return apply_fill_by_torch_ops(out, fill_plan, shift)


def apply_fill_by_torch_ops(out: torch.Tensor, fill_plan: FillPlan,
                            shift: Optional[torch.Tensor] = None) -> torch.Tensor:
    """:func:`apply_fill` with PyTorch ops, one per source (and one for the weight) per fill op."""
    # In NCHW a stride-2 view reads and writes single elements, so several sources are summed from contiguous
    # copies of the kept lattices (one per cell and channel range, shared by the ops) and written once. In
    # channels_last each position's channels lie together and the strided views are fast as they are.
    by_lattice = out.dim() == 4 and not out.is_contiguous(memory_format=torch.channels_last)
    lattices = {}
    for channels, op in fill_plan:
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
