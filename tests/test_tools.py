"""tools/train.py, tools/test.py and torchrun on a tiny generated COCO-format set: --skipconv on a dense config,
an interrupted run resumed with --resume, COCO evaluation with --out, two CPU processes with gloo, and --amp."""
import os
import os.path as osp
import pickle
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.device import get_device
from mmengine.registry import MODELS

from skipconv_det import SkipConv2d
from skipconv_det.cli.test import parse_test_args
from skipconv_det.cli.train import parse_train_args, run_train
from skipconv_det.datasets import SYNTHETIC_COCO_CLASSES, generate_synthetic_coco

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY_CONFIG = """
_base_ = '{base}'
data_root = '{data_root}/'
metainfo = dict(classes={classes})
# ResNet-18 at 1/8 width on 64x64 images: a few seconds per epoch on one CPU core.
model = dict(
    backbone=dict(depth=18, base_channels=8, init_cfg=None),
    neck=dict(in_channels=[8, 16, 32, 64], out_channels=16),
    rpn_head=dict(in_channels=16, feat_channels=16),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=16),
        bbox_head=dict(in_channels=16, fc_out_channels=32, num_classes={num_classes})))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'),
                 metainfo=metainfo, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, ann_file='annotations/instances_val.json', data_prefix=dict(img='val/'),
                 metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=2, val_interval=1)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1))
randomness = dict(seed=0)
"""


@pytest.fixture(scope='module')
def tiny_configs(tmp_path_factory):
    """Tiny dense and SkipConv Faster R-CNN configs on 8 + 4 generated 64x64 images."""
    root = tmp_path_factory.mktemp('tiny')
    data_root = str(root / 'data')
    generate_synthetic_coco(data_root, num_train=8, num_val=4, img_size=(64, 64), max_objects=2)
    configs = {}
    bases = dict(dense='faster-rcnn_r50_fpn_1x_coco.py', skipconv='faster-rcnn_r50-skipconv_fpn_1x_coco.py')
    for kind, base in bases.items():
        path = root / f'tiny_{kind}.py'
        path.write_text(TINY_CONFIG.format(base=osp.join(ROOT, 'configs', base), data_root=data_root,
                                           classes=tuple(SYNTHETIC_COCO_CLASSES),
                                           num_classes=len(SYNTHETIC_COCO_CLASSES)))
        configs[kind] = str(path)
    return configs


def _run(args, **kwargs):
    pythonpath = os.pathsep.join([ROOT, os.environ.get('PYTHONPATH', '')])
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=pythonpath)
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, **kwargs)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _tool(name, *args):
    return _run([sys.executable, osp.join('tools', name), *args])


SKIP_FLAGS = ['--skipconv', '--skip-pattern', 'grid', '--shift-channels', '--skip-scope', 'backbone', 'neck']


@pytest.mark.e2e
def test_skipconv_train_interrupted_resume_then_test(tiny_configs, tmp_path, mmdet_scope):
    work_dir = str(tmp_path / 'work')
    # The interrupted run: it stops after epoch 1 of 2.
    log = _tool('train.py', tiny_configs['dense'], '--work-dir', work_dir, *SKIP_FLAGS, '--cfg-options',
                'train_cfg.max_epochs=1')
    assert 'Epoch(train) [1][4/4]' in log and 'coco/bbox_mAP' in log

    # The dumped config rebuilds the SkipConv model on its own (custom_imports included).
    cfg = Config.fromfile(osp.join(work_dir, 'tiny_dense.py'))
    assert cfg.model.type == 'SkipConvModel' and 'skipconv_det' in cfg.custom_imports.imports
    model = MODELS.build(cfg.model)
    skip = {n: m for n, m in model.named_modules() if isinstance(m, SkipConv2d)}
    assert {n.split('.')[0] for n in skip} == {'backbone', 'neck'}
    assert {(m.skip_pattern, m.shift_channels) for m in skip.values()} == {('grid', True)}

    log = _tool('train.py', tiny_configs['dense'], '--work-dir', work_dir, *SKIP_FLAGS, '--resume')
    assert re.search(r'resumed epoch: 1, iter: 4', log), log[-3000:]
    assert 'Epoch(train) [2][4/4]' in log and 'Epoch(train) [1]' not in log
    ckpt = torch.load(osp.join(work_dir, 'epoch_2.pth'), weights_only=True)
    assert (ckpt['meta']['epoch'], ckpt['meta']['iter']) == (2, 8)
    assert len(ckpt['message_hub']['log_scalars']['train/loss'].data[0]) == 8  # the history carried over
    assert ckpt['state_dict'].keys() == model.state_dict().keys()

    out = str(tmp_path / 'preds.pkl')
    log = _tool('test.py', tiny_configs['dense'], osp.join(work_dir, 'epoch_2.pth'), '--work-dir', work_dir,
                '--out', out, *SKIP_FLAGS)
    assert re.search(r'coco/bbox_mAP: -?\d', log)
    with open(out, 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 4 and all('bboxes' in p['pred_instances'] for p in preds)


@pytest.mark.e2e
def test_torchrun_two_cpu_processes(tiny_configs, tmp_path):
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    log = _run([
        sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', f'--master_port={port}',
        osp.join('tools', 'train.py'), tiny_configs['skipconv'], '--launcher', 'pytorch', '--work-dir',
        str(tmp_path), '--cfg-options', 'train_cfg.max_epochs=1'
    ])
    assert 'Distributed training: True' in log and 'GPU number: 2' in log
    assert 'Epoch(train) [1][2/2]' in log  # 8 images, 2 per process, 2 processes
    assert osp.isfile(tmp_path / 'epoch_1.pth')


@pytest.mark.e2e
def test_amp_trains_skipconv_in_mixed_precision(tiny_configs, tmp_path):
    """--amp: the SkipConvs run under autocast (bfloat16 on the CPU, float16 on CUDA), the weights stay float32,
    and the losses stay finite and fall from where the untrained model starts."""
    cpu = get_device() == 'cpu'
    dtypes = set()

    def record(module, args, out):
        if isinstance(module, SkipConv2d) and module.training:
            dtypes.add(out.dtype)

    hook = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        # A constant lr (no warm-up) so that 12 steps learn something.
        runner = run_train([tiny_configs['skipconv'], '--amp', '--work-dir', str(tmp_path), '--cfg-options',
                            'train_cfg.max_epochs=3', 'param_scheduler.0.start_factor=1.0'])
    finally:
        hook.remove()
    assert type(runner.optim_wrapper).__name__ == ('CPUAmpOptimWrapper' if cpu else 'AmpOptimWrapper')
    assert dtypes == {torch.bfloat16 if cpu else torch.float16}
    assert all(p.dtype == torch.float32 for p in runner.model.parameters())
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    assert len(losses) == 12 and np.isfinite(losses).all()
    assert losses[-4:].mean() < 0.75 * losses[0], losses  # the last epoch against the untrained model
    dumped = Config.fromfile(osp.join(str(tmp_path), 'tiny_skipconv.py'))  # rebuilds with the same wrapper
    assert dumped.optim_wrapper.type == runner.cfg.optim_wrapper.type
    assert 'skipconv_det' in dumped.custom_imports.imports


@pytest.mark.parametrize('parse,argv', [
    (parse_train_args, ['cfg.py', '--skip-pattern', 'grid']),
    (parse_test_args, ['cfg.py', 'ckpt.pth', '--skip-scope', 'backbone']),
    (parse_train_args, ['cfg.py', '--skipconv', '--skip-pattern', 'diagonal']),
])
def test_bad_skip_options_exit_with_usage(parse, argv, capsys):
    with pytest.raises(SystemExit):
        parse(argv)
    assert 'usage:' in capsys.readouterr().err


def test_train_args_mirror_mmdet():
    args = parse_train_args(['cfg.py', '--resume', '--amp', '--local-rank', '1', '--cfg-options', 'a.b=1'])
    assert (args.resume, args.amp, args.local_rank, args.cfg_options) == ('auto', True, 1, {'a.b': 1})
    args = parse_train_args(['cfg.py', '--resume', 'ckpt.pth', '--skipconv', '--skip-scope', 'backbone', 'neck'])
    assert (args.resume, args.skip_pattern, args.skip_scope) == ('ckpt.pth', 'checkerboard', ['backbone', 'neck'])
