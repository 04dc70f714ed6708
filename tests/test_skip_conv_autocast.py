"""skip_conv2d under autocast (what ``tools/train.py --amp`` runs): bfloat16 on the CPU, float16 on CUDA. Forward and
gradients of float32 leaves match the float32 reference at the autocast dtype's tolerance, and the output has the
dtype ``F.conv2d`` gets under autocast."""
import os

import pytest
import torch
import torch.nn.functional as F

from skipconv_det import SKIP_PATTERNS, skip_conv2d
from skipconv_det.ops import FILLS
from ._reference import TOL, reference
from ._tiers import full_only

AUTOCAST = [('cpu', torch.bfloat16)] + ([('cuda', torch.float16)] if torch.cuda.is_available() else [])
if os.environ.get('TORCH_DEVICE'):
    AUTOCAST = [case for case in AUTOCAST if case[0] == os.environ['TORCH_DEVICE']]

# (input N, C, H, W; C_out; stride; channels_last): a small padded copy, a large NCHW map (on the CPU its lattices'
# stride-2 convs take the polyphase input gradient), a strided channels_last conv.
GEOMETRIES = {
    'small': ((2, 4, 9, 12), 6, 1, False),
    'large NCHW': ((1, 2, 190, 190), 3, 1, False),
    'strided channels_last': ((2, 4, 9, 12), 6, 2, True),
}


@pytest.mark.parametrize('device,dtype', AUTOCAST)
@pytest.mark.parametrize('geometry', list(GEOMETRIES))
@pytest.mark.parametrize('fill', FILLS)
@pytest.mark.parametrize('shift', full_only([False, True], fast=(True, )))
@pytest.mark.parametrize('pattern', full_only(SKIP_PATTERNS, fast=('checkerboard', 'grid')))
def test_matches_reference_under_autocast(device, dtype, geometry, fill, shift, pattern):
    shape, out_channels, stride, channels_last = GEOMETRIES[geometry]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=gen).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = (0.3 * torch.randn(out_channels, shape[1], 3, 3, generator=gen)).to(device)
    bias = torch.randn(out_channels, generator=gen).to(device)
    leaves = [t.clone().requires_grad_() for t in (x, weight, bias)]
    ref_leaves = [t.clone().requires_grad_() for t in (x, weight, bias)]

    with torch.autocast(device, dtype):
        out = skip_conv2d(*leaves, stride, 1, 1, 1, pattern, shift, fill)
        assert out.dtype == F.conv2d(x, weight, bias, stride, 1).dtype == dtype
    ref = reference(*ref_leaves, stride, 1, 1, 1, pattern, shift, fill)  # in float32
    tol = TOL[dtype]
    torch.testing.assert_close(out.float(), ref, rtol=tol, atol=tol * ref.abs().max().item())

    grad = torch.randn(ref.shape, generator=gen).to(device)
    out.backward(grad.to(dtype))
    ref.backward(grad)
    for got, want in zip(leaves, ref_leaves):
        assert got.grad.dtype == torch.float32  # autocast casts the gradients back to the leaves' dtype
        torch.testing.assert_close(got.grad, want.grad, rtol=tol, atol=tol * want.grad.abs().max().item())
