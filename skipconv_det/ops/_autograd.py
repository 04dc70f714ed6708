# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""SkipConv's autograd Functions: writing lattice results into the output (:class:`_Scatter`), the input windows
the lattices read (:class:`_Window`), and the stride-2 convolution with a polyphase input gradient
(:class:`_Stride2Conv`)."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from ._layout import _suggested_memory_format
from .fill import apply_fill, fill_adjoint, fill_constant


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
        ctx.regions, ctx.fills = regions, fills
        return _scatter(out_like, memory_format, regions, skipped, fills, shift, parts)

    @staticmethod
    def backward(ctx, grad_out):
        if ctx.fills:
            grad_out = fill_adjoint(grad_out, ctx.fills)
        return (None, ) * 6 + tuple(grad_out[region] for region in ctx.regions)


class _Window(torch.autograd.Function):
    """``F.pad(x[:, :, rows, cols], pads)`` as a new tensor in ``memory_format``, with a backward that writes into
    a zero gradient of x's own layout: autograd's slicing backward makes a contiguous (NCHW) one, and summing that
    with a channels_last gradient is a slow transposing add."""

    @staticmethod
    def forward(ctx, x, rows, cols, pads, memory_format):
        ctx.like = (x.shape, x.dtype, x.device, _suggested_memory_format(x))
        ctx.window = rows, cols, pads
        return _window(x, rows, cols, pads, memory_format)

    @staticmethod
    def backward(ctx, grad):
        shape, dtype, device, memory_format = ctx.like
        rows, cols, (wl, wh, hl, hh) = ctx.window
        grad_x = torch.empty(shape, dtype=dtype, device=device, memory_format=memory_format).zero_()
        grad_x[:, :, rows, cols].copy_(grad[:, :, hl:grad.shape[2] - hh, wl:grad.shape[3] - wh])
        return grad_x, None, None, None, None


def _window(x, rows: slice, cols: slice, pads=(0, 0, 0, 0), memory_format=torch.contiguous_format):
    """The input a lattice's conv reads: rows and columns of x (a crop, a subsampling, a border strip), padded
    explicitly by ``pads`` (F.pad's order) and laid out in ``memory_format``."""
    if torch.is_grad_enabled() and x.requires_grad and not torch.jit.is_tracing():
        return _Window.apply(x, rows, cols, pads, memory_format)
    return F.pad(x[:, :, rows, cols], pads).contiguous(memory_format=memory_format)
