"""FLOPs (mmengine.analysis) see the work SkipConv actually does; latency measurement; per-component splits."""
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config

from skipconv_det import SkipConv2d, skip_mask
from skipconv_det.analysis import (complexity, dummy_batch, get_model_complexity, measure_latencies, measure_latency,
                                   model_latency)
from ._tiers import full, full_only

DEMO_DENSE = 'configs/demo/faster-rcnn_r18-w16-scratch_fpn_1xb8-6e_synthetic-coco.py'
DEMO_SKIPCONV = 'configs/demo/faster-rcnn_r18-w16-scratch-skipconv_fpn_1xb8-6e_synthetic-coco.py'


def analytic_flops(model, inputs):
    """FLOPs counted by hand from one forward: each conv's multiply-adds at the output positions it keeps
    (every position for nn.Conv2d, ``skip_mask`` for SkipConv2d: docs/operator.md, Counting FLOPs), plus two FLOPs per
    element for each eval-mode affine BatchNorm (mmengine's convention: scale and shift)."""
    total = []

    def conv_hook(conv, args, out):
        per_output = conv.in_channels // conv.groups * conv.kernel_size[0] * conv.kernel_size[1]
        if isinstance(conv, SkipConv2d):
            kept = int(skip_mask(conv.skip_pattern, out.shape[1], out.shape[2], out.shape[3],
                                 conv.shift_channels).sum()) * out.shape[0]
        else:
            kept = out.numel()
        total.append(kept * per_output)

    def bn_hook(bn, args, out):
        total.append(2 * out.numel())

    handles = [m.register_forward_hook(conv_hook) for m in model.modules() if type(m) in (nn.Conv2d, SkipConv2d)]
    handles += [m.register_forward_hook(bn_hook) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    model.eval()  # (mmdet's ResNet.train() returns None, so no chaining)
    with torch.no_grad():
        model(inputs)
    for handle in handles:
        handle.remove()
    return sum(total)


def tiny_cnn(conv, **kwargs):
    """Three convs (3x3, strided 3x3, 1x1) with BN, built with the given conv class."""
    return nn.Sequential(
        conv(3, 8, 3, padding=1, **kwargs), nn.BatchNorm2d(8), nn.ReLU(),
        conv(8, 16, 3, stride=2, padding=1, bias=False, **kwargs), nn.BatchNorm2d(16), nn.ReLU(),
        conv(16, 12, 1, **kwargs))


@pytest.mark.parametrize('size', full_only([(15, 15), (16, 16), (17, 10)], fast=((17, 10), )))
@pytest.mark.parametrize('pattern,shift', full_only([('checkerboard', False), ('checkerboard', True), ('row', False),
                                                     ('grid', True), ('none', False)],
                                                    fast=(('checkerboard', False), ('grid', True), ('none', False)),
                                                    several=True))
def test_flops_equal_multiply_adds_of_kept_positions(pattern, shift, size):
    inputs = torch.randn(2, 3, *size)
    dense = tiny_cnn(nn.Conv2d)
    skip = tiny_cnn(SkipConv2d, skip_pattern=pattern, shift_channels=shift)
    dense_flops = get_model_complexity(dense, inputs)['flops']
    skip_flops = get_model_complexity(skip, inputs)['flops']
    assert dense_flops['total'] == analytic_flops(dense, inputs)
    assert skip_flops['total'] == analytic_flops(skip, inputs)
    assert set(skip_flops) == {'0', '1', '2', '3', '4', '5', '6', 'total'}
    assert skip_flops['0'] + skip_flops['1'] + skip_flops['3'] + skip_flops['4'] + skip_flops['6'] == \
        skip_flops['total']


def test_params_per_component_and_training_flag_restored():
    model = tiny_cnn(SkipConv2d).train()
    result = get_model_complexity(model, torch.randn(1, 3, 8, 8))
    assert result['params']['0'] == 3 * 8 * 9 + 8 and result['params']['6'] == 16 * 12 + 12
    assert result['params']['total'] == sum(p.numel() for p in model.parameters())
    assert result['input_shape'] == [1, 3, 8, 8]
    assert model.training


def test_measure_latencies_take_turns():
    calls = []
    result = measure_latencies({'a': lambda: calls.append('a'), 'b': lambda: calls.append('b')}, warmup=1, repeats=3)
    assert calls == ['a', 'b'] * 4  # one warm-up round, then three timed rounds, each in turns
    assert set(result) == {'a', 'b'} and all(r['repeats'] == 3 for r in result.values())


class _Clock:
    """Stands in for the ``time`` module: ``perf_counter`` reads a clock that only the timed calls advance."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


def test_measure_latency_reports_median_and_threads(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(complexity, 'time', clock)
    # Seconds each call takes: two warm-up calls (not timed), then five timed ones.
    durations = iter([0.050, 0.040, 0.004, 0.001, 0.005, 0.002, 0.003])

    def call():
        clock.now += next(durations)

    result = measure_latency(call, warmup=2, repeats=5, num_threads=1)
    assert result['repeats'] == 5 and result['threads'] == 1 and next(durations, None) is None
    assert result['min_ms'] <= result['median_ms'] <= result['max_ms']
    assert (result['min_ms'], result['median_ms'], result['max_ms']) == pytest.approx((1.0, 3.0, 5.0))


@pytest.fixture(scope='module')
def demo_models():
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    init_default_scope('mmdet')
    torch.manual_seed(0)
    return {name: MODELS.build(Config.fromfile(cfg).model) for name, cfg in
            (('dense', DEMO_DENSE), ('skipconv', DEMO_SKIPCONV))}


@full
def test_demo_detector_flops_per_component(demo_models):
    """On the demo's Faster R-CNN: the SkipConv backbone costs exactly its kept positions (about half the dense
    one), the FPN saves exactly its convs' skipped multiply-adds, and latency comes out in 'predict' mode."""
    inputs, data_samples = dummy_batch('mmdet', (128, 128))
    result = {name: get_model_complexity(model, inputs, data_samples) for name, model in demo_models.items()}
    dense, skip = result['dense']['flops'], result['skipconv']['flops']
    assert list(dense) == ['backbone', 'neck', 'rpn_head', 'roi_head', 'total']
    assert dense['total'] == sum(v for k, v in dense.items() if k != 'total')
    analytic = {}
    for name, model in demo_models.items():
        model.eval()
        with torch.no_grad():
            feats = model.backbone(inputs)
        analytic[name] = dict(backbone=analytic_flops(model.backbone, inputs), neck=analytic_flops(model.neck, feats))
    assert dense['backbone'] == analytic['dense']['backbone']
    assert skip['backbone'] == analytic['skipconv']['backbone']
    # The FPN also upsamples (counted by mmengine, the same in both): the difference is the convs' alone.
    assert dense['neck'] - skip['neck'] == analytic['dense']['neck'] - analytic['skipconv']['neck']
    for name in ('backbone', 'neck', 'rpn_head'):
        assert 0.45 < skip[name] / dense[name] < 0.6, name
    assert result['skipconv']['params'] == result['dense']['params']
    latency = model_latency(demo_models['skipconv'], inputs, data_samples, warmup=1, repeats=2)
    assert latency['median_ms'] > 0 and latency['mode'] == 'predict' and latency['input_shape'] == [1, 3, 128, 128]
