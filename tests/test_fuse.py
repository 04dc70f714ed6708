"""Folding BatchNorm into SkipConv: the shift belongs at every position, so the folded model's outputs equal the
unfolded one's for every fill, through skipconv_det's fuse_conv_bn and through mmcv's."""
import copy

import pytest
import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmcv.cnn import fuse_conv_bn as mmcv_fuse_conv_bn
from mmengine.hub import get_config
from mmengine.registry import MODELS, DefaultScope

from skipconv_det import SKIP_PATTERNS, SkipConv2d, skip_conv2d
from skipconv_det.models import convert_skipconv, fuse_conv_bn, revert_skipconv
from skipconv_det.ops import FILLS
from ._tiers import full


def _randomise_bn(model):
    """Running statistics and affine parameters far from the identity, so a misplaced shift shows."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=gen))
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen))
    return model.eval()


def _num_bns(model):
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@pytest.mark.parametrize('fill', FILLS)
@pytest.mark.parametrize('pattern', SKIP_PATTERNS)
@pytest.mark.parametrize('shift_channels', [False, True])
def test_shift_is_added_at_every_position(fill, pattern, shift_channels):
    torch.manual_seed(0)
    x, w, b, s = torch.randn(2, 4, 7, 6), torch.randn(6, 4, 3, 3), torch.randn(6), torch.randn(6)
    args = (1, 1, 1, 1, pattern, shift_channels, fill)
    expected = skip_conv2d(x, w, b, *args) + s.view(1, -1, 1, 1)
    torch.testing.assert_close(skip_conv2d(x, w, b, *args, shift=s), expected)
    # A 1x1 output whose only position is skipped and has no source: 0, then the shift.
    out = skip_conv2d(torch.randn(1, 4, 1, 1), w[:, :, :1, :1], None, 1, 0, 1, 1, 'grid', True, fill, shift=s)
    assert torch.equal(out[0, -1, 0, 0], s[-1])


def test_learnt_shift_gets_its_gradient():
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    s = torch.randn(3, requires_grad=True)
    skip_conv2d(x, w, None, padding=1, shift=s).sum().backward()
    torch.testing.assert_close(s.grad, torch.full((3, ), 25.))


@pytest.mark.parametrize('fill', FILLS)
@pytest.mark.parametrize('bias', [False, True])
@pytest.mark.parametrize('layout', [torch.contiguous_format, torch.channels_last])
def test_fuse_conv_bn_is_exact(fill, bias, layout):
    torch.manual_seed(0)
    model = _randomise_bn(
        nn.Sequential(SkipConv2d(5, 8, 3, padding=1, bias=bias, fill=fill), nn.BatchNorm2d(8), nn.ReLU(),
                      SkipConv2d(8, 8, 3, stride=2, padding=1, bias=bias, fill=fill, skip_pattern='grid',
                                 shift_channels=True), nn.BatchNorm2d(8)))
    x = torch.randn(2, 5, 12, 11).contiguous(memory_format=layout)
    with torch.no_grad():
        expected = model(x)
        fused = fuse_conv_bn(copy.deepcopy(model))
        assert _num_bns(fused) == 0 and fused[0].shift is not None
        torch.testing.assert_close(fused(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('fill', FILLS)
def test_mmcv_fuse_conv_bn_is_exact_or_refuses(fill):
    torch.manual_seed(0)
    block = _randomise_bn(ConvModule(4, 6, 3, padding=1, norm_cfg=dict(type='BN'),
                                     conv_cfg=dict(type='SkipConv', fill=fill)))
    x = torch.randn(1, 4, 9, 10)
    with torch.no_grad():
        expected = block(x)
        fused = mmcv_fuse_conv_bn(copy.deepcopy(block))
        assert _num_bns(fused) == 0 and fused.conv.bias is None
        torch.testing.assert_close(fused(x), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(torch.nn.utils.fuse_conv_bn_eval(block.conv, block.bn)(x),
                                   block.bn(block.conv(x)), rtol=1e-5, atol=1e-5)
    with_bias = nn.Sequential(SkipConv2d(4, 6, 3, fill=fill), nn.BatchNorm2d(6)).eval()
    with pytest.raises(RuntimeError, match='skipconv_det.models.fuse_conv_bn'):
        mmcv_fuse_conv_bn(with_bias)


def _assert_fused_equal(model, inputs, forward):
    # In float64: through dozens of layers float32 rounding alone reaches 1e-5; folding itself is exact.
    _randomise_bn(model).double()
    inputs = inputs.double()
    with torch.no_grad():
        expected = forward(model, inputs)
        fused = fuse_conv_bn(copy.deepcopy(model))
        assert _num_bns(fused) == 0
        got = forward(fused, inputs)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('fill', FILLS)
def test_fused_resnet_and_fpn_keep_outputs(fill):
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = nn.Sequential(
            MODELS.build(dict(type='ResNet', depth=18, base_channels=8, num_stages=4, out_indices=(0, 1, 2, 3))),
            MODELS.build(dict(type='FPN', in_channels=[8, 16, 32, 64], out_channels=16, num_outs=5,
                              norm_cfg=dict(type='BN'))))
    convert_skipconv(model, 'checkerboard', fill=fill)
    _assert_fused_equal(model, torch.randn(1, 3, 64, 80), lambda m, x: m[1](m[0](x)))


@full  # test_fused_resnet_and_fpn_keep_outputs is its `make test-fast` counterpart
@pytest.mark.parametrize('fill', FILLS)
def test_fused_faster_rcnn_r50_keeps_outputs(fill):
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):
        cfg = get_config('mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', pretrained=False).model
        cfg.backbone.init_cfg = None
        model = MODELS.build(cfg)
    convert_skipconv(model, 'checkerboard', fill=fill, scope=('backbone', 'neck', 'rpn_head'))

    def features_and_rpn(m, x):
        feats = m.extract_feat(x)
        cls_scores, bbox_preds = m.rpn_head(feats)
        return list(feats) + list(cls_scores) + list(bbox_preds)

    _assert_fused_equal(model, torch.randn(1, 3, 96, 128), features_and_rpn)


def test_revert_of_fused_skipconv_is_the_fused_dense_conv():
    torch.manual_seed(0)
    model = _randomise_bn(nn.Sequential(SkipConv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)))
    x = torch.randn(1, 3, 6, 7)
    with torch.no_grad():
        dense_then_bn = revert_skipconv(copy.deepcopy(model))(x)
        reverted = revert_skipconv(fuse_conv_bn(model))
        assert type(reverted[0]) is nn.Conv2d and 'shift' not in reverted[0].state_dict()
        torch.testing.assert_close(reverted(x), dense_then_bn, rtol=1e-5, atol=1e-5)


def test_channels_last_hook_lays_out_the_model():
    from types import SimpleNamespace

    from skipconv_det.engine import ChannelsLastHook
    model = nn.Sequential(SkipConv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1))
    ChannelsLastHook().before_run(SimpleNamespace(model=model))
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in (model[0], model[2]))
    out = model(torch.randn(1, 3, 8, 8))
    assert out.is_contiguous(memory_format=torch.channels_last)
