"""The input gradient of a SkipConv is one tensor: the windows its lattices cut from the input (crops, 1x1
subsamplings, border strips) add their gradients into the gradient of the convolutions that read the input in
place, and the fill's adjoint adds into the lattices' own gradients. These gradients must equal the reference's
wherever the input also feeds other lattices, other SkipConvs and other ops, in both memory formats."""
import pytest
import torch
import torch.nn.functional as F

from skipconv_det import skip_conv2d

from ._reference import reference
from ._tiers import full_only

# (N, C_in, H, W, C_out, kernel, stride, padding): a small input (one padded copy, cropped), a large one (convolved
# in place with border strips; in NCHW the polyphase backward), 1x1 (subsampled), strided (cropped lattices).
GEOMETRIES = {
    'small padded': ((2, 4, 12, 11), 6, 3, 1, 1),
    'large with strips': ((1, 4, 181, 183), 4, 3, 1, 1),
    '1x1': ((2, 8, 20, 21), 6, 1, 1, 0),
    'strided': ((2, 4, 17, 16), 6, 3, 2, 1),
}
LAYOUTS = {'nchw': torch.contiguous_format, 'channels_last': torch.channels_last}


def _tensors(geometry, memory_format):
    shape, cout, kernel, stride, padding = GEOMETRIES[geometry]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=gen, dtype=torch.float64).contiguous(memory_format=memory_format)
    weights = [torch.randn(cout, shape[1], kernel, kernel, generator=gen, dtype=torch.float64) for _ in range(2)]
    bias = torch.randn(cout, generator=gen, dtype=torch.float64)
    return x, [w.contiguous(memory_format=memory_format) for w in weights], bias, dict(stride=stride, padding=padding)


def _grads(conv, x, weights, bias, kwargs, fill):
    """Gradients of a loss in which x (through a non-leaf) feeds two SkipConvs of different patterns and another
    op, and the first SkipConv's output feeds two ops."""
    leaves = [t.clone().requires_grad_() for t in (x, *weights, bias)]
    inp = leaves[0] * 1.5
    a = conv(inp, leaves[1], leaves[3], **kwargs, pattern='checkerboard', shift=False, fill=fill)
    b = conv(inp, leaves[2], None, **kwargs, pattern='grid', shift=True, fill=fill)
    loss = (a * b).sum() + F.avg_pool2d(a, 2, ceil_mode=True).square().sum() + inp.relu().sum()
    loss.backward()
    return [t.grad for t in leaves]


def _skip(x, weight, bias, pattern, shift, fill, **kwargs):
    return skip_conv2d(x, weight, bias, skip_pattern=pattern, shift_channels=shift, fill=fill, **kwargs)


def _reference(x, weight, bias, pattern, shift, fill, stride, padding):
    return reference(x, weight, bias, stride, padding, 1, 1, pattern, shift, fill)


@pytest.mark.parametrize('geometry', list(GEOMETRIES))
@pytest.mark.parametrize('layout', list(LAYOUTS))
@pytest.mark.parametrize('fill', full_only(['zero', 'linear', 'nearest'], fast=('linear', )))
def test_input_shared_by_lattices_convs_and_other_ops(geometry, layout, fill):
    x, weights, bias, kwargs = _tensors(geometry, LAYOUTS[layout])
    got = _grads(_skip, x, weights, bias, kwargs, fill)
    want = _grads(_reference, x, weights, bias, kwargs, fill)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    assert got[0].is_contiguous(memory_format=LAYOUTS[layout])


@pytest.mark.parametrize('geometry', list(GEOMETRIES))
def test_gradient_of_one_operand_only(geometry):
    """With only the input (or only the weight) requiring a gradient, the other gets none and the one equals the
    reference's."""
    x, (weight, _), bias, kwargs = _tensors(geometry, torch.contiguous_format)
    for wanted in (0, 1):
        got = [t.clone().requires_grad_(i == wanted) for i, t in enumerate((x, weight))]
        want = [t.clone().requires_grad_(i == wanted) for i, t in enumerate((x, weight))]
        _skip(*got, bias, 'checkerboard', False, 'linear', **kwargs).sum().backward()
        _reference(*want, bias, 'checkerboard', False, 'linear', **kwargs).sum().backward()
        torch.testing.assert_close(got[wanted].grad, want[wanted].grad)
        assert got[1 - wanted].grad is None


def test_backward_twice_through_a_retained_graph():
    """The windows' gradients are added up once per backward pass."""
    x, (weight, _), bias, kwargs = _tensors('large with strips', torch.contiguous_format)
    x.requires_grad_()
    out = _skip(x, weight, bias, 'checkerboard', False, 'linear', **kwargs)
    first, = torch.autograd.grad(out.sum(), x, retain_graph=True)
    second, = torch.autograd.grad(out.sum(), x)
    assert torch.equal(first, second)
    want, = torch.autograd.grad(_reference(x, weight, bias, 'checkerboard', False, 'linear', **kwargs).sum(), x)
    torch.testing.assert_close(first, want)


@pytest.mark.parametrize('fill', ['zero', 'linear', 'nearest'])
def test_backward_leaves_the_output_gradient_alone(fill):
    """The fill's adjoint adds into copies of the output gradient, never into the caller's tensor (a region of one
    position is already contiguous)."""
    x, (weight, _), bias, kwargs = _tensors('1x1', torch.contiguous_format)
    for size in ((2, 1), (5, 6)):
        inp = x[:, :, :size[0], :size[1]].clone().requires_grad_()
        out = _skip(inp, weight, bias, 'checkerboard', False, fill, **kwargs)
        grad = torch.randn_like(out)
        kept = grad.clone()
        out.backward(grad)
        assert torch.equal(grad, kept)
