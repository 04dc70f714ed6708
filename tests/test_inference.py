"""optimize_for_inference: SkipConv features in the lattice domain compute what the eager (BN-folded) model
computes, for every supported pattern and fill, block type and layout, odd map sizes and batches; the write kernel
and its PyTorch-op formulation agree; what the rewrite cannot show to be safe runs as before.

`make test-fast` runs a subset of each matrix that still takes every pattern, fill, size, stride, layout and write
path once; `make test` runs all of it. A model's reference (BN-folded eager) outputs are computed once for both
write paths, which change only the optimized model."""
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
from ._batchnorm import randomise_bn
from ._tiers import full_only

LAYOUTS = (torch.contiguous_format, torch.channels_last)
LATTICE_PATTERNS = ('checkerboard', 'row', 'col', 'grid')
WRITE_PATHS = ('kernel', 'torch ops')
# What `make test-fast` runs of the model tests' pattern x fill matrices (test_materialised_conv_equals_skipconv
# takes every pattern and fill there).
FAST_PATTERN_FILLS = (('checkerboard', 'zero'), ('grid', 'linear'))


@pytest.fixture
def write_path(request, monkeypatch):
    """Runs a test with the compiled write kernel, or with the PyTorch ops that stand for it (parametrised
    indirectly, so that a test can run one of them in `make test-fast` and both in `make test`)."""
    if request.param == 'torch ops':
        monkeypatch.setattr(write, 'kernel_applies', lambda like: False)
        monkeypatch.setattr(L, 'kernel_applies', lambda like: False)
    elif not write.build_kernel():
        pytest.skip('the write kernel could not be built here')
    return request.param


def _outputs(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _reference_outputs(reference, x, call):
    """The reference model's outputs by layout (model and input in that layout)."""
    with torch.no_grad():
        return {layout: _outputs(call(reference.to(memory_format=layout), x.contiguous(memory_format=layout)))
                for layout in LAYOUTS}


@pytest.fixture(scope='module')
def references():
    """(model, input, reference model, its outputs per layout) by case: shared by a case's write paths."""
    return {}


def _case(references, key, build, shape, call=lambda m, x: m(x)):
    """The model ``build`` gives (seeded, BN randomised), an input of ``shape``, and the BN-folded eager model with
    its outputs in both layouts, computed once per ``key``."""
    if key not in references:
        torch.manual_seed(0)
        model = randomise_bn(build())
        x = torch.randn(*shape)
        reference = fuse_conv_bn(copy.deepcopy(model))
        references[key] = model, x, reference, _reference_outputs(reference, x, call)
    return references[key]


def _assert_same(model: nn.Module, x: torch.Tensor, call=lambda m, x: m(x), regions=None,
                 expected=None) -> nn.Module:
    """The optimized model's outputs equal the BN-folded eager model's (relative 1e-5) in both layouts
    (``expected``: those outputs by layout, already computed)."""
    if expected is None:
        randomise_bn(model)
        expected = _reference_outputs(fuse_conv_bn(copy.deepcopy(model)), x, call)
    optimized = optimize_for_inference(copy.deepcopy(model))
    if regions is not None:
        assert optimized.lattice_regions == regions
    for layout in LAYOUTS:
        xs = x.contiguous(memory_format=layout)
        with torch.no_grad():
            got = _outputs(call(optimized.to(memory_format=layout), xs))
        expected_here = expected[layout]
        assert len(got) == len(expected_here)
        for e, g in zip(expected_here, got):
            assert g.shape == e.shape
            torch.testing.assert_close(g, e, rtol=0, atol=1e-5 * e.abs().max().item())
    return optimized


def _id(value):
    if isinstance(value, tuple):
        return 'x'.join(map(str, value))
    return {torch.contiguous_format: 'nchw', torch.channels_last: 'channels_last'}.get(value, str(value))


_PATTERN_FILLS = [f'{p}/{f}' for p, f in itertools.product(LATTICE_PATTERNS, FILLS)]
_MATERIALISED = list(itertools.product(_PATTERN_FILLS, [1, 2], [(8, 10), (7, 9), (1, 3)], LAYOUTS, WRITE_PATHS))
# The fast tier: each (pattern, fill) once with both write paths, taking strides, sizes and layouts in turn.
_FAST_MATERIALISED = [(pf, [1, 2][i % 2], [(8, 10), (7, 9), (1, 3)][i % 3], LAYOUTS[i // 2 % 2], path)
                      for i, pf in enumerate(_PATTERN_FILLS) for path in WRITE_PATHS]


@pytest.mark.parametrize('pattern_fill,stride,size,layout,write_path',
                         full_only(_MATERIALISED, fast=_FAST_MATERIALISED, several=True), indirect=['write_path'],
                         ids=_id)
def test_materialised_conv_equals_skipconv(pattern_fill, stride, size, layout, write_path):
    """A SkipConv's kept lattices from a padded map, materialised (with an activation), are its eager output."""
    pattern, fill = pattern_fill.split('/')
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


@pytest.mark.parametrize('write_path', WRITE_PATHS, indirect=True)
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


@pytest.mark.parametrize('write_path', full_only(WRITE_PATHS, fast=('kernel', )), indirect=True)
@pytest.mark.parametrize('pattern,fill', full_only([(p, f) for p in LATTICE_PATTERNS for f in FILLS],
                                                   fast=FAST_PATTERN_FILLS, several=True))
def test_basic_block_resnet(pattern, fill, write_path, references):
    model, x, _, expected = _case(references, ('r18', pattern, fill),
                                  lambda: convert_skipconv(_resnet18(), pattern, fill=fill), (2, 3, 38, 54))
    _assert_same(model, x, regions=('', ), expected=expected)


_BOTTLENECK_RESNETS = {
    'r50-pytorch': lambda: ResNet(depth=50, base_channels=8, style='pytorch', init_cfg=None),
    'r50-caffe': lambda: ResNet(depth=50, base_channels=8, style='caffe', init_cfg=None),
    'r50v1d': lambda: ResNetV1d(depth=50, base_channels=8, init_cfg=None),
    'resnext50': lambda: ResNeXt(depth=50, groups=4, base_width=2, base_channels=8, init_cfg=None),
}


@pytest.mark.parametrize('write_path', full_only(WRITE_PATHS, fast=('kernel', )), indirect=True)
@pytest.mark.parametrize('name', full_only(list(_BOTTLENECK_RESNETS), fast=('r50-pytorch', )))
@pytest.mark.parametrize('size', full_only([(38, 54), (35, 49)], fast=((35, 49), )))
def test_bottleneck_resnets(name, size, write_path, references):
    """Every stage output returned in full: the skipped positions of each block's output chain through the stage."""
    model, x, _, expected = _case(references, (name, size), lambda: convert_skipconv(_BOTTLENECK_RESNETS[name]()),
                                  (2, 3, *size))
    _assert_same(model, x, regions=('', ), expected=expected)


@pytest.mark.parametrize('name', full_only(['ResNet', 'ResNetV1c', 'ResNetV1d'], fast=('ResNetV1c', )))
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


_NECKS = {'plain': {}, 'on_input': dict(add_extra_convs='on_input'), 'on_output': dict(add_extra_convs='on_output')}


def _detector(neck, convert):
    model = _Detector(_NECKS[neck])
    if convert == 'all':
        convert_skipconv(model)
    elif convert == 'backbone':
        convert_skipconv(model.backbone)
    else:
        convert_skipconv(model, kernel_sizes=[3])
    return model


@pytest.mark.parametrize('write_path', full_only(WRITE_PATHS, fast=('kernel', )), indirect=True)
@pytest.mark.parametrize('neck,convert', full_only(list(itertools.product(_NECKS, ['all', 'backbone', '3x3'])),
                                                   fast=(('plain', 'all'), ('on_output', '3x3')), several=True))
def test_backbone_and_fpn(neck, convert, write_path, references):
    """Features cross from the backbone to the neck as kept lattices where SkipConv laterals read them; a dense
    lateral or a 3x3-only conversion reads full maps."""
    model, x, reference, expected = _case(references, ('fpn', neck, convert), lambda: _detector(neck, convert),
                                          (2, 3, 50, 74), lambda m, x: m.extract_feat(x))
    optimized = _assert_same(model, x, lambda m, x: m.extract_feat(x), expected=expected)
    assert optimized.lattice_regions[0] == 'extract_feat'
    with torch.no_grad():  # the backbone alone returns complete maps too
        x = torch.randn(1, 3, 50, 74, generator=torch.Generator().manual_seed(1))
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
    model = optimize_for_inference(randomise_bn(convert_skipconv(_resnet18())))
    model.train()
    with pytest.raises(RuntimeError, match='optimized for inference'):
        model(torch.randn(1, 3, 32, 32))
