# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""Eager SkipConv's output from its lattices' results: each part written into its region, the skipped positions
zeroed or filled, and the backward that takes the parts' gradients back out (with the fill's adjoint)."""
from typing import Optional, Sequence

import torch

from . import _kernels
from ._fill_adjoint import plan_fill_adjoint
from ._fill_in_place import apply_fill, fill_constant
from .fill import FillPlan


def _scatter(out_like, memory_format, regions, skipped, fill_plan, shift, parts):
    shape, dtype, device = out_like
    out = torch.empty(shape, dtype=dtype, device=device, memory_format=memory_format)
    # In NCHW the kernel writes the parts and the fill one plane at a time, while the plane is in cache.
    if (fill_plan and out.is_contiguous() and _kernels.kernels_apply(out)
            and all(part.dtype == out.dtype for part in parts)):
        _kernels.assemble_nchw(out, regions, parts, fill_plan, shift)
        return out
    if skipped is None:
        fill_constant(out, shift, slice(None))
    for region in skipped or ():
        fill_constant(out[region], shift, region[1])
    for region, part in zip(regions, parts):
        out[region].copy_(part)
    return apply_fill(out, fill_plan, shift)


class _Scatter(torch.autograd.Function):
    """Write lattice results into the output: zero the ``skipped`` regions (or, if None, all of it first; the
    ``shift`` instead of zero if given), copy each part into its region, then write the fill (``fill_plan``, see
    :mod:`.fill`) from the kept positions.

    In channels_last each position's channels lie together, so zeroing just the skipped positions is a chunked
    fill that writes the output once; in NCHW it would be an element-strided fill, several times slower than one
    memset. Doing it in one Function keeps backward to strided reads of the output gradient (autograd's in-place
    slice copies would clone the full gradient once per lattice).
    """

    @staticmethod
    def forward(ctx, out_like, memory_format, regions, skipped, fill_plan, shift, *parts):
        ctx.regions, ctx.fill_plan, ctx.memory_format = regions, fill_plan, memory_format
        return _scatter(out_like, memory_format, regions, skipped, fill_plan, shift, parts)

    @staticmethod
    def backward(ctx, grad_out):
        if not ctx.fill_plan:
            return (None, ) * 6 + tuple(grad_out[region] for region in ctx.regions)
        # Each part's gradient is a copy of its region (always a copy: grad_out is not ours to modify), in the
        # part's layout, as the convolution's backward would make it anyway; the fill's adjoint adds into those
        # copies: no output-sized copy, and in NCHW no element-strided adds.
        adjoint_plan = plan_fill_adjoint(ctx.fill_plan, ctx.regions, *grad_out.shape[2:])
        if (ctx.memory_format == torch.contiguous_format and grad_out.is_contiguous()
                and _kernels.kernels_apply(grad_out)):
            return (None, ) * 6 + tuple(_kernels.disassemble_nchw(grad_out, ctx.regions, adjoint_plan))
        grads = [grad_out[region].clone(memory_format=ctx.memory_format) for region in ctx.regions]
        for channels, op, adds in adjoint_plan:
            g = grad_out[:, channels, op.rows, op.cols]
            if len(op.offsets) > 1:  # weighted once, not once per source
                g = g.mul(op.weight)
            for part, (c, i, j), source in adds:
                grads[part][:, c, i, j].add_(g[(slice(None), ) + source])
        return (None, ) * 6 + tuple(grads)


def scatter_lattices(out_like: tuple, memory_format: torch.memory_format, regions: Sequence[tuple],
                     skipped: Optional[tuple], fill_plan: FillPlan, shift: Optional[torch.Tensor],
                     parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """The output ``(shape, dtype, device)`` = ``out_like`` in ``memory_format``, from the ``parts`` (one per
    region ``(:, channels, rows, cols)``): the ``skipped`` regions (all of it first if None) zero or ``shift``, then
    the parts, then the fill (``fill_plan``; empty with fill='zero')."""
    if not (torch.is_grad_enabled() and any(p.requires_grad for p in parts)):
        # Without a gradient to take, the Function only adds overhead; plain in-place copies do the same. (The jit
        # tracer, which cannot record a Function with Python-object arguments, takes the cells path instead.)
        return _scatter(out_like, memory_format, regions, skipped, fill_plan, shift, parts)
    return _Scatter.apply(out_like, memory_format, tuple(regions), skipped, fill_plan, shift, *parts)
