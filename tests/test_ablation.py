"""The accuracy study's variants (tools/ablation.py): parsing, the models they build, and the summary."""
import argparse
import json

import pytest
import torch
from mmengine.config import Config

from skipconv_det import SkipConv2d
from skipconv_det.apis.ablation import (DET_VARIANTS, Step, _run_key, format_summary, parse_variant, summarize,
                                        variant_model_cfg)
from skipconv_det.cli.ablation import run_ablation

DENSE_DEMO = 'configs/demo/faster-rcnn_r18-w16-scratch_fpn_1xb8-6e_synthetic-coco.py'


def test_parse_variant():
    assert parse_variant('dense') == ('dense', ())
    name, steps = parse_variant('mine=backbone:checkerboard:zero;neck,rpn_head:grid+shift:linear:*fpn_convs*')
    assert name == 'mine'
    assert steps == (Step(('backbone', ), 'checkerboard', False, 'zero'),
                     Step(('neck', 'rpn_head'), 'grid', True, 'linear', ('*fpn_convs*', )))
    for bad in ('x=backbone:checkerboard', 'x=backbone:diagonal:zero', 'x=backbone:grid:bilinear'):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_variant(bad)


def test_variant_builds_the_placement_it_names(mmdet_scope):
    from mmdet.registry import MODELS
    cfg = Config.fromfile(DENSE_DEMO)
    backbone, heads = DET_VARIANTS['backbone zero, neck+rpn linear']
    steps = (backbone._replace(keep_dense=('backbone.conv1', )), heads)
    torch.manual_seed(0)
    model = MODELS.build(variant_model_cfg(cfg.model, steps))
    torch.manual_seed(0)
    dense = MODELS.build(cfg.model)
    fills = {(name.split('.')[0], m.fill) for name, m in model.named_modules() if isinstance(m, SkipConv2d)}
    assert fills == {('backbone', 'zero'), ('neck', 'linear'), ('rpn_head', 'linear')}
    assert type(model.backbone.conv1) is torch.nn.Conv2d  # kept dense
    assert type(model.rpn_head.rpn_cls) is torch.nn.Conv2d  # prediction layers stay dense
    # Conversion happens before initialisation: the same seed gives the dense model's own weights.
    for (name, p), (_, q) in zip(model.state_dict().items(), dense.state_dict().items()):
        assert torch.equal(p, q), name


def test_summary_mean_std_and_ratios():
    runs = [dict(task='cls', variant=v, seed=s, steps=[], metrics={'top1': top1}, flops=flops, latency_ms=ms)
            for v, s, top1, flops, ms in [('dense', 0, 90.0, 100, 10.0), ('dense', 1, 92.0, 100, 12.0),
                                          ('v', 0, 88.0, 50, 8.0), ('v', 1, 91.0, 50, 6.0)]]
    dense, v = summarize(runs, 'cls', ['dense', 'v', 'missing'])
    assert v['variant'] == 'v' and v['seeds'] == [0, 1]
    assert v['top1']['mean'] == pytest.approx(89.5) and v['top1']['std'] == pytest.approx(2.1213, abs=1e-4)
    assert v['flops_ratio'] == pytest.approx(0.5) and v['latency_ms_ratio'] == pytest.approx((0.8 + 0.5) / 2)
    assert dense['flops_ratio'] == 1.0
    assert '| v | 2 | 89.5 ± 2.1 | 0.500 | 0.650 |' in format_summary([dense, v], 'cls')


def test_no_train_summarises_the_saved_runs_only(tmp_path):
    settings = dict(depth=20, epochs=8, batch_size=64, num_train=3000, num_test=500)
    runs = [dict(key=_run_key('cls', 'dense', seed, dict(settings, steps=[])), task='cls', variant='dense', seed=seed,
                 steps=[], settings=settings, metrics={'top1': top1}, flops=100, latency_ms=10.0)
            for seed, top1 in ((0, 90.0), (1, 94.0))]
    json_path = tmp_path / 'ablation.json'
    json_path.write_text(json.dumps(dict(runs=runs)))
    data_root = tmp_path / 'data'
    result = run_ablation(['--tasks', 'cls', '--cls-variants', 'dense', 'checkerboard linear', '--seeds', '0', '1',
                           '--cls-epochs', '8', '--work-dir', str(tmp_path), '--cls-data-root', str(data_root),
                           '--no-train'])
    (dense, ) = result['summary']['cls']  # the variant without runs is left out, not trained
    assert dense['top1']['mean'] == 92.0 and not data_root.exists() and len(result['runs']) == 2
    assert (tmp_path / 'ablation.png').exists()
