"""The reference for SkipConv (docs/operator.md, Definition): ``F.conv2d(...)`` with the skipped positions filled by
the rules of docs/operator.md, Fills (zeros for fill='zero'), and the check of skip_conv2d's forward and gradients
against it."""
import torch
import torch.nn.functional as F
from torch.nn.modules.utils import _pair

from skipconv_det import skip_conv2d, skip_mask

# Tolerance per dtype, relative to the largest magnitude of the reference.
TOL = {torch.float64: 1e-10, torch.float32: 1e-4, torch.bfloat16: 5e-2, torch.float16: 5e-3}


def reference(x, weight, bias, stride, padding, dilation, groups, pattern, shift, fill='zero'):
    """What skip_conv2d must return: the dense convolution, with the positions ``pattern`` skips filled."""
    y = _reference_conv(x, weight, bias, stride, padding, dilation, groups)
    return reference_fill(y, skip_mask(pattern, y.shape[1], y.shape[2], y.shape[3], shift, device=y.device), fill)


_NEAREST_ORDER = [(0, -1), (-1, 0), (-1, -1), (0, 1), (1, 0), (1, 1), (-1, 1), (1, -1)]


def reference_fill(y, mask, fill):
    """The fill rules (docs/operator.md, Fills), written position-independently: y's value at (i + di, j + dj) is
    read through a one-pixel zero border, and it counts where that neighbour lies inside the output and is kept."""
    height, width = y.shape[2:]
    padded_y = F.pad(y, (1, 1, 1, 1))
    padded_mask = F.pad(mask, (1, 1, 1, 1), value=False)

    def neighbour(di, dj):
        rows, cols = slice(1 + di, 1 + di + height), slice(1 + dj, 1 + dj + width)
        return padded_y[:, :, rows, cols], padded_mask[:, rows, cols]

    out = torch.where(mask, y, torch.zeros((), dtype=y.dtype, device=y.device))
    if fill == 'nearest':
        todo = ~mask
        for offset in _NEAREST_ORDER:
            value, kept = neighbour(*offset)
            take = todo & kept
            out = torch.where(take, value, out)
            todo = todo & ~kept
    elif fill == 'linear':
        means = []
        for offsets in ([(-1, 0), (1, 0), (0, -1), (0, 1)], [(-1, -1), (-1, 1), (1, -1), (1, 1)]):
            values, kept = zip(*(neighbour(*o) for o in offsets))
            total = sum(torch.where(k, v, 0.0) for v, k in zip(values, kept))
            count = sum(k.to(y.dtype) for k in kept)
            means.append((total / count.clamp(min=1), count > 0))
        (edge, has_edge), (diagonal, has_diagonal) = means
        out = torch.where(~mask & has_edge, edge, torch.where(~mask & has_diagonal, diagonal, out))
    return torch.empty_like(y).copy_(out)  # in y's layout, as F.conv2d gives it


def _reference_conv(x, weight, bias, stride, padding, dilation, groups):
    """F.conv2d, kept off two torch 2.14 CPU bugs that crash the process (found by fuzzing): the bias is added
    afterwards on dilated convs, and strided 1x1 convs (whose channels_last backward corrupts memory) are computed
    in NCHW and then given the layout F.conv2d itself gives."""
    if x.device.type != 'cpu':
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    bias_after = bias is not None and _pair(dilation) != (1, 1)
    conv_bias = None if bias_after else bias
    if tuple(weight.shape[2:]) == (1, 1) and _pair(stride) != (1, 1):
        with torch.no_grad():
            like = F.conv2d(x, weight, None, stride, padding, dilation, groups)  # (the forward is sound)
        y = torch.empty_like(like).copy_(
            F.conv2d(x.contiguous(), weight.contiguous(), conv_bias, stride, padding, dilation, groups))
    else:
        y = F.conv2d(x, weight, conv_bias, stride, padding, dilation, groups)
    return y + bias.view(-1, 1, 1) if bias_after else y


def assert_matches_reference(x, weight, bias, stride=1, padding=0, dilation=1, groups=1,
                             pattern='checkerboard', shift=False, check_grad=True, fill='zero'):
    """Forward and input/weight/bias gradients of skip_conv2d equal the reference."""
    tol = TOL[x.dtype]
    leaves = [t.detach().clone().requires_grad_(check_grad) if t is not None else None for t in (x, weight, bias)]
    ref_leaves = [t.detach().clone().requires_grad_(check_grad) if t is not None else None for t in (x, weight, bias)]
    out = skip_conv2d(*leaves, stride, padding, dilation, groups, pattern, shift, fill)
    ref = reference(*ref_leaves, stride, padding, dilation, groups, pattern, shift, fill)
    assert out.shape == ref.shape and out.dtype == ref.dtype
    for memory_format in (torch.contiguous_format, torch.channels_last):  # the layout F.conv2d gives
        if ref.numel():  # (an empty tensor's strides carry no layout)
            assert out.is_contiguous(memory_format=memory_format) == ref.is_contiguous(memory_format=memory_format)
    scale = ref.abs().max().item() if ref.numel() else 1.0
    torch.testing.assert_close(out, ref, rtol=tol, atol=tol * max(scale, 1.0))
    mask = skip_mask(pattern, ref.shape[1], ref.shape[2], ref.shape[3], shift, device=ref.device)
    if fill in ('zero', 'nearest'):  # skipped positions are exact zeros or exact copies, not just close
        assert torch.equal(out.detach(), reference_fill(out.detach(), mask, fill))
    if not check_grad or out.numel() == 0:
        return out
    grad = torch.randn_like(ref)
    out.backward(grad)
    ref.backward(grad)
    for got, want in zip(leaves, ref_leaves):
        if got is not None:
            gscale = max(want.grad.abs().max().item(), 1.0) if want.grad.numel() else 1.0
            torch.testing.assert_close(got.grad, want.grad, rtol=tol, atol=tol * gscale)
    return out
