"""`make demo` end to end, shrunk: generate a tiny synthetic COCO set, train the dense and the SkipConv Faster R-CNN
for a few iterations with mmengine's Runner, evaluate with CocoMetric, count FLOPs, time inference, print the table.
It checks that the pipeline runs and its numbers come out, not accuracy (that is what the full demo shows)."""
import json
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config

from skipconv_det.apis import DEMO_CONFIGS, format_table
from skipconv_det.cli.demo import run_demo
from skipconv_det.engine import custom_imports_of


@pytest.mark.parametrize('name', list(DEMO_CONFIGS))
def test_demo_configs_inherit_and_match_the_dataset(name):
    from skipconv_det.datasets.synthetic_coco import CLASSES, PALETTE

    cfg = Config.fromfile(DEMO_CONFIGS[name])
    detector, wrappers = cfg.model, 0  # the planned SkipConv model wraps the detector in SkipConvModels
    while detector.type == 'SkipConvModel':
        detector, wrappers = detector.model, wrappers + 1
    assert detector.roi_head.bbox_head.num_classes == len(CLASSES)
    assert tuple(cfg.train_dataloader.dataset.metainfo['classes']) == CLASSES
    assert [tuple(c) for c in cfg.train_dataloader.dataset.metainfo['palette']] == list(PALETTE)
    assert cfg.val_evaluator.type == 'CocoMetric' and detector.backbone.init_cfg is None
    assert (wrappers > 0) == (name == 'skipconv')
    assert custom_imports_of(cfg) == ['skipconv_det']


@pytest.fixture(scope='module')
def demo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo')
    work_dir, data_root = str(root / 'work_dirs'), str(root / 'data')
    threads = torch.get_num_threads()
    summary = run_demo([
        '--work-dir', work_dir, '--data-root', data_root, '--num-train', '8', '--num-val', '4', '--seed', '1',
        '--latency-repeats', '2', '--cfg-options', 'train_cfg.max_epochs=1', 'train_dataloader.batch_size=4',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False', 'default_hooks.logger.interval=1'
    ])
    torch.set_num_threads(threads)
    return summary, work_dir


@pytest.mark.e2e
def test_demo_trains_evaluates_and_measures_both_models(demo_run):
    summary, work_dir = demo_run
    assert [r['name'] for r in summary['results']] == list(DEMO_CONFIGS)
    with open(osp.join(work_dir, 'demo_results.json'), encoding='utf-8') as f:
        assert json.load(f)['results'][1]['metrics'] == summary['results'][1]['metrics']
    for res in summary['results']:
        assert osp.isfile(res['checkpoint']) and res['checkpoint'].endswith('epoch_1.pth')
        assert osp.isfile(res['log'])
        with open(res['log'], encoding='utf-8') as f:
            log = f.read()
        assert 'Epoch(train) [1][2/2]' in log and 'coco/bbox_mAP' in log
        assert set(res['metrics']) == {'bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75'}
        assert all(0.0 <= v <= 1.0 for v in res['metrics'].values())
        # CocoMetric reported each metric (train_and_measure puts 0.0 for one it did not), with these values.
        logged = dict(re.findall(r'coco/(bbox_mAP(?:_50|_75)?): (-?[\d.]+)', log))
        assert set(logged) == set(res['metrics'])
        for key, value in res['metrics'].items():
            assert value == pytest.approx(float(logged[key]), abs=5e-5), key
        assert res['latency']['median_ms'] > 0 and res['latency']['repeats'] == 2
        assert res['complexity']['input_shape'] == [1, 3, 128, 128]
    dense, skip = (r['complexity']['flops'] for r in summary['results'])
    assert skip['backbone'] < 0.6 * dense['backbone'] and skip['roi_head'] > 0


@pytest.mark.e2e
def test_demo_table_has_a_row_per_model_and_the_ratio(demo_run):
    summary, _ = demo_run
    lines = format_table(summary['results']).splitlines()
    assert len(lines) == 2 + len(summary['results']) + 1
    assert lines[0].split('|')[1].strip() == 'model' and 'bbox mAP' in lines[0]
    assert lines[-1].split('|')[1].strip() == 'skipconv / dense'
