"""DenseWarmupHook: a SkipConv model trains as a dense one for its first epochs, then with its own patterns; the
warm-up config of the classification study builds and switches through mmengine's Runner."""
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
WARMUP_CONFIG = osp.join(ROOT, 'configs', 'demo',
                         'mobilenet-v2-w0.5-skipconv-1x1-warmup6_1xb64-24e_synthetic-cifar10.py')


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


@pytest.mark.e2e
def test_warmup_config_switches_after_its_warmup_epochs(tmp_path):
    from skipconv_det.datasets.synthetic_cls import use_generated_data, write_cifar

    cfg = Config.fromfile(WARMUP_CONFIG)
    check_custom_imports(cfg)
    assert [h.type for h in cfg.custom_hooks] == ['ChannelsLastHook', 'DenseWarmupHook']
    cfg.custom_hooks[1].epochs = 1
    use_generated_data(cfg, write_cifar(str(tmp_path / 'data'), num_train=4, num_test=2), batch_size=2)
    cfg.train_cfg = dict(by_epoch=True, max_epochs=2, val_interval=2)
    cfg.default_hooks.checkpoint = None
    cfg.work_dir = str(tmp_path / 'work')
    runner = Runner.from_cfg(cfg)
    convs = [m for m in runner.model.modules() if isinstance(m, SkipConv2d)]
    assert convs and {m.kernel_size for m in convs} == {(1, 1)}  # the study's '1x1 convs only'
    recorder = _PatternsPerEpoch()
    runner.register_hook(recorder)
    runner.train()
    assert {epoch for epoch, _ in recorder.seen} == {0, 1}
    assert all(patterns == ({'none'} if epoch == 0 else {'checkerboard'}) for epoch, patterns in recorder.seen)
    assert set(_patterns(runner.model)) == {'checkerboard'}
