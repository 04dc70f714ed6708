"""Property-based exactness of skip_conv2d against its reference (docs/operator.md, Definition) over random geometry.

`make test` runs a bounded number of examples. The long run (count and failures printed by hypothesis):

    SKIPCONV_FUZZ_EXAMPLES=10000 .venv/bin/python -m pytest tests/test_skip_conv_fuzz.py \
        -k matches_reference --hypothesis-show-statistics -p no:warnings
"""
import contextlib
import os

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import skipconv_det.ops._paths as skip_conv_paths
import skipconv_det.ops._polyphase as polyphase_module
from skipconv_det import SKIP_PATTERNS, skip_conv2d
from skipconv_det.ops import FILLS
from ._reference import assert_matches_reference

EXAMPLES = int(os.environ.get('SKIPCONV_FUZZ_EXAMPLES', 150))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize='SKIPCONV_FUZZ_EXAMPLES' not in os.environ,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
pairs = st.tuples


@st.composite
def conv_cases(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    in_channels = groups * draw(st.integers(1, 3))
    out_channels = groups * draw(st.integers(1, 4))
    kernel = draw(pairs(st.integers(1, 5), st.integers(1, 5)))
    stride = draw(pairs(st.integers(1, 3), st.integers(1, 3)))
    dilation = draw(pairs(st.integers(1, 3), st.integers(1, 3)))
    if stride == (1, 1) and draw(st.booleans()):
        padding = draw(st.sampled_from(['same', 'valid']))
        pads = [d * (k - 1) if padding == 'same' else 0 for k, d in zip(kernel, dilation)]
    else:
        padding = draw(pairs(st.integers(0, 3), st.integers(0, 3)))
        pads = [2 * p for p in padding]
    size = [draw(st.integers(max(1, d * (k - 1) + 1 - p), d * (k - 1) + 1 - p + 9))
            for k, d, p in zip(kernel, dilation, pads)]
    return dict(
        batch=draw(st.integers(0, 3)),
        in_channels=in_channels,
        out_channels=out_channels,
        kernel=kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        size=size,
        bias=draw(st.booleans()),
        pattern=draw(st.sampled_from(SKIP_PATTERNS)),
        shift=draw(st.booleans()),
        fill=draw(st.sampled_from(FILLS)),
        dtype=draw(st.sampled_from([torch.float64, torch.float64, torch.float32, torch.bfloat16])),
        channels_last=draw(st.booleans()))


@contextlib.contextmanager
def _paths(pad_in_place, polyphase):
    """Both ways of padding, and the polyphase input gradient on every size or on none (restored afterwards)."""
    saved = skip_conv_paths.pads_explicitly, polyphase_module.POLYPHASE_MIN_POSITIONS
    skip_conv_paths.pads_explicitly = lambda x, weight: not pad_in_place
    polyphase_module.POLYPHASE_MIN_POSITIONS = 0 if polyphase else float('inf')
    try:
        yield
    finally:
        skip_conv_paths.pads_explicitly, polyphase_module.POLYPHASE_MIN_POSITIONS = saved


@FUZZ
@given(conv_cases(), st.booleans(), st.booleans())
def test_matches_reference(case, pad_in_place, polyphase):
    with _paths(pad_in_place, polyphase):
        _check_case(case)


def _check_case(case):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(case['batch'], case['in_channels'], *case['size'], generator=gen).to(case['dtype'])
    if case['channels_last']:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(case['out_channels'], case['in_channels'] // case['groups'], *case['kernel'],
                         generator=gen).to(case['dtype'])
    bias = torch.randn(case['out_channels'], generator=gen).to(case['dtype']) if case['bias'] else None
    assert_matches_reference(x, weight, bias, case['stride'], case['padding'], case['dilation'], case['groups'],
                             case['pattern'], case['shift'], fill=case['fill'])


@settings(max_examples=max(EXAMPLES // 15, 10), deadline=None, derandomize=True)
@given(pattern=st.sampled_from(SKIP_PATTERNS), shift=st.booleans(), kernel=st.integers(1, 3),
       stride=st.integers(1, 2), padding=st.integers(0, 2), size=pairs(st.integers(3, 6), st.integers(3, 6)),
       polyphase=st.booleans(), fill=st.sampled_from(FILLS))
def test_gradcheck(pattern, shift, kernel, stride, padding, size, polyphase, fill):
    """Analytic gradients of input, weight and bias against finite differences, in float64."""
    x = torch.randn(1, 2, *size, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 2, kernel, kernel, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, dtype=torch.float64, requires_grad=True)
    with _paths(pad_in_place=True, polyphase=polyphase):
        assert torch.autograd.gradcheck(
            lambda x, w, b: skip_conv2d(
                x, w, b, stride, padding, skip_pattern=pattern, shift_channels=shift, fill=fill),
            (x, weight, bias), fast_mode=True)
