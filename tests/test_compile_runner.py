"""``compile=True`` (mmengine's config key) through tools/train.py: a tiny SkipConv Faster R-CNN trains with its
backbone and neck compiled (:class:`~skipconv_det.engine.CompileHook`), in one graph per mode, with no graph breaks
and no recompiles that SkipConv causes.

The Runner test compiles with the ``aot_eager`` backend: it traces the forward and backward graphs as inductor does,
without inductor's C++ code generation, which would take most of the test's time on a CPU; ``tools/demo.py
--compile`` trains the demo with inductor.
"""
import logging
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from torch._dynamo.utils import counters

from skipconv_det.cli.train import run_train
from skipconv_det.datasets import SYNTHETIC_COCO_CLASSES, generate_synthetic_coco
from skipconv_det.engine import enable_compile

from .test_tools import ROOT, TINY_CONFIG


@pytest.fixture(scope='module')
def tiny_skipconv_config(tmp_path_factory):
    """The tiny SkipConv Faster R-CNN of tests/test_tools.py on 8 + 4 generated 64x64 images."""
    root = tmp_path_factory.mktemp('tiny_compile')
    data_root = str(root / 'data')
    generate_synthetic_coco(data_root, num_train=8, num_val=4, img_size=(64, 64), max_objects=2)
    path = root / 'tiny_skipconv.py'
    path.write_text(TINY_CONFIG.format(base=osp.join(ROOT, 'configs', 'faster-rcnn_r50-skipconv_fpn_1x_coco.py'),
                                       data_root=data_root, classes=tuple(SYNTHETIC_COCO_CLASSES),
                                       num_classes=len(SYNTHETIC_COCO_CLASSES)))
    return str(path)


class _Messages(logging.Handler):

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def dynamo_recompiles():
    """The messages of dynamo's ``recompiles`` log (one per recompilation, with the guards that failed), from a
    fresh dynamo cache and fresh counters."""
    torch._dynamo.reset()
    counters.clear()
    handler = _Messages()
    logger = logging.getLogger('torch._dynamo.guards.__recompiles')
    torch._logging.set_logs(recompiles=True)
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        torch._logging.set_logs()
        torch._dynamo.reset()


@pytest.mark.e2e
def test_compile_trains_skipconv_detector_in_one_graph(tiny_skipconv_config, tmp_path, dynamo_recompiles):
    # Two ResNet stages (the FPN makes its other levels by pooling): compiling takes most of the test's time, and
    # grows with the number of convs. A constant lr (no warm-up) so that 12 steps learn something.
    runner = run_train([
        tiny_skipconv_config, '--work-dir', str(tmp_path), '--cfg-options', 'compile.backend=aot_eager',
        'model.backbone.num_stages=2', 'model.backbone.strides=(1,2)', 'model.backbone.dilations=(1,1)',
        'model.backbone.out_indices=(0,1)', 'model.neck.in_channels=[8,16]', 'train_cfg.max_epochs=3',
        'train_cfg.val_interval=3', 'param_scheduler.0.start_factor=1.0'
    ])
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    assert len(losses) == 12 and np.isfinite(losses).all()
    assert losses[-4:].mean() < 0.75 * losses[0], losses

    # The hook compiled extract_feat, and mmengine compiled no train_step.
    assert [type(h).__name__ for h in runner.hooks].count('CompileHook') == 1
    assert 'compile' not in runner.cfg and 'train_step' not in vars(runner.model)
    assert 'extract_feat' not in vars(runner.model)  # eager again after the run
    # extract_feat in train mode and in eval mode (validation): two graphs, nothing else, no breaks.
    assert counters['frames']['ok'] == 2 and counters['stats']['unique_graphs'] == 2, dict(counters['stats'])
    assert not counters['graph_break'], dict(counters['graph_break'])
    # The only recompile is validation's (no_grad, eval mode); none names SkipConv's code.
    assert len(dynamo_recompiles) == 1 and 'grad_mode' in dynamo_recompiles[0], dynamo_recompiles
    assert not any('skipconv_det' in message for message in dynamo_recompiles), dynamo_recompiles

    dumped = Config.fromfile(osp.join(str(tmp_path), 'tiny_skipconv.py'))  # rebuilds with the same hook
    assert dumped.custom_hooks[-1] == dict(type='CompileHook', backend='aot_eager') and 'compile' not in dumped


@pytest.mark.parametrize('value,hook', [
    (True, dict(type='CompileHook')),
    (dict(backend='aot_eager', dynamic=False), dict(type='CompileHook', backend='aot_eager', dynamic=False)),
    (None, None),
    (False, None),
])
def test_enable_compile_moves_the_key_into_a_hook(value, hook):
    cfg = Config(dict(model=dict(type='FasterRCNN')) if value is None else dict(model=dict(), compile=value))
    enable_compile(cfg)
    if hook is None:
        assert cfg.get('custom_hooks') is None and cfg.get('compile', None) == value
    else:
        assert cfg.custom_hooks == [hook] and 'compile' not in cfg
        assert 'skipconv_det' in cfg.custom_imports.imports
        enable_compile(cfg)  # once only
        assert cfg.custom_hooks == [hook]


def test_enable_compile_rejects_other_values():
    with pytest.raises(TypeError, match='compile should be'):
        enable_compile(Config(dict(compile='inductor')))
