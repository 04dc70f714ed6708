"""optimize_for_inference: SkipConv features in the lattice domain compute what the eager (BN-folded) model
computes, for every supported pattern and fill, block type and layout, odd map sizes and batches; the write kernel
and its PyTorch-op formulation agree; what the rewrite cannot show to be safe runs as before."""
import copy
import itertools

import pytest
import torch
import torch.nn as nn
from mmdet.models.backbones import ResNet, ResNetV1d, ResNeXt
from mmdet.models.necks import FPN

from skipconv_det.inference import optimize_for_inference
from skipconv_det.inference import functional as L
from skipconv_det.inference import write
from skipconv_det.models import convert_skipconv, fuse_conv_bn
from skipconv_det.ops import FILLS, SkipConv2d

LAYOUTS = (torch.contiguous_format, torch.channels_last)
LATTICE_PATTERNS = ('checkerboard', 'row', 'col', 'grid')


@pytest.fixture(params=['kernel', 'torch ops'])
def write_path(request, monkeypatch):
    """Runs a test with the compiled write kernel, and again with the PyTorch ops that stand for it."""
    if request.param == 'torch ops':
        monkeypatch.setattr(write, 'kernel_applies', lambda like: False)
        monkeypatch.setattr(L, 'kernel_applies', lambda like: False)
    elif not write.build_kernel():
        pytest.skip('the write kernel could not be built here')
    return request.param


def _randomise_bn(model: nn.Module) -> nn.Module:
    """BN statistics and affine far from the identity, so that a misplaced shift shows."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(0.2 * torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(0.2 * torch.randn(m.num_features, generator=gen))
    model.eval()
    return model


def _outputs(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _assert_same(model: nn.Module, x: torch.Tensor, call=lambda m, x: m(x), regions=None) -> nn.Module:
    """The optimized model's outputs equal the BN-folded eager model's (relative 1e-5) in both layouts."""
    _randomise_bn(model)
    reference = fuse_conv_bn(copy.deepcopy(model))
    optimized = optimize_for_inference(copy.deepcopy(model))
    if regions is not None:
        assert optimized.lattice_regions == regions
    for layout in LAYOUTS:
        xs = x.contiguous(memory_format=layout)
        with torch.no_grad():
            expected = _outputs(call(reference.to(memory_format=layout), xs))
            got = _outputs(call(optimized.to(memory_format=layout), xs))
        assert len(got) == len(expected)
        for e, g in zip(expected, got):
            assert g.shape == e.shape
            torch.testing.assert_close(g, e, rtol=0, atol=1e-5 * e.abs().max().item())
    return optimized


@pytest.mark.parametrize('pattern,fill', itertools.product(LATTICE_PATTERNS, FILLS))
@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('size', [(8, 10), (7, 9), (1, 3)])
@pytest.mark.parametrize('layout', LAYOUTS)
def test_materialised_conv_equals_skipconv(pattern, fill, stride, size, layout, write_path):
    """A SkipConv's kept lattices from a padded map, materialised (with an activation), are its eager output."""
    torch.manual_seed(0)
    conv = SkipConv2d(5, 6, 3, stride, 1, skip_pattern=pattern, fill=fill).eval().to(memory_format=layout)
    conv.shift = torch.randn(6)
    x = torch.randn(2, 5, *size).contiguous(memory_format=layout)
    with torch.no_grad():
        expected = conv(x)
        lattice = L.conv_lattices(L.pad_map(x, conv.padding, slack=conv.stride), conv)
        for clamp in (None, (0.0, 6.0)):
            got = L.materialise([('linear', pattern, fill)], [lattice], clamp).map
            want = expected if clamp is None else expected.clamp(*clamp)
            torch.testing.assert_close(got, want, rtol=0, atol=1e-5 * want.abs().max().item())


@pytest.mark.parametrize('pattern', LATTICE_PATTERNS)
@pytest.mark.parametrize('size', [(6, 8), (5, 7)])
def test_tracked_skipped_lattices(pattern, size, write_path):
    """track: the skipped lattices of act(conv + residual map), as the eager layers give them."""
    torch.manual_seed(0)
    conv = SkipConv2d(4, 4, 3, 1, 1, skip_pattern=pattern).eval()
    conv.shift = torch.randn(4)
    x, residual = torch.randn(2, 4, *size), torch.randn(2, 4, *size)
    with torch.no_grad():
        expected = (conv(x) + residual).relu()
        lattice = L.conv_lattices(L.pad_map(x, (1, 1), slack=(1, 1)), conv)
        relu = (0.0, float('inf'))
        tracked = L.track(lattice, pattern, [('linear', pattern, 'linear'), ('full', None, None)], [lattice, residual],
                          relu)
        # Writing the map back from its kept and skipped lattices alone must give the eager output where they
        # are taken as they stand: materialise the explicit value and compare the skipped positions.
        kept = L.materialise([('explicit', pattern, None)], [tracked._replace(kept=L.gather(expected, pattern,
                                                                                          write_path == 'kernel'))])
    torch.testing.assert_close(kept.map, expected, rtol=0, atol=1e-5 * expected.abs().max().item())


def _resnet18(**kwargs):
    return ResNet(depth=18, base_channels=8, init_cfg=None, **kwargs)


@pytest.mark.parametrize('pattern,fill', [(p, f) for p in LATTICE_PATTERNS for f in FILLS])
def test_basic_block_resnet(pattern, fill, write_path):
    torch.manual_seed(0)
    model = convert_skipconv(_resnet18(), pattern, fill=fill)
    _assert_same(model, torch.randn(2, 3, 38, 54), regions=('', ))


@pytest.mark.parametrize('build', [
    lambda: ResNet(depth=50, base_channels=8, style='pytorch', init_cfg=None),
    lambda: ResNet(depth=50, base_channels=8, style='caffe', init_cfg=None),
    lambda: ResNetV1d(depth=50, base_channels=8, init_cfg=None),
    lambda: ResNeXt(depth=50, groups=4, base_width=2, base_channels=8, init_cfg=None),
], ids=['r50-pytorch', 'r50-caffe', 'r50v1d', 'resnext50'])
@pytest.mark.parametrize('size', [(38, 54), (35, 49)])
def test_bottleneck_resnets(build, size, write_path):
    """Every stage output returned in full: the skipped positions of each block's output chain through the stage."""
    torch.manual_seed(0)
    _assert_same(convert_skipconv(build()), torch.randn(2, 3, *size), regions=('', ))


@pytest.mark.parametrize('name', ['ResNet', 'ResNetV1c', 'ResNetV1d'])
def test_mmpretrain_resnets(name):
    from mmpretrain.models import backbones
    torch.manual_seed(0)
    model = getattr(backbones, name)(depth=50, base_channels=8, out_indices=(0, 1, 2, 3))
    _assert_same(convert_skipconv(model), torch.randn(2, 3, 35, 49), regions=('', ))


def test_cifar_resnet():
    from skipconv_det.models.backbones import CifarResNet
    torch.manual_seed(0)
    _assert_same(convert_skipconv(CifarResNet(depth=20)), torch.randn(2, 3, 32, 32), regions=('', ))


class _Detector(nn.Module):
    """What optimize_for_inference sees of a detector: a backbone, a neck and extract_feat."""

    def __init__(self, neck_kwargs):
        super().__init__()
        self.backbone = _resnet18()
        self.neck = FPN([8, 16, 32, 64], 16, 5, **neck_kwargs)

    def extract_feat(self, x):
        return self.neck(self.backbone(x))


@pytest.mark.parametrize('neck_kwargs', [{}, dict(add_extra_convs='on_input'), dict(add_extra_convs='on_output')])
@pytest.mark.parametrize('convert', ['all', 'backbone', '3x3'])
def test_backbone_and_fpn(neck_kwargs, convert, write_path):
    """Features cross from the backbone to the neck as kept lattices where SkipConv laterals read them; a dense
    lateral or a 3x3-only conversion reads full maps."""
    torch.manual_seed(0)
    model = _Detector(neck_kwargs)
    if convert == 'all':
        convert_skipconv(model)
    elif convert == 'backbone':
        convert_skipconv(model.backbone)
    else:
        convert_skipconv(model, kernel_sizes=[3])
    optimized = _assert_same(model, torch.randn(2, 3, 50, 74), lambda m, x: m.extract_feat(x))
    assert optimized.lattice_regions[0] == 'extract_feat'
    with torch.no_grad():  # the backbone alone returns complete maps too
        x = torch.randn(1, 3, 50, 74)
        reference = fuse_conv_bn(copy.deepcopy(model).eval())
        for e, g in zip(reference.backbone(x), optimized.backbone(x)):
            torch.testing.assert_close(g, e, rtol=0, atol=1e-5 * e.abs().max().item())


def test_shifted_channels_run_as_before():
    """With shift_channels a 1x1 conv reads every position of the other channel groups: nothing is rewritten."""
    torch.manual_seed(0)
    model = convert_skipconv(_resnet18(), 'grid', shift_channels=True)
    _assert_same(model, torch.randn(1, 3, 38, 54), regions=())


def test_mixed_patterns_materialise_between():
    """A grid SkipConv reading a checkerboard map reads skipped positions of it: that map is materialised."""
    torch.manual_seed(0)
    model = convert_skipconv(_resnet18())
    for conv in model.layer2.modules():
        if isinstance(conv, SkipConv2d):
            conv.skip_pattern = 'grid'
    _assert_same(model, torch.randn(2, 3, 38, 54), regions=('', ))


class _ReadsOldValue(nn.Module):
    """An in-place activation whose input is read again afterwards: the rewrite refuses it."""

    def __init__(self):
        super().__init__()
        self.conv1 = SkipConv2d(3, 4, 1)
        self.conv2 = SkipConv2d(4, 4, 3, padding=1)

    def forward(self, x):
        y = self.conv1(x)
        z = nn.functional.relu(y)
        y.add_(1.0)
        return self.conv2(z) + y


def test_graph_it_cannot_show_safe_runs_as_before():
    torch.manual_seed(0)
    model = _ReadsOldValue()
    optimized = _assert_same(model, torch.randn(1, 3, 9, 11))
    assert optimized.lattice_regions == ()


def test_training_is_refused():
    model = optimize_for_inference(_randomise_bn(convert_skipconv(_resnet18())))
    model.train()
    with pytest.raises(RuntimeError, match='optimized for inference'):
        model(torch.randn(1, 3, 32, 32))
