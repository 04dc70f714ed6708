"""SkipConv2d / skip_conv2d against the reference ``F.conv2d(...) * mask`` (docs/operator.md, Definition), forward
and gradients."""
import itertools
import os

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from skipconv_det import SKIP_PATTERNS, SkipConv2d, skip_conv2d, skip_mask
from skipconv_det.ops import FILLS
from ._reference import assert_matches_reference, reference, reference_fill
from ._tiers import full, full_only

DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
if os.environ.get('TORCH_DEVICE'):
    DEVICES = [os.environ['TORCH_DEVICE']]


@pytest.fixture(params=['in-place padding', pytest.param('padded copy', marks=full)])
def padding_path(request, monkeypatch):
    """Run a test through both ways of padding (small inputs take the padded copy by default; `make test-fast` runs
    the in-place padding only, and tests/test_skip_conv_fuzz.py draws both)."""
    import skipconv_det.ops._paths as paths
    monkeypatch.setattr(paths, 'pads_explicitly', lambda x, weight: request.param == 'padded copy')
    return request.param


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('shift', full_only([False, True], fast=(True, )))
@pytest.mark.parametrize('pattern', SKIP_PATTERNS)
# `make test-fast`: 1x1 and 3x3 kernels (every stride, padding, dilation and grouping of them); `make test`: 5x5 and
# 7x7 too.
@pytest.mark.parametrize('kernel,stride', full_only(list(itertools.product([1, 3, 5, 7], [1, 2])),
                                                    fast=((1, 2), (3, 1)), several=True))
def test_matches_reference_over_geometry(device, kernel, stride, pattern, shift, padding_path):
    """Every padding 0..3, dilation 1/2, groups 1/2/depthwise, bias on/off, odd and even sizes."""
    gen = torch.Generator().manual_seed(kernel * 10 + stride)
    for padding, dilation, (cin, cout, groups) in itertools.product(
            range(4), [1, 2], [(4, 6, 1), (4, 6, 2), (6, 6, 6)]):
        bias = padding % 2 == 0
        h, w = (9, 12) if dilation == 1 else (8, 7)
        extent = dilation * (kernel - 1) + 1
        if h + 2 * padding < extent or w + 2 * padding < extent:
            continue
        x = torch.randn(2, cin, h, w, generator=gen, dtype=torch.float64).to(device)
        weight = torch.randn(cout, cin // groups, kernel, kernel, generator=gen, dtype=torch.float64).to(device)
        b = torch.randn(cout, generator=gen, dtype=torch.float64).to(device) if bias else None
        assert_matches_reference(x, weight, b, stride, padding, dilation, groups, pattern, shift)


@pytest.mark.parametrize('pattern', SKIP_PATTERNS)
@pytest.mark.parametrize('size', [(1, 1), (1, 2), (2, 1), (2, 2), (3, 3), (1, 5)])
def test_tiny_outputs(pattern, size, padding_path):
    """1x1 outputs and single rows/columns, where some lattices are empty."""
    x = torch.randn(3, 5, *size, dtype=torch.float64)
    for shift in (False, True):
        assert_matches_reference(x, torch.randn(7, 5, 3, 3, dtype=torch.float64), torch.randn(7, dtype=torch.float64),
                                 padding=1, pattern=pattern, shift=shift)
        assert_matches_reference(x, torch.randn(7, 5, *size, dtype=torch.float64), None, pattern=pattern,
                                 shift=shift)


@pytest.mark.parametrize('pattern', SKIP_PATTERNS)
@pytest.mark.parametrize('kernel,dilation', [(1, 1), (2, 1), (3, 1), (4, 1), (3, 2), (4, 2)])
def test_padding_same(pattern, kernel, dilation, padding_path):
    """'same' (asymmetric for even extents) and 'valid' strings, as nn.Conv2d accepts them."""
    x = torch.randn(2, 3, 7, 10, dtype=torch.float64)
    w = torch.randn(4, 3, kernel, kernel, dtype=torch.float64)
    for padding in ('same', 'valid'):
        out = assert_matches_reference(x, w, None, 1, padding, dilation, 1, pattern, True)
        if padding == 'same':
            assert out.shape[2:] == x.shape[2:]


@pytest.mark.parametrize('pattern', SKIP_PATTERNS)
@pytest.mark.parametrize('kernel,stride,padding,dilation,size', [
    ((3, 1), (1, 3), (0, 2), (1, 3), (10, 1)),  # dilated size-1 kernel axis
    ((2, 2), (3, 2), (0, 3), (2, 2), (3, 1)),  # windows wholly in the padding of a dilated axis
    ((1, 1), (1, 3), (1, 0), (2, 2), (7, 3)),  # strided 1x1 (its channels_last backward corrupts memory)
])
def test_geometry_that_crashes_torch_conv(pattern, kernel, stride, padding, dilation, size, padding_path):
    """Fuzzing found these: torch 2.14's own CPU conv crashes on them (channels_last, with a bias)."""
    x = torch.randn(3, 2, *size).contiguous(memory_format=torch.channels_last)
    for shift in (False, True):
        assert_matches_reference(x, torch.randn(4, 1, *kernel), torch.randn(4), stride, padding, dilation, 2,
                                 pattern, shift)


@pytest.mark.parametrize('batch', [0, 1, 3])
@pytest.mark.parametrize('pattern', SKIP_PATTERNS)
def test_batch_sizes(batch, pattern):
    x = torch.randn(batch, 4, 10, 9, dtype=torch.float64)
    out = assert_matches_reference(x, torch.randn(8, 4, 3, 3, dtype=torch.float64),
                                   torch.randn(8, dtype=torch.float64), padding=1, pattern=pattern)
    assert out.shape == (batch, 8, 10, 9)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('pattern', SKIP_PATTERNS)
@pytest.mark.parametrize('stride', [1, 2])
def test_channels_last_keeps_memory_format(device, pattern, stride):
    x = torch.randn(2, 8, 12, 11, dtype=torch.float64, device=device).to(memory_format=torch.channels_last)
    w = torch.randn(16, 8, 3, 3, dtype=torch.float64, device=device)
    for shift in (False, True):
        out = assert_matches_reference(x, w, torch.randn(16, dtype=torch.float64, device=device), stride, 1,
                                       pattern=pattern, shift=shift)
        assert out.is_contiguous(memory_format=torch.channels_last)
    assert skip_conv2d(x.contiguous(), w, None, stride, 1, skip_pattern=pattern).is_contiguous()


def _dtypes(device):
    return [torch.float32, torch.float64, torch.bfloat16] + ([torch.float16] if device == 'cuda' else [])


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('pattern', SKIP_PATTERNS)
def test_dtypes(device, pattern):
    for dtype in _dtypes(device):
        x = torch.randn(2, 8, 13, 16, device=device).to(dtype)
        w = (torch.randn(8, 8, 3, 3, device=device) * 0.1).to(dtype)
        b = torch.randn(8, device=device).to(dtype)
        out = assert_matches_reference(x, w, b, 1, 1, pattern=pattern, shift=True)
        assert out.dtype == dtype


@pytest.mark.parametrize('padding_mode', ['zeros', 'reflect', 'replicate', 'circular'])
@pytest.mark.parametrize('pattern', SKIP_PATTERNS)
def test_module_matches_conv2d_padding_modes(padding_mode, pattern):
    conv = nn.Conv2d(4, 6, 3, stride=1, padding=2, dilation=2, padding_mode=padding_mode).double()
    skip = SkipConv2d(4, 6, 3, stride=1, padding=2, dilation=2, padding_mode=padding_mode,
                      skip_pattern=pattern, shift_channels=True).double()
    skip.load_state_dict(conv.state_dict())
    x = torch.randn(2, 4, 9, 10, dtype=torch.float64)
    ref = conv(x)
    ref = reference_fill(ref, skip_mask(pattern, 6, ref.shape[2], ref.shape[3], True), skip.fill)
    torch.testing.assert_close(skip(x), ref)


def test_state_dict_round_trip_with_conv2d():
    conv = nn.Conv2d(3, 5, 3, padding=1, groups=1)
    skip = SkipConv2d(3, 5, 3, padding=1, skip_pattern='grid', shift_channels=True)
    assert list(skip.state_dict()) == list(conv.state_dict())
    skip.load_state_dict(conv.state_dict())
    back = nn.Conv2d(3, 5, 3, padding=1)
    back.load_state_dict(skip.state_dict())
    for key, value in conv.state_dict().items():
        assert torch.equal(back.state_dict()[key], value)
    assert isinstance(skip, nn.Conv2d)


def test_pattern_none_is_plain_conv():
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=1)
    skip = SkipConv2d(3, 5, 3, stride=2, padding=1, skip_pattern='none')
    skip.load_state_dict(conv.state_dict())
    x = torch.randn(2, 3, 11, 12)
    assert torch.equal(skip(x), conv(x))


def test_extra_repr_shows_pattern_and_density():
    text = repr(SkipConv2d(3, 5, 3, skip_pattern='grid', shift_channels=True))
    assert "skip_pattern='grid'" in text and 'shift_channels=True' in text and 'density=0.25' in text
    assert 'density=0.5' in repr(SkipConv2d(3, 5, 3))


def test_skipped_work_is_not_computed(padding_path):
    """The convolutions the default path issues compute exactly the kept positions, none twice or in vain."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class ConvOutputs(TorchDispatchMode):

        def __init__(self):
            super().__init__()
            self.outputs = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func.overloadpacket == torch.ops.aten.convolution:
                self.outputs.append(out.shape)
            return out

    cases = [(3, 1, 1, 1), (3, 1, 0, 1), (1, 1, 0, 1), (3, 2, 1, 1), (3, 1, 2, 2), (5, 1, 2, 1), (1, 2, 0, 1)]
    for (kernel, stride, padding, dilation), size in itertools.product(cases, [(33, 41), (32, 40), (7, 6)]):
        x = torch.randn(1, 8, *size)
        w = torch.randn(8, 8, kernel, kernel)
        for pattern, shift in itertools.product(SKIP_PATTERNS, [False, True]):
            with ConvOutputs() as mode:
                out = skip_conv2d(x, w, None, stride, padding, dilation, skip_pattern=pattern, shift_channels=shift)
            computed = sum(s[1] * s[2] * s[3] for s in mode.outputs)
            assert computed == skip_mask(pattern, 8, out.shape[2], out.shape[3], shift).sum(), (pattern, shift)


@pytest.mark.parametrize('kernel', [(1, 1), (1, 3), (2, 2), (3, 3), (4, 5), (7, 7)])
@pytest.mark.parametrize('padding', [(0, 0), (1, 2), (3, 3)])
@pytest.mark.parametrize('size', [(9, 8), (12, 13), (1, 2)])
@pytest.mark.parametrize('groups', [1, 2])
def test_polyphase_input_grad_equals_stride2_conv_backward(kernel, padding, size, groups):
    """The input gradient of a lattice's stride-2 convolution from four stride-1 correlations (one per input
    phase) equals aten's: every kernel size and tap parity, padding, odd, even and tiny inputs, groups."""
    from skipconv_det.ops._polyphase import polyphase_input_grad
    if size[0] + 2 * padding[0] < kernel[0] or size[1] + 2 * padding[1] < kernel[1]:
        pytest.skip('no output')
    x = torch.randn(2, 4, *size, dtype=torch.float64)
    weight = torch.randn(6, 4 // groups, *kernel, dtype=torch.float64)
    grad = torch.randn_like(F.conv2d(x, weight, None, 2, padding, 1, groups))
    want = torch.ops.aten.convolution_backward(grad, x, weight, None, [2, 2], list(padding), [1, 1], False, [0, 0],
                                               groups, [True, False, False])[0]
    torch.testing.assert_close(polyphase_input_grad(grad, weight, x.shape, padding, groups), want)


@pytest.mark.parametrize('pattern', SKIP_PATTERNS)
@pytest.mark.parametrize('kernel,padding', full_only([(1, 0), (3, 1), (3, 0), (5, 2), (4, 1)], fast=((3, 1), (4, 1)),
                                                     several=True))
@pytest.mark.parametrize('size', full_only([(11, 12), (8, 9)], fast=((11, 12), )))
def test_polyphase_backward_matches_reference(pattern, kernel, padding, size, padding_path, monkeypatch):
    """Gradients through the polyphase path (which real inputs take from ``POLYPHASE_MIN_POSITIONS`` on) equal
    the reference, bias and grouped and shifted channels included."""
    import skipconv_det.ops._polyphase as polyphase
    monkeypatch.setattr(polyphase, 'POLYPHASE_MIN_POSITIONS', 0)
    for groups, shift in ((1, False), (2, True)):
        x = torch.randn(2, 4, *size, dtype=torch.float64)
        weight = torch.randn(6, 4 // groups, kernel, kernel, dtype=torch.float64)
        assert_matches_reference(x, weight, torch.randn(6, dtype=torch.float64), 1, padding, 1, groups, pattern, shift)


def test_polyphase_path_is_taken_on_large_nchw_inputs():
    """Large NCHW inputs run their lattices through _Stride2Conv when a gradient is needed, and not otherwise."""
    import skipconv_det.ops._polyphase as polyphase
    side = int(polyphase.POLYPHASE_MIN_POSITIONS ** 0.5) + 1
    x = torch.randn(1, 2, side, side, requires_grad=True)
    weight = torch.randn(2, 2, 3, 3, requires_grad=True)
    assert skip_conv2d(x, weight, None, 1, 1).grad_fn.next_functions[0][0].name() == '_Stride2ConvBackward'
    with torch.no_grad():
        assert skip_conv2d(x, weight, None, 1, 1).grad_fn is None
    small = skip_conv2d(x[:, :, :side // 2], weight, None, 1, 1)
    assert small.grad_fn.next_functions[0][0].name() == 'ConvolutionBackward0'
    cl = skip_conv2d(x.detach().contiguous(memory_format=torch.channels_last).requires_grad_(), weight, None, 1, 1)
    assert cl.grad_fn.next_functions[0][0].name() == 'ConvolutionBackward0'


class TestErrors:

    def test_unknown_pattern_lists_valid_ones(self):
        with pytest.raises(ValueError, match='checkerboard, row, col, grid, none'):
            SkipConv2d(3, 4, 3, skip_pattern='diagonal')
        with pytest.raises(ValueError, match='Unknown skip_pattern'):
            skip_conv2d(torch.randn(1, 3, 5, 5), torch.randn(4, 3, 3, 3), skip_pattern='diagonal')

    @pytest.mark.parametrize('shape', [(3, 8, 8), (1, 1, 3, 8, 8)])
    def test_non_4d_input(self, shape):
        with pytest.raises(ValueError, match='4D input'):
            SkipConv2d(3, 4, 3)(torch.randn(*shape))

    def test_channel_mismatch(self):
        with pytest.raises(ValueError, match='5 channels.*expects 3'):
            SkipConv2d(3, 4, 3)(torch.randn(1, 5, 8, 8))

    @pytest.mark.parametrize('dtype', [torch.float64, torch.int64])
    def test_dtype_mismatch(self, dtype):
        with pytest.raises(TypeError, match=f'{dtype} input for a torch.float32 weight'):
            SkipConv2d(3, 4, 3)(torch.ones(1, 3, 8, 8, dtype=dtype))

    def test_device_mismatch(self):
        conv = SkipConv2d(3, 4, 3).to('meta')
        with pytest.raises(ValueError, match='input on cpu but its weight is on meta'):
            conv(torch.randn(1, 3, 8, 8))

    def test_input_smaller_than_kernel(self):
        with pytest.raises(ValueError, match='smaller than the dilated kernel'):
            SkipConv2d(3, 4, 5)(torch.randn(1, 3, 3, 3))

    def test_bad_padding(self):
        with pytest.raises(ValueError, match="Invalid padding string"):
            skip_conv2d(torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3, 3), padding='full')
        with pytest.raises(ValueError, match="padding='same' is not supported for strided"):
            skip_conv2d(torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3, 3), stride=2, padding='same')
        with pytest.raises(ValueError, match='padding_mode'):
            SkipConv2d(3, 4, 3, padding_mode='mirror')


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('fill', FILLS)
@pytest.mark.parametrize('shift', full_only([False, True], fast=(True, )))
@pytest.mark.parametrize('pattern', SKIP_PATTERNS)
def test_fill_matches_reference(device, pattern, shift, fill, padding_path):
    """Every fill on odd, even, single-row/column and 1x1 outputs, strided and not, in both layouts."""
    gen = torch.Generator().manual_seed(7)
    cases = [((9, 12), 3, 1, 1), ((8, 7), 3, 1, 2), ((1, 5), 3, 1, 1), ((4, 1), 1, 0, 1), ((1, 1), 3, 1, 1),
             ((2, 2), 1, 0, 1), ((11, 10), 1, 0, 2), ((6, 9), 5, 2, 1)]
    for (h, w), kernel, padding, stride in cases:
        for channels_last in (False, True):
            x = torch.randn(2, 4, h, w, generator=gen, dtype=torch.float64).to(device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            weight = torch.randn(7, 4, kernel, kernel, generator=gen, dtype=torch.float64).to(device)
            bias = torch.randn(7, generator=gen, dtype=torch.float64).to(device)
            assert_matches_reference(x, weight, bias, stride, padding, 1, 1, pattern, shift, fill=fill)


@pytest.mark.parametrize('fill', ['nearest', 'linear'])
def test_fill_leaves_no_skipped_zero(fill):
    """A non-zero fill gives every position of a map bigger than one cell a value (with a positive input)."""
    x = torch.rand(1, 3, 10, 9, dtype=torch.float64) + 0.1
    weight = torch.rand(4, 3, 3, 3, dtype=torch.float64) + 0.1
    for pattern in ('checkerboard', 'row', 'col', 'grid'):
        for shift in (False, True):
            out = skip_conv2d(x, weight, None, 1, 1, skip_pattern=pattern, shift_channels=shift, fill=fill)
            assert (out > 0).all()


def test_fill_examples_from_the_rules():
    """Values worked out by hand on a 3x3 checkerboard output (the conv is the identity)."""
    x = torch.arange(1., 10.).view(1, 1, 3, 3)
    identity = torch.ones(1, 1, 1, 1)
    nearest = skip_conv2d(x, identity, fill='nearest')[0, 0]
    assert nearest.tolist() == [[1, 1, 3], [1, 5, 5], [7, 7, 9]]
    linear = skip_conv2d(x, identity, fill='linear')[0, 0]
    torch.testing.assert_close(linear, torch.tensor([[1, 3, 3], [13 / 3, 5, 17 / 3], [7, 7, 9]]))
    grid = skip_conv2d(x, identity, skip_pattern='grid', fill='linear')[0, 0]
    assert grid.tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]  # bilinear interpolation of a linear ramp


def test_fill_is_a_module_argument():
    conv = SkipConv2d(3, 4, 3, padding=1, fill='nearest')
    assert conv.fill == 'nearest' and "fill='nearest'" in repr(conv)
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(conv(x), reference(x, conv.weight, conv.bias, 1, 1, 1, 1, 'checkerboard', False,
                                                  'nearest'))
    with pytest.raises(ValueError, match="Unknown fill 'bilinear'"):
        SkipConv2d(3, 4, 3, fill='bilinear')
