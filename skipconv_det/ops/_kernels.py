# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""SkipConv's compiled CPU kernels (``csrc/kernels.h``) as Python calls: one function per kernel, each building the
records the kernel reads (``csrc/records.h``: ``Region``, ``FillRecord``, ``AdjointAdd``) by field name from the
ops' own plans. :mod:`._extension` builds and loads them."""
from typing import List, Optional, Sequence, Tuple

import torch

from . import _extension
from .fill import FillPlan


def kernels_apply(out: torch.Tensor) -> bool:
    """Whether the kernels can write ``out`` (or read it, for a gradient) here: a 4D CPU tensor, outside tracing
    and compiling, with the kernels built."""
    return (out.device.type == 'cpu' and out.dim() == 4 and not torch.jit.is_tracing()
            and not torch.compiler.is_compiling() and _extension.load())


def region_record(shape: Tuple[int, ...], channels: slice, rows: slice, cols: slice):
    """The region ``t[:, channels, rows, cols]`` of a 4D tensor ``t`` of ``shape``, as a ``Region``."""
    c0, c1, _ = channels.indices(shape[1])
    rows, cols = range(*rows.indices(shape[2])), range(*cols.indices(shape[3]))
    return _extension.module().Region(channel_start=c0, channel_stop=c1, row_start=rows.start, rows=len(rows),
                                      row_step=rows.step, col_start=cols.start, cols=len(cols), col_step=cols.step)


def _fill_records(shape: Tuple[int, ...], fill_plan: FillPlan) -> list:
    records = _extension.module().FillRecord
    return [records(target=region_record(shape, channels, op.rows, op.cols), offsets=list(op.offsets),
                    weight=op.weight) for channels, op in fill_plan]


def fill_in_place(out: torch.Tensor, fill_plan: FillPlan) -> None:
    """Write the fill ops of ``fill_plan`` (each with a source) into ``out``, any layout."""
    _extension.module().fill_in_place(out, _fill_records(out.shape, fill_plan))


def assemble_nchw(out: torch.Tensor, regions: Sequence[tuple], parts: Sequence[torch.Tensor], fill_plan: FillPlan,
                  shift: Optional[torch.Tensor]) -> None:
    """Write a contiguous (NCHW) output one (sample, channel) plane at a time: each part into its region
    ``(:, channels, rows, cols)``, then the fill (its positions without a source: 0, or ``shift``)."""
    kernels = _extension.module()
    kernels.assemble_nchw(out, list(parts), [region_record(out.shape, *region[1:]) for region in regions],
                          _fill_records(out.shape, fill_plan), shift)


def disassemble_nchw(grad_out: torch.Tensor, regions: Sequence[tuple], adjoint_plan) -> List[torch.Tensor]:
    """The gradients of the parts that ``assemble_nchw`` wrote into ``regions`` (contiguous, in NCHW): each part's
    region of the contiguous ``grad_out``, plus the fill's adjoint (``adjoint_plan``, see
    :func:`._fill_adjoint.plan_fill_adjoint`), one plane at a time."""
    kernels = _extension.module()
    shape = grad_out.shape
    part_regions = [region_record(shape, *region[1:]) for region in regions]
    sizes = [(r.channel_stop - r.channel_start, r.rows, r.cols) for r in part_regions]
    adds = []
    for channels, op, op_adds in adjoint_plan:
        target = region_record(shape, channels, op.rows, op.cols)
        weight = op.weight if len(op.offsets) > 1 else 1.0
        target_size = (target.channel_stop - target.channel_start, target.rows, target.cols)
        for part, index, source in op_adds:
            (pc, pr, pq), (gc, gr, gq) = ([range(*s.indices(n)) for s, n in zip(slices, size)]
                                          for slices, size in ((index, sizes[part]), (source, target_size)))
            part_region = kernels.Region(channel_start=pc.start, channel_stop=pc.start + len(pc), row_start=pr.start,
                                         rows=len(pr), row_step=pr.step, col_start=pq.start, cols=len(pq),
                                         col_step=pq.step)
            # The op's targets gr, gc, gq (indices into its target region) as positions of the output gradient.
            grad_region = kernels.Region(
                channel_start=target.channel_start + gc.start, channel_stop=target.channel_start + gc.start + len(gc),
                row_start=target.row_start + target.row_step * gr.start, rows=len(gr),
                row_step=target.row_step * gr.step, col_start=target.col_start + target.col_step * gq.start,
                cols=len(gq), col_step=target.col_step * gq.step)
            adds.append(kernels.AdjointAdd(part=part, grad_region=grad_region, part_region=part_region, weight=weight))
    grads = [grad_out.new_empty((shape[0], ) + size) for size in sizes]
    kernels.disassemble_nchw(grad_out, grads, part_regions, adds)
    return grads
