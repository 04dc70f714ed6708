# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""SkipConv as one opaque op for ``torch.compile`` inference: ``torch.ops.skipconv_det.skip_conv2d``.

torch.compile traces SkipConv's PyTorch formulation (the cell assembly, :mod:`._cells`) by default, which inductor
fuses into its own kernels. Without a gradient to take, SkipConv can instead be one op with a fake (shape-only)
implementation that inductor calls as an extern kernel: the eager implementation, with its in-place assembly
and compiled fill, while inductor still fuses the batch norm, ReLU and adds that read its output.
:func:`opaque_under_compile` selects it (``skipconv_det.ops.compile_mode``).
"""
from contextlib import contextmanager
from typing import List, Optional

import torch

from ._layout import _suggested_memory_format

_MODES = ('opaque', 'traced')
_mode = 'opaque'


@contextmanager
def compile_mode(mode: str):
    """How torch.compile sees SkipConv without gradients: ``'opaque'`` (one custom op, the default) or
    ``'traced'`` (its PyTorch formulation). With gradients it is always traced."""
    if mode not in _MODES:
        raise ValueError(f'compile mode must be one of {", ".join(_MODES)}, got {mode!r}')
    global _mode
    previous, _mode = _mode, mode
    try:
        yield
    finally:
        _mode = previous


def opaque_under_compile(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], padding,
                         shift: Optional[torch.Tensor]) -> bool:
    """Whether torch.compile is tracing a SkipConv call that the custom op can stand for: no gradient, no autocast
    (which does not reach inside custom ops), integer padding. Not torch.export (the ONNX exporter's tracer too),
    whose graphs are for runtimes that do not know the op."""
    return (_mode == 'opaque' and torch.compiler.is_compiling() and not torch.compiler.is_exporting()
            and not torch.onnx.is_in_onnx_export() and not isinstance(padding, str)
            and not (torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                                     for t in (x, weight, bias, shift)))
            and not torch.is_autocast_enabled(x.device.type))


@torch.library.custom_op('skipconv_det::skip_conv2d', mutates_args=())
def skip_conv2d_op(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride: List[int],
                   padding: List[int], dilation: List[int], groups: int, skip_pattern: str, shift_channels: bool,
                   fill: str, shift: Optional[torch.Tensor]) -> torch.Tensor:
    from .skip_conv import skip_conv2d  # the eager implementation (which imports this module)
    return skip_conv2d(x, weight, bias, tuple(stride), tuple(padding), tuple(dilation), groups, skip_pattern,
                       shift_channels, fill, shift)


@skip_conv2d_op.register_fake
def _(x, weight, bias, stride, padding, dilation, groups, skip_pattern, shift_channels, fill, shift):
    kernel = weight.shape[2:]
    size = [(n + 2 * p - d * (k - 1) - 1) // s + 1
            for n, p, d, k, s in zip(x.shape[2:], padding, dilation, kernel, stride)]
    return x.new_empty((x.shape[0], weight.shape[0], *size)).contiguous(
        memory_format=_suggested_memory_format(x, weight))
