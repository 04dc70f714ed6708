# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""SkipConv as one opaque op for ``torch.compile`` inference: ``torch.ops.skipconv_det.skip_conv2d``.

torch.compile traces SkipConv's PyTorch formulation (the cell assembly, :mod:`._cells`) by default, which inductor
fuses into its own kernels. Without a gradient to take, SkipConv can instead be one op with a fake (shape-only)
implementation that inductor calls as an extern kernel: the eager implementation, with its in-place assembly
and compiled fill, while inductor still fuses the batch norm, ReLU and adds that read its output.
:func:`~._paths.choose_path` selects it, as :func:`compile_mode` lets it.
"""
from contextlib import contextmanager
from typing import List, Optional

import torch
from torch.nn.modules.utils import _pair

from ._cells import forced_cell_assembly
from ._layout import suggested_memory_format
from ._paths import PATHS, choose_path

COMPILE_MODES = ('opaque', 'traced')
_mode = 'opaque'


@contextmanager
def compile_mode(mode: str):
    """How torch.compile sees SkipConv without gradients: ``'opaque'`` (one custom op, the default) or
    ``'traced'`` (its PyTorch formulation). With gradients it is always traced."""
    if mode not in COMPILE_MODES:
        raise ValueError(f'compile mode must be one of {", ".join(COMPILE_MODES)}, got {mode!r}')
    global _mode
    previous, _mode = _mode, mode
    try:
        yield
    finally:
        _mode = previous


def compile_mode_in_effect() -> str:
    """The :func:`compile_mode` in effect here."""
    return _mode


@torch.library.custom_op('skipconv_det::skip_conv2d', mutates_args=())
def skip_conv2d_op(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride: List[int],
                   padding: List[int], dilation: List[int], groups: int, skip_pattern: str, shift_channels: bool,
                   fill: str, shift: Optional[torch.Tensor]) -> torch.Tensor:
    # The path the call takes outside torch.compile (compile mode 'traced': never this op again).
    path = choose_path(x, weight, bias, padding, shift, skip_pattern, 'traced', forced_cell_assembly())
    return PATHS[path](x, weight, bias, tuple(stride), tuple(padding), tuple(dilation), groups, skip_pattern,
                       shift_channels, fill, shift)


@skip_conv2d_op.register_fake
def _(x, weight, bias, stride, padding, dilation, groups, skip_pattern, shift_channels, fill, shift):
    kernel = weight.shape[2:]
    size = [(n + 2 * p - d * (k - 1) - 1) // s + 1
            for n, p, d, k, s in zip(x.shape[2:], padding, dilation, kernel, stride)]
    return x.new_empty((x.shape[0], weight.shape[0], *size)).contiguous(
        memory_format=suggested_memory_format(x, weight))


def skip_conv2d_by_custom_op(x, weight, bias, stride, padding, dilation, groups, skip_pattern, shift_channels, fill,
                             shift):
    """The path 'custom_op' (see :mod:`._paths`): the call as the op, whose schema takes lists."""
    return skip_conv2d_op(x, weight, bias, list(stride), list(_pair(padding)), list(dilation), groups, skip_pattern,
                          shift_channels, fill, shift)
