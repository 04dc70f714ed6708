# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""SkipConv's autograd Functions: writing lattice results into the output (:class:`_Scatter`), the input windows
the lattices read (:class:`_Window`, cut from a :class:`_WindowSource` that adds up their gradients), and the
stride-2 convolution with a polyphase input gradient (:class:`_Stride2Conv`)."""
from functools import lru_cache
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from ._layout import _suggested_memory_format
from ._extension import fill_kernel_applies
from .fill import apply_fill, assemble_in_planes, fill_constant, kernel_ranges


def _phase_taps(parity: int, pad: int, kernel: int, out_count: int,
                in_count: int) -> Optional[Tuple[slice, int, int]]:
    """One axis of a stride-2 convolution's input gradient at input positions ``parity + 2u`` (u < in_count).

    Output t, tap k reads input ``2t + k - pad``, so these positions receive the taps k of parity
    ``(parity + pad) % 2``, from outputs ``u + c - m`` (m-th such tap): a stride-1 correlation of the output
    gradient with those taps flipped. Returns the flipped taps as a slice of the flipped kernel, and the (low,
    high) padding of the output gradient (negative crops) that gives exactly in_count results; None if no tap
    reaches these positions.
    """
    k0 = (parity + pad) % 2
    taps = len(range(k0, kernel, 2))
    if taps == 0 or in_count == 0:
        return None
    c = (parity + pad - k0) // 2
    lo = taps - 1 - c
    first = kernel - 1 - k0 - 2 * (taps - 1)
    return slice(first, first + 2 * taps - 1, 2), lo, in_count + taps - 1 - out_count - lo


def _polyphase_input_grad(grad: torch.Tensor, weight: torch.Tensor, input_shape: torch.Size,
                          padding: Tuple[int, int], groups: int) -> torch.Tensor:
    """The input gradient of ``F.conv2d(x, weight, None, 2, padding, 1, groups)``, in NCHW, as four stride-1
    correlations: one per input phase (row and column parity), each with the taps that reach that phase."""
    kh, kw = weight.shape[2:]
    # (C_in, C_out // groups, kh, kw), flipped: the input gradient correlates the output gradient with it.
    flipped = weight.unflatten(0, (groups, -1)).transpose(1, 2).flatten(0, 1).flip(2, 3)
    grad_x = grad.new_empty(input_shape)
    for r in (0, 1):
        for q in (0, 1):
            target = grad_x[:, :, r::2, q::2]
            rows = _phase_taps(r, padding[0], kh, grad.shape[2], target.shape[2])
            cols = _phase_taps(q, padding[1], kw, grad.shape[3], target.shape[3])
            if rows is None or cols is None:
                target.zero_()
                continue
            (ky, top, bottom), (kx, left, right) = rows, cols
            target.copy_(F.conv2d(F.pad(grad, (left, right, top, bottom)), flipped[:, :, ky, kx], None, 1, 0, 1,
                                  groups))
    return grad_x


class _Stride2Conv(torch.autograd.Function):
    """``F.conv2d`` with stride 2 (a lattice's convolution), whose input gradient is computed polyphase (see
    :func:`_polyphase_input_grad`).

    On the CPU in NCHW, torch's stride-2 input gradient also copies the whole input-sized gradient, so on large
    maps two lattices cost about the dense layer's input gradient; the four stride-1 correlations cost less there,
    but more on small maps, hence ``_POLYPHASE_MIN_POSITIONS``.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, padding, groups):
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.groups, ctx.has_bias = padding, groups, bias is not None
        return F.conv2d(x, weight, bias, 2, padding, 1, groups)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _polyphase_input_grad(grad, weight, x.shape, ctx.padding, ctx.groups)
        if ctx.needs_input_grad[1]:
            grad_w = torch.ops.aten.convolution_backward(grad, x, weight, None, [2, 2], list(ctx.padding), [1, 1],
                                                         False, [0, 0], ctx.groups, [False, True, False])[1]
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None, None


def _scatter(out_like, memory_format, regions, skipped, fills, shift, parts):
    shape, dtype, device = out_like
    out = torch.empty(shape, dtype=dtype, device=device, memory_format=memory_format)
    if assemble_in_planes(out, regions, parts, fills, shift):
        return out
    if skipped is None:
        fill_constant(out, shift, slice(None))
    for region in skipped or ():
        fill_constant(out[region], shift, region[1])
    for region, part in zip(regions, parts):
        out[region].copy_(part)
    return apply_fill(out, fills, shift)


class _Scatter(torch.autograd.Function):
    """Write lattice results into the output: zero the ``skipped`` regions (or, if None, all of it first; the
    ``shift`` instead of zero if given), copy each part into its region, then write the ``fills`` (see
    :mod:`.fill`) from the kept positions.

    In channels_last each position's channels lie together, so zeroing just the skipped positions is a chunked
    fill that writes the output once; in NCHW it would be an element-strided fill, several times slower than one
    memset. Doing it in one Function keeps backward to strided reads of the output gradient (autograd's in-place
    slice copies would clone the full gradient once per lattice).
    """

    @staticmethod
    def forward(ctx, out_like, memory_format, regions, skipped, fills, shift, *parts):
        ctx.regions, ctx.fills, ctx.memory_format = regions, fills, memory_format
        return _scatter(out_like, memory_format, regions, skipped, fills, shift, parts)

    @staticmethod
    def backward(ctx, grad_out):
        if not ctx.fills:
            return (None, ) * 6 + tuple(grad_out[region] for region in ctx.regions)
        # Each part's gradient is a copy of its region (always a copy: grad_out is not ours to modify), in the
        # part's layout, as the convolution's backward would make it anyway; the fill's adjoint adds into those
        # copies: no output-sized copy, and in NCHW no element-strided adds.
        if ctx.memory_format == torch.contiguous_format and grad_out.is_contiguous() and fill_kernel_applies(grad_out):
            return (None, ) * 6 + tuple(_disassemble_in_planes(grad_out, ctx.regions, ctx.fills))
        grads = [grad_out[region].clone(memory_format=ctx.memory_format) for region in ctx.regions]
        for channels, op, adds in _fill_adjoint_plan(ctx.fills, ctx.regions, *grad_out.shape[2:]):
            g = grad_out[:, channels, op.rows, op.cols]
            if len(op.offsets) > 1:  # weighted once, not once per source
                g = g.mul(op.weight)
            for part, (c, i, j), source in adds:
                grads[part][:, c, i, j].add_(g[(slice(None), ) + source])
        return (None, ) * 6 + tuple(grads)


def _disassemble_in_planes(grad_out: torch.Tensor, regions, fills):
    """:class:`_Scatter`'s backward (the parts' gradients: their regions of ``grad_out``, plus the fill's adjoint)
    by the compiled kernel, one NCHW plane at a time, in the order of the PyTorch ops."""
    height, width = grad_out.shape[2:]
    ranges = [kernel_ranges(grad_out, *region[1:]) for region in regions]
    sizes = [(c1 - c0, rows, cols) for c0, c1, _, rows, _, _, cols, _ in ranges]
    adds, weights = [], []
    for channels, op, op_adds in _fill_adjoint_plan(fills, regions, height, width):
        target = kernel_ranges(grad_out, channels, op.rows, op.cols)
        op_c0, op_c1, op_r0, op_rows, op_r_step, op_q0, op_cols, op_q_step = target
        weight = op.weight if len(op.offsets) > 1 else 1.0
        for part, index, source in op_adds:
            (pc, pr, pq), (gc, gr, gq) = ([range(*s.indices(n)) for s, n in zip(slices, shape)]
                                          for slices, shape in ((index, sizes[part]),
                                                                (source, (op_c1 - op_c0, op_rows, op_cols))))
            adds += [part, pc.start, gc.start, len(pc), pr.start, pr.step, gr.start, gr.step, len(pr), pq.start,
                     pq.step, gq.start, gq.step, len(pq), op_c0, op_r0, op_r_step, op_q0, op_q_step]
            weights.append(weight)
    grads = [grad_out.new_empty((grad_out.shape[0], ) + size) for size in sizes]
    torch.ops.skipconv_det.disassemble_(grad_out, grads, [n for r in ranges for n in r], adds, weights)
    return grads


def _ranges(slices: Tuple[slice, ...], sizes: Tuple[int, ...]) -> Tuple[Tuple[int, int, int], ...]:
    # As (start, stop, step): ranges compare by their elements, and the plan depends on their steps too.
    return tuple(s.indices(n) for s, n in zip(slices, sizes))


def _fill_adjoint_plan(fills, regions, height: int, width: int):
    """``[(channels, op, [(part, index into that part, index into op's target)])]``: where the gradient of each
    fill op's targets goes among the parts (regions ``(:, channels, rows, cols)``), op by op and source by source
    (the order of an adjoint written on the whole output gradient, so each position sums in the same order)."""
    sizes = (1 << 62, height, width)
    targets = tuple((_ranges((c, op.rows, op.cols), sizes), op.offsets) for c, op in fills)
    parts = tuple(_ranges(r[1:], sizes) for r in regions)
    return [(c, op, adds) for (c, op), adds in zip(fills, _adjoint_adds(targets, parts)) if op.offsets]


@lru_cache(maxsize=1024)
def _adjoint_adds(targets, parts):
    plan = []
    parts = [[range(*axis) for axis in part] for part in parts]
    for target, offsets in targets:
        target = [range(*axis) for axis in target]
        adds = []
        for offset in offsets:
            shift = (0, ) + offset
            for index, part in enumerate(parts):
                meets = [_meet(range(t.start + d, t.stop + d, t.step), p) for t, p, d in zip(target, part, shift)]
                if all(meets):
                    adds.append((index, tuple(_index(m, p) for m, p in zip(meets, part)),
                                 tuple(_index(range(m.start - d, m.stop - d, m.step), t)
                                       for m, t, d in zip(meets, target, shift))))
        plan.append(tuple(adds))
    return tuple(plan)


def _meet(a: range, b: range) -> range:
    """The positions in both ``a`` and ``b`` (steps 1 or 2)."""
    if not a or not b:
        return range(0)
    step = max(a.step, b.step)
    lo, hi = max(a[0], b[0]), min(a[-1], b[-1]) + 1
    first = next((k for k in range(lo, lo + step) if (k - a[0]) % a.step == 0 and (k - b[0]) % b.step == 0), hi)
    return range(first, hi, step)


def _index(positions: range, within: range) -> slice:
    """``positions`` (a subset of ``within``) as a slice of a tensor holding ``within``."""
    start = (positions[0] - within[0]) // within.step
    return slice(start, start + len(positions) * positions.step // within.step, positions.step // within.step)


class _WindowGrads:
    """The gradients of the windows cut from one :class:`_WindowSource`, kept until its backward adds them up."""

    def __init__(self) -> None:
        self.pending = []  # [(rows, cols, gradient of x[:, :, rows, cols])]


class _WindowSource(torch.autograd.Function):
    """``x`` itself, as the tensor a SkipConv's lattices read in place and cut their windows from: its backward
    adds the windows' gradients (``grads``) into the slices of its own gradient (the convolutions that read it in
    place), so a SkipConv makes one input-sized gradient instead of one zero-filled gradient per window."""

    @staticmethod
    def forward(ctx, x, grads: _WindowGrads):
        ctx.set_materialize_grads(False)
        ctx.like = (x.shape, x.dtype, x.device, _suggested_memory_format(x))
        ctx.grads = grads
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        pending, ctx.grads.pending = ctx.grads.pending, []
        if not pending:
            return grad, None
        if grad is None:
            shape, dtype, device, memory_format = ctx.like
            grad = torch.empty(shape, dtype=dtype, device=device, memory_format=memory_format).zero_()
        # In place: this gradient is the convolutions' fresh input gradient (or their sum), held by no one else.
        for rows, cols, window_grad in pending:
            grad[:, :, rows, cols].add_(window_grad)
        return grad, None


def window_source(x: torch.Tensor) -> Tuple[torch.Tensor, Optional[_WindowGrads]]:
    """``(x, grads)`` for a SkipConv's lattices: where autograd will need x's gradient, x as a
    :class:`_WindowSource` and the gradients of the windows (:func:`_window`) cut from it; else (x, None)."""
    if (not torch.is_grad_enabled() or not x.requires_grad or torch.jit.is_tracing()
            or torch.compiler.is_compiling()):
        return x, None
    grads = _WindowGrads()
    return _WindowSource.apply(x, grads), grads


class _Window(torch.autograd.Function):
    """``F.pad(x[:, :, rows, cols], pads)`` as a new tensor in ``memory_format``. Its gradient goes to ``grads``
    if given (x is then a :class:`_WindowSource`, which adds it up); else into a zero gradient of x's own layout:
    autograd's slicing backward makes a contiguous (NCHW) one, and summing that with a channels_last gradient is a
    slow transposing add."""

    @staticmethod
    def forward(ctx, x, rows, cols, pads, memory_format, grads):
        ctx.like = (x.shape, x.dtype, x.device, _suggested_memory_format(x))
        ctx.window = rows, cols, pads
        ctx.grads = grads
        return _window(x, rows, cols, pads, memory_format)

    @staticmethod
    def backward(ctx, grad):
        rows, cols, (wl, wh, hl, hh) = ctx.window
        grad = grad[:, :, hl:grad.shape[2] - hh, wl:grad.shape[3] - wh]
        if ctx.grads is not None:
            ctx.grads.pending.append((rows, cols, grad))
            return (None, ) * 6
        shape, dtype, device, memory_format = ctx.like
        grad_x = torch.empty(shape, dtype=dtype, device=device, memory_format=memory_format).zero_()
        grad_x[:, :, rows, cols].copy_(grad)
        return grad_x, None, None, None, None, None


def _window(x, rows: slice, cols: slice, pads=(0, 0, 0, 0), memory_format=torch.contiguous_format,
            grads: Optional[_WindowGrads] = None):
    """The input a lattice's conv reads: rows and columns of x (a crop, a subsampling, a border strip), padded
    explicitly by ``pads`` (F.pad's order) and laid out in ``memory_format``. ``grads``: see :class:`_Window`."""
    if torch.is_grad_enabled() and x.requires_grad and not torch.jit.is_tracing():
        return _Window.apply(x, rows, cols, pads, memory_format, grads)
    return F.pad(x[:, :, rows, cols], pads).contiguous(memory_format=memory_format)
