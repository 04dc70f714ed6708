# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""ATen's choice of a convolution's output memory format, in plain Python."""
import torch


def _strides_like_channels_last(t: torch.Tensor) -> bool:
    """ATen's ``is_channels_last_strides_2d``, the rule behind a 4D tensor's suggested memory format (plain
    ints, so the jit tracer of FLOP counters can run it)."""
    sizes, strides = t.shape, t.stride()
    if strides[1] == 0:
        return False
    least = 0
    for d in (1, 3, 2, 0):
        if sizes[d] == 0 or strides[d] < least or (d == 0 and least == strides[1]):
            return False
        least = strides[d] * (sizes[d] if sizes[d] > 1 else 1)
    return True


def suggested_memory_format(*tensors: torch.Tensor) -> torch.memory_format:
    """channels_last if any of the tensors' strides suggest it (ATen's rule for a convolution's output layout,
    with input and weight), else contiguous."""
    return (torch.channels_last if any(_strides_like_channels_last(t) for t in tensors) else
            torch.contiguous_format)
