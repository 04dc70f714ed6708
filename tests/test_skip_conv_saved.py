"""What a SkipConv keeps for backward: no more than the dense convolution (its output aside, x and the weight,
which the caller holds anyway). The copies of x its lattices read (padded, cropped, subsampled, strips) are kept as
recipes and made again in backward, with the same gradients bit for bit."""
import itertools
from contextlib import nullcontext

import pytest
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from skipconv_det import skip_conv2d
from skipconv_det.ops import _saved

# (N, C_in, H, W, C_out, kernel, stride, padding, channels_last): a small input (one padded copy, cropped), a large
# NCHW one (convolved in place, with border strips; on the CPU the polyphase backward), 1x1 (subsampled), strided.
GEOMETRIES = {
    'small padded': ((2, 8, 12, 11), 8, 3, 1, 1, False),
    'large with strips': ((1, 4, 181, 183), 4, 3, 1, 1, False),
    '1x1': ((2, 16, 20, 21), 8, 1, 1, 0, False),
    'strided channels_last': ((2, 8, 17, 16), 8, 3, 2, 1, True),
}


def _inputs(geometry):
    shape, cout, kernel, stride, padding, channels_last = GEOMETRIES[geometry]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=gen)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(cout, shape[1], kernel, kernel, generator=gen)
    bias = torch.randn(cout, generator=gen)
    return [t.requires_grad_() for t in (x, weight, bias)], dict(stride=stride, padding=padding)


def _kept_bytes(fn):
    """Bytes that ``fn()`` allocates and leaves allocated (its output, and what autograd keeps for backward)."""
    fn()  # warm-up: caches of the first call
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    kept = sum(e.nbytes() for e in prof.profiler.kineto_results.events() if e.name() == '[memory]')
    return kept, out


@pytest.mark.parametrize('geometry', list(GEOMETRIES))
@pytest.mark.parametrize('fill', ['zero', 'linear'])
@pytest.mark.parametrize('pattern,shift', [('checkerboard', False), ('grid', True), ('row', False)])
def test_keeps_no_more_than_dense(geometry, fill, pattern, shift):
    (x, weight, bias), conv = _inputs(geometry)
    dense, dense_out = _kept_bytes(lambda: F.conv2d(x, weight, bias, **conv))
    skip, skip_out = _kept_bytes(lambda: skip_conv2d(x, weight, bias, **conv, skip_pattern=pattern,
                                                     shift_channels=shift, fill=fill))
    assert skip_out.shape == dense_out.shape
    # At most a copy of the weight besides: a channels_last input's lattices read the weight channels_last too.
    assert skip <= dense + (weight.numel() * weight.element_size() if geometry == 'strided channels_last' else 0)


@pytest.mark.parametrize('geometry', list(GEOMETRIES))
def test_recomputed_copies_give_the_same_gradients(geometry, monkeypatch):
    grads = []
    for recipes in (True, False):
        if not recipes:
            monkeypatch.setattr(_saved.InputCopies, 'saved_as_recipes', lambda self: nullcontext())
        for pattern, fill in itertools.product(['checkerboard', 'grid'], ['zero', 'linear']):
            leaves, conv = _inputs(geometry)
            out = skip_conv2d(*leaves, **conv, skip_pattern=pattern, fill=fill)
            out.backward(torch.ones_like(out))
            grads.append([t.grad for t in leaves])
    half = len(grads) // 2
    for with_recipes, without in zip(grads[:half], grads[half:]):
        assert all(torch.equal(a, b) for a, b in zip(with_recipes, without))


def test_modifying_the_input_before_backward_is_an_error():
    """As autograd refuses for the tensors it keeps itself."""
    (x, weight, bias), conv = _inputs('small padded')
    inp = x.detach().clone().requires_grad_()
    y = inp * 1  # a non-leaf that can be modified in place
    out = skip_conv2d(y, weight, bias, **conv)
    y.add_(1)
    with pytest.raises(RuntimeError, match='modified by an inplace operation'):
        out.sum().backward()
