# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""``F.conv2d`` with exact rewrites that steer clear of torch 2.14's CPU crashes, for SkipConv's convolutions.

Each rewrite names the geometry that crashes; the reproducers are the cases of
``tests/test_skip_conv.py::test_geometry_that_crashes_torch_conv`` (found by the fuzzing in
``tests/test_skip_conv_fuzz.py``). When a torch release passes those tests with the plain ``F.conv2d`` call, the
rewrites can go.
"""
import torch.nn.functional as F
from torch.nn.modules.utils import _pair

from ._layout import suggested_memory_format
from ._windows import cut_window


def crash_free_conv2d(x, weight, bias, stride, padding, dilation, groups):
    """``F.conv2d``, steered clear of torch 2.14 CPU crashes found by fuzzing, through exact rewrites:

    - a strided 1x1 conv runs as a stride-1 conv of the subsampled input (the backward of strided 1x1
      channels_last convs corrupts memory);
    - dilation along a kernel axis of size 1 is dropped (it is moot), and where a dilated strided axis has windows
      wholly in the padding the bias is added afterwards (channels_last convs with a bias crash there).
    """
    kernel, stride = tuple(weight.shape[2:]), _pair(stride)
    if kernel == (1, 1) and stride != (1, 1) and not isinstance(padding, str):
        ph, pw = _pair(padding)
        # The layout F.conv2d would give (the subsampled input alone can suggest another on tiny shapes).
        memory_format = suggested_memory_format(x, weight)
        if ph or pw:
            x = F.pad(x, (pw, pw, ph, ph))
        x = cut_window(x, slice(None, None, stride[0]), slice(None, None, stride[1]), memory_format=memory_format)
        return F.conv2d(x, weight, bias, 1, 0, 1, groups).contiguous(memory_format=memory_format)
    dilation = tuple(d if k > 1 else 1 for k, d in zip(kernel, _pair(dilation)))
    if bias is not None and not isinstance(padding, str) and any(
            d > 1 and p >= d * (k - 1) + 1 for p, d, k in zip(_pair(padding), dilation, kernel)):
        return F.conv2d(x, weight, None, stride, padding, dilation, groups) + bias.view(-1, 1, 1)
    return F.conv2d(x, weight, bias, stride, padding, dilation, groups)
