# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""The ways SkipConv computes its output, one function per path (:data:`PATHS`), and the choice among them
(:func:`choose_path`), which :func:`~.skip_conv.skip_conv2d` makes once per call.

Every path takes the arguments of ``skip_conv2d``, checked, with ``stride`` and ``dilation`` as pairs, and a
``shift`` that is not learnt (``skip_conv2d`` adds a learnt one itself): kept positions get it with the bias, and
the fills of them carry it on (their weights sum to 1).
"""
from functools import partial
from typing import Optional

import torch
import torch.nn.functional as F

from ._cells import assemble_from_cells
from ._lattice_conv import cell_conv, conv2d, lattice_pieces, pads_explicitly
from ._layout import suggested_memory_format
from ._saved import InputCopies
from ._scatter import scatter_lattices
from .fill import plan_output_fill
from .lattice import spatial_geometry
from .patterns import kept_cells_of, phase_channels, skip_phases, skipped_cells


def _with_shift(bias: Optional[torch.Tensor], shift: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    if shift is None:
        return bias
    return shift if bias is None else bias + shift


def dense(x, weight, bias, stride, padding, dilation, groups, skip_pattern, shift_channels, fill, shift):
    """``skip_pattern='none'``: the plain convolution."""
    return conv2d(x, weight, _with_shift(bias, shift), stride, padding, dilation, groups)


def lattices(x, weight, bias, stride, padding, dilation, groups, skip_pattern, shift_channels, fill, shift):
    """Eager: each lattice of kept positions as convolutions with twice the stride (:mod:`._lattice_conv`), their
    results written into the output in place and the skipped positions filled (:mod:`._scatter`)."""
    bias = _with_shift(bias, shift)
    size, out_size, kernel, stride, pads, dilation = spatial_geometry(x.shape[2:], tuple(weight.shape[2:]),
                                                                       stride, padding, dilation)
    phases = skip_phases(skip_pattern)
    ranges = phase_channels(skip_pattern, weight.shape[0], shift_channels)
    copies = InputCopies(x, weight, bias)  # the copies of x that lattices read, kept for backward as recipes
    if any(p for axis in pads for p in axis) and pads_explicitly(x, weight):
        # Every lattice then fits in the padded input and is a single convolution (of a cropped view).
        x = copies.make(F.pad, x, (*pads[1], *pads[0]))
        size, pads = tuple(x.shape[2:]), ((0, 0), (0, 0))

    # The output layout follows ATen's convolution: channels_last if the input's or the weight's strides
    # suggest it (the same stride heuristic, so that ambiguous shapes such as N=0 or 1x1 agree too).
    memory_format = suggested_memory_format(x, weight)
    # Once here rather than in each lattice's conv call, which would copy the weight to this layout every time.
    weight = weight.contiguous(memory_format=memory_format)
    pieces = lattice_pieces(x, phases, ranges, size, out_size, kernel, stride, pads, dilation, weight=weight,
                            bias=bias, groups=groups, memory_format=memory_format, copies=copies)
    regions, parts = [p[0] for p in pieces], [p[1] for p in pieces]
    out_like = ((x.shape[0], weight.shape[0]) + out_size, parts[0].dtype if parts else x.dtype, x.device)
    fill_plan, skipped = (), ()
    if fill != 'zero':  # the fill writes every skipped position
        fill_plan = plan_output_fill(fill, [(r, kept_cells_of(phase)) for r, phase in zip(ranges, phases)
                                            if r[1] > r[0]], *out_size)
    elif memory_format == torch.channels_last:
        skipped = tuple(
            (slice(None), slice(c0, c1), slice(a, None, 2), slice(None) if b is None else slice(b, None, 2))
            for (c0, c1), phase in zip(ranges, phases) if c1 > c0 for a, b in skipped_cells(phase))
    else:
        skipped = None
    return scatter_lattices(out_like, memory_format, regions, skipped, fill_plan, shift, parts)


def cells(x, weight, bias, stride, padding, dilation, groups, skip_pattern, shift_channels, fill, shift, *,
          filled_by: str):
    """Exported to ONNX and under torch.compile: the output interleaved from its four cells, kept cells as
    convolutions with twice the stride and skipped cells ``filled_by`` depthwise 'convolutions' or shifted
    'slices' of them (:mod:`._cells`)."""
    bias = _with_shift(bias, shift)
    size, out_size, kernel, stride, pads, dilation = spatial_geometry(x.shape[2:], tuple(weight.shape[2:]),
                                                                       stride, padding, dilation)
    # A fixed-shape graph: plain ints, so that the TorchScript exporter records no shape arithmetic.
    size, out_size = (tuple(int(n) for n in s) for s in (size, out_size))
    memory_format = suggested_memory_format(x, weight)
    convs = partial(cell_conv, x, size, kernel, stride, pads, dilation, out_size, bias=bias, groups=groups,
                    weight=weight.contiguous(memory_format=memory_format), memory_format=memory_format,
                    copies=InputCopies(x))
    return assemble_from_cells(x, convs, skip_phases(skip_pattern),
                               phase_channels(skip_pattern, weight.shape[0], shift_channels), fill, shift, out_size,
                               filled_by)


# The paths that compute SkipConv themselves; 'custom_op' (:mod:`._custom_op`) stands for one of them.
PATHS = {
    'dense': dense,
    'lattices': lattices,
    'cells_by_convolutions': partial(cells, filled_by='convolutions'),
    'cells_by_slices': partial(cells, filled_by='slices'),
}


def choose_path(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], padding,
                shift: Optional[torch.Tensor], skip_pattern: str, compile_mode: str,
                cell_assembly: Optional[str]) -> str:
    """The path of a SkipConv call, given the user's choices in effect (``compile_mode``, see
    :func:`~._custom_op.compile_mode`; ``cell_assembly``, what :func:`~._cells.cell_assembly` forces, or None):

    - ``'custom_op'``: torch.compile is tracing a call that the custom op can stand for: compile mode 'opaque',
      no gradient, no autocast (which does not reach inside custom ops), integer padding. Not torch.export (the
      ONNX exporter's tracer too), whose graphs are for runtimes that do not know the op.
    - ``'dense'``: skip_pattern 'none'.
    - ``'cells_by_convolutions'``, ``'cells_by_slices'``: as forced by ``cell_assembly``; else by convolutions
      under ONNX export, by slices under torch.compile and the jit tracer. Inductor fuses the functional assembly
      (and the ops after it) into kernels that write the output once, where the eager assembly's in-place writes
      would become chains of masked scatters that are slow to compile and to run. The jit tracer (which FLOP
      counters run) records the eager fill as one in-place write to a view per source, and its graph passes slow
      down with every such write; the functional assembly runs the same convolutions, so counts the same FLOPs.
    - ``'lattices'``: eager.
    """
    if (compile_mode == 'opaque' and torch.compiler.is_compiling() and not torch.compiler.is_exporting()
            and not torch.onnx.is_in_onnx_export() and not isinstance(padding, str)
            and not (torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                                     for t in (x, weight, bias, shift)))
            and not torch.is_autocast_enabled(x.device.type)):
        return 'custom_op'
    if skip_pattern == 'none':
        return 'dense'
    if cell_assembly is not None:
        return f'cells_by_{cell_assembly}'
    if torch.onnx.is_in_onnx_export():
        return 'cells_by_convolutions'
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return 'cells_by_slices'
    return 'lattices'
