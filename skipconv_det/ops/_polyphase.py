# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""A lattice's stride-2 convolution with a polyphase input gradient: four stride-1 correlations, one per input
phase, where torch's CPU backward of a strided convolution in NCHW would also copy the whole input-sized gradient.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch.nn.modules.utils import _pair

from ._layout import suggested_memory_format

# Lattice convs on NCHW CPU inputs of at least this many positions (H x W) take the polyphase input gradient:
# the four stride-1 correlations cost less than torch's strided backward on large maps, more on small ones.
POLYPHASE_MIN_POSITIONS = 1 << 15


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


def polyphase_input_grad(grad: torch.Tensor, weight: torch.Tensor, input_shape: torch.Size,
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
    :func:`polyphase_input_grad`).

    On the CPU in NCHW, torch's stride-2 input gradient also copies the whole input-sized gradient, so on large
    maps two lattices cost about the dense layer's input gradient; the four stride-1 correlations cost less there,
    but more on small maps, hence ``POLYPHASE_MIN_POSITIONS``.
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
            grad_x = polyphase_input_grad(grad, weight, x.shape, ctx.padding, ctx.groups)
        if ctx.needs_input_grad[1]:
            grad_w = torch.ops.aten.convolution_backward(grad, x, weight, None, [2, 2], list(ctx.padding), [1, 1],
                                                         False, [0, 0], ctx.groups, [False, True, False])[1]
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None, None


def takes_polyphase_input_grad(x: torch.Tensor, weight: torch.Tensor, stride, padding, dilation) -> bool:
    """Whether a convolution is a lattice's stride-2 convolution that autograd will differentiate, on an NCHW CPU
    input of at least ``POLYPHASE_MIN_POSITIONS`` positions (a 1x1 kernel subsamples its input instead, and
    dilation along a kernel axis of size 1 is moot)."""
    kernel = tuple(weight.shape[2:])
    return (kernel != (1, 1) and _pair(stride) == (2, 2)
            and all(d == 1 or k == 1 for k, d in zip(kernel, _pair(dilation))) and not isinstance(padding, str)
            and x.device.type == 'cpu' and x.shape[2] * x.shape[3] >= POLYPHASE_MIN_POSITIONS
            and torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad) and not torch.jit.is_tracing()
            and suggested_memory_format(x, weight) == torch.contiguous_format)


def stride2_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], padding,
                   groups: int) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, 2, padding, 1, groups)`` with the polyphase input gradient."""
    if torch.is_autocast_enabled(x.device.type):
        # Autocast casts inside the Function's forward only, not in its backward: cast here, as F.conv2d
        # under autocast would, so both passes see one dtype and autograd casts the gradients back.
        dtype = torch.get_autocast_dtype(x.device.type)
        x, weight, bias = (None if t is None else t.to(dtype) for t in (x, weight, bias))
    return _Stride2Conv.apply(x, weight, bias, _pair(padding), groups)
