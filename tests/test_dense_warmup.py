"""DenseWarmupHook: a SkipConv model trains as a dense one for its first epochs, then with its own patterns; the
warm-up configs of the classification study and of the detection demo build and switch through mmengine's
Runner."""
import glob
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import MMDistributedDataParallel
from mmengine.runner import Runner
from torch import nn

from skipconv_det import SkipConv2d
from skipconv_det.engine import DenseWarmupHook, check_custom_imports

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CLS_WARMUP_CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'demo', '*-warmup*_*cifar10.py')))
DET_WARMUP_CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'demo', '*-warmup*_*coco.py')))


def _model():
    torch.manual_seed(0)
    return nn.Sequential(
        SkipConv2d(3, 4, 3, padding=1, skip_pattern='checkerboard', fill='zero'),
        nn.ReLU(),
        SkipConv2d(4, 4, 1, skip_pattern='grid', shift_channels=True),
        nn.Conv2d(4, 2, 1),
    )


def _runner(model, epoch=0):
    return SimpleNamespace(model=model, epoch=epoch)


def _patterns(model):
    return [m.skip_pattern for m in model.modules() if isinstance(m, SkipConv2d)]


def test_warmup_epochs_run_dense_then_the_models_own_patterns():
    model = _model()
    x = torch.rand(2, 3, 8, 8)
    skipped = model(x)
    dense = model[3](F.conv2d(F.relu(F.conv2d(x, model[0].weight, model[0].bias, padding=1)), model[2].weight,
                              model[2].bias))
    assert not torch.allclose(skipped, dense)

    hook = DenseWarmupHook(epochs=2)
    runner = _runner(model)
    hook.before_train(runner)
    for epoch in (0, 1):
        runner.epoch = epoch
        hook.before_train_epoch(runner)
        assert _patterns(model) == ['none', 'none']
        torch.testing.assert_close(model(x), dense)
    runner.epoch = 2
    hook.before_train_epoch(runner)
    assert _patterns(model) == ['checkerboard', 'grid']
    torch.testing.assert_close(model(x), skipped)
    # The other settings of each layer are never touched.
    assert [(m.shift_channels, m.fill) for m in model.modules() if isinstance(m, SkipConv2d)] == [(False, 'zero'),
                                                                                                  (True, 'linear')]


def test_a_warmup_as_long_as_training_leaves_the_configured_model():
    model = _model()
    hook = DenseWarmupHook(epochs=5)
    runner = _runner(model, epoch=4)
    hook.before_train(runner)
    hook.before_train_epoch(runner)
    assert _patterns(model) == ['none', 'none']
    hook.after_train(runner)
    assert _patterns(model) == ['checkerboard', 'grid']


def test_resume_after_the_warmup_trains_skipconv():
    """A run resumed past the warm-up records the patterns as built and keeps them."""
    model = _model()
    hook = DenseWarmupHook(epochs=2)
    runner = _runner(model, epoch=3)
    hook.before_train(runner)
    hook.before_train_epoch(runner)
    assert _patterns(model) == ['checkerboard', 'grid']


def test_zero_epochs_is_plain_skipconv_training():
    model = _model()
    hook = DenseWarmupHook(epochs=0)
    runner = _runner(model)
    hook.before_train(runner)
    hook.before_train_epoch(runner)
    assert _patterns(model) == ['checkerboard', 'grid']


def test_a_wrapped_model_is_switched():
    model = _model()
    wrapper = MMDistributedDataParallel.__new__(MMDistributedDataParallel)
    nn.Module.__init__(wrapper)
    wrapper.module = model
    hook = DenseWarmupHook(epochs=1)
    runner = _runner(wrapper)
    hook.before_train(runner)
    hook.before_train_epoch(runner)
    assert _patterns(model) == ['none', 'none']


@pytest.mark.parametrize('epochs', [-1, 1.5, '2'])
def test_bad_epochs_are_refused(epochs):
    with pytest.raises(ValueError, match='non-negative int'):
        DenseWarmupHook(epochs=epochs)


class _PatternsPerEpoch(Hook):
    """Records, for each training iteration, the epoch and the patterns the model's SkipConv layers ran with."""

    def __init__(self):
        self.seen = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.seen.append((runner.epoch, set(_patterns(runner.model))))


def test_the_warmup_configs_are_found():
    # Outside the parametrized tests: an empty glob would only skip them.
    assert len(CLS_WARMUP_CONFIGS) >= 2 and len(DET_WARMUP_CONFIGS) >= 2


@pytest.mark.e2e
@pytest.mark.parametrize('config', CLS_WARMUP_CONFIGS, ids=osp.basename)
def test_cls_warmup_configs_switch_after_their_warmup_epochs(config, tmp_path):
    from skipconv_det.datasets.synthetic_cls import use_generated_data, write_cifar

    cfg = Config.fromfile(config)
    check_custom_imports(cfg)
    assert [h.type for h in cfg.custom_hooks] == ['ChannelsLastHook', 'DenseWarmupHook']
    cfg.custom_hooks[1].epochs = 1
    use_generated_data(cfg, write_cifar(str(tmp_path / 'data'), num_train=4, num_test=2), batch_size=2)
    cfg.train_cfg = dict(by_epoch=True, max_epochs=2, val_interval=2)
    cfg.default_hooks.checkpoint = None
    cfg.work_dir = str(tmp_path / 'work')
    runner = Runner.from_cfg(cfg)
    if '-1x1-' in osp.basename(config):  # the study's '1x1 convs only'
        assert {m.kernel_size for m in runner.model.modules() if isinstance(m, SkipConv2d)} == {(1, 1)}
    _check_switch(runner)


@pytest.mark.e2e
@pytest.mark.parametrize('config', DET_WARMUP_CONFIGS, ids=osp.basename)
def test_det_warmup_configs_switch_after_their_warmup_epochs(config, tmp_path):
    from skipconv_det.apis.demo import demo_config
    from skipconv_det.datasets import generate_synthetic_coco

    data_root = str(tmp_path / 'data')
    generate_synthetic_coco(data_root, num_train=4, num_val=2, seed=0)
    cfg = demo_config(config, str(tmp_path / 'work'), data_root, seed=0, cfg_options={
        'train_dataloader.batch_size': 2, 'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False, 'default_hooks.checkpoint': None})
    check_custom_imports(cfg)
    assert [h.type for h in cfg.custom_hooks] == ['DenseWarmupHook']
    cfg.custom_hooks[0].epochs = 1
    cfg.train_cfg = dict(by_epoch=True, max_epochs=2, val_interval=100)
    _check_switch(Runner.from_cfg(cfg))


def _check_switch(runner):
    """Train the runner's 2 epochs: the first with every SkipConv layer dense, the second as built."""
    built = set(_patterns(runner.model))
    assert built and 'none' not in built
    recorder = _PatternsPerEpoch()
    runner.register_hook(recorder)
    runner.train()
    assert {epoch for epoch, _ in recorder.seen} == {0, 1}
    assert all(patterns == ({'none'} if epoch == 0 else built) for epoch, patterns in recorder.seen)
    assert set(_patterns(runner.model)) == built
