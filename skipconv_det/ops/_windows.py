# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""The input windows a SkipConv's convolutions read (crops, subsamplings, padded border strips of its input), with
gradients that add up into one input-sized gradient."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from ._layout import suggested_memory_format


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
        ctx.like = (x.shape, x.dtype, x.device, suggested_memory_format(x))
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
    :class:`_WindowSource` and the gradients of the windows (:func:`cut_window`) cut from it; else (x, None)."""
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
        ctx.like = (x.shape, x.dtype, x.device, suggested_memory_format(x))
        ctx.window = rows, cols, pads
        ctx.grads = grads
        return cut_window(x, rows, cols, pads, memory_format)

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


def cut_window(x, rows: slice, cols: slice, pads=(0, 0, 0, 0), memory_format=torch.contiguous_format,
            grads: Optional[_WindowGrads] = None):
    """The input a lattice's conv reads: rows and columns of x (a crop, a subsampling, a border strip), padded
    explicitly by ``pads`` (F.pad's order) and laid out in ``memory_format``. ``grads``: see :class:`_Window`."""
    if torch.is_grad_enabled() and x.requires_grad and not torch.jit.is_tracing():
        return _Window.apply(x, rows, cols, pads, memory_format, grads)
    return F.pad(x[:, :, rows, cols], pads).contiguous(memory_format=memory_format)
