"""Classification with SkipConv through mmpretrain: configs, CIFAR backbones, generated CIFAR/ImageNet-format data.

Every config in configs/classification/ is built by mmpretrain's Runner and runs one training step and one
validation on tiny generated sets read by mmpretrain's own dataset classes; every SkipConv config's FLOPs
(mmengine.analysis) are compared with its dense twin's.
"""
import glob
import math
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmpretrain.datasets import CIFAR10, CIFAR100, ImageNet
from mmpretrain.models.backbones import VGG, MobileNetV2
from mmpretrain.registry import MODELS

from skipconv_det import SkipConv2d, skip_density, skip_mask
from skipconv_det.cli.train import run_train
from skipconv_det.apis.cls_demo import CLS_STUDY_MODELS
from skipconv_det.datasets.synthetic_cls import (DIFFICULTIES, synthetic_shapes, use_generated_data, write_cifar,
                                                 write_imagenet)
from skipconv_det.datasets.unverified_cifar import UnverifiedCIFAR10, UnverifiedCIFAR100
from skipconv_det.engine import check_custom_imports, custom_imports_of
from skipconv_det.models.backbones import CifarResNet, MobileNetV2_CIFAR, NarrowVGG
from ._tiers import full, full_only

CONFIG_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs', 'classification')
CONFIGS = sorted(osp.basename(path) for path in glob.glob(osp.join(CONFIG_DIR, '*.py')))
SKIP_CONFIGS = [name for name in CONFIGS if '-skipconv' in name]
# Dense twins that are mmpretrain's own zoo configs rather than files of ours.
ZOO_TWINS = {
    'resnet50_8xb32_in1k.py': 'mmpretrain::resnet/resnet50_8xb32_in1k.py',
    'mobilenet-v2_8xb32_in1k.py': 'mmpretrain::mobilenet_v2/mobilenet-v2_8xb32_in1k.py',
}


def load_config(name):
    """One of our configs by file name, or a zoo config (``mmpretrain::...``)."""
    return get_config(name) if '::' in name else Config.fromfile(osp.join(CONFIG_DIR, name))


def dense_twin(name):
    """The dense twin of a SkipConv config: its name without the '-skipconv[-pattern]' part."""
    model, rest = name.split('_', 1)
    dense = f"{model.split('-skipconv')[0]}_{rest}"
    return ZOO_TWINS.get(dense, dense)


def dataset_of(name):
    return osp.splitext(name)[0].rsplit('_', 1)[1]  # cifar10, cifar100 or in1k


@pytest.fixture(scope='session')
def data_roots(tmp_path_factory):
    root = tmp_path_factory.mktemp('cls_data')
    return {
        'cifar10': write_cifar(str(root / 'cifar10'), num_train=4, num_test=2),
        'cifar100': write_cifar(str(root / 'cifar100'), num_train=4, num_test=2, cifar100=True),
        'in1k': write_imagenet(str(root / 'imagenet'), num_train=4, num_val=2, size=(40, 48)),
    }


def tiny_config(name, data_root, work_dir, cfg=None):
    """The config (``cfg``, else loaded by name) on generated data, batch 2, one training iteration then a
    validation, ImageNet at 32x32."""
    cfg = cfg or load_config(name)
    use_generated_data(cfg, data_root, batch_size=2)
    sizes = {'RandomResizedCrop': ('scale', 32), 'ResizeEdge': ('scale', 36), 'CenterCrop': ('crop_size', 32)}
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        for transform in loader.dataset.pipeline:
            if transform.type in sizes:
                key, value = sizes[transform.type]
                transform[key] = value
    cfg.train_cfg = dict(by_epoch=False, max_iters=1, val_interval=1)
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger.interval = 1
    cfg.work_dir = str(work_dir)
    return cfg


def _unscoped(cfg):
    """A config value without the ``_scope_`` keys mmengine adds to what it inherits from a zoo config."""
    if isinstance(cfg, dict):
        return {k: _unscoped(v) for k, v in cfg.items() if k != '_scope_'}
    if isinstance(cfg, (list, tuple)):
        return [_unscoped(v) for v in cfg]
    return cfg


def test_every_skipconv_config_has_a_dense_twin():
    assert len(SKIP_CONFIGS) >= 7
    for name in SKIP_CONFIGS:
        twin = dense_twin(name)
        assert '::' in twin or twin in CONFIGS, f'{name} has no dense twin {twin}'
        dense, skip = load_config(twin), load_config(name)
        conv_cfg = skip.model.backbone.pop('conv_cfg')
        assert conv_cfg.type == 'SkipConv'
        assert conv_cfg.skip_pattern != 'grid' or conv_cfg.shift_channels, \
            'grid configs shift channels (docs/operator.md, shift_channels)'
        # Only the convs differ: same model otherwise, same data, same schedule.
        for key in ('model', 'train_dataloader', 'val_dataloader', 'optim_wrapper', 'param_scheduler', 'train_cfg'):
            assert _unscoped(skip[key]) == _unscoped(dense[key]), key


# `make test-fast` trains one SkipConv config; `make test` every config.
@pytest.mark.parametrize('name', full_only(CONFIGS, fast=('vgg16bn-skipconv_8xb16_cifar10.py', )))
def test_config_trains_and_validates(name, data_roots, tmp_path):
    cfg = load_config(name)
    # One custom_imports entry registers everything a config names (and is absent where it names nothing of ours).
    assert custom_imports_of(cfg) in ([], ['skipconv_det'])
    check_custom_imports(cfg)
    runner = Runner.from_cfg(tiny_config(name, data_roots[dataset_of(name)], tmp_path, cfg))
    convs = [m for m in runner.model.modules() if isinstance(m, nn.Conv2d)]
    conv_cfg = runner.cfg.model.backbone.get('conv_cfg')
    if conv_cfg is None:
        assert not any(isinstance(m, SkipConv2d) for m in convs)
    else:  # every conv of the network is a SkipConv with the config's pattern
        assert all(isinstance(m, SkipConv2d) for m in convs)
        assert {(m.skip_pattern, m.shift_channels) for m in convs} == {
            (conv_cfg.skip_pattern, conv_cfg.shift_channels)}
    stem = convs[0].weight.detach().clone()

    runner.train()

    loss = runner.message_hub.get_scalar('train/loss').current()
    assert math.isfinite(loss) and loss > 0
    top1 = runner.message_hub.get_scalar('val/accuracy/top1').current()
    assert 0 <= top1 <= 100
    # The accuracy of this val set: a whole number of its images right.
    num_val = len(runner.val_dataloader.dataset)
    assert num_val == 2 and top1 * num_val / 100 == pytest.approx(round(top1 * num_val / 100))
    # The loss gradient reached the first conv through every (Skip)Conv: weight decay alone would move it by lr * wd.
    optimizer = runner.cfg.optim_wrapper.optimizer
    step = (convs[0].weight.detach() - stem).norm() / stem.norm()
    assert step > 10 * optimizer.lr * optimizer.weight_decay


def _flops(name, size):
    """Total FLOPs, per-module FLOPs and {conv name: (output shape, module)} of a config's model. A CIFAR ResNet is
    counted at depth 20: the same blocks, stages and projection shortcuts as ResNet-56, and 21 convs rather than 57
    for the jit tracer of FlopAnalyzer to record."""
    cfg = load_config(name)
    if cfg.model.backbone.type == 'CifarResNet':
        cfg.model.backbone.depth = 20
    init_default_scope('mmpretrain')
    model = MODELS.build(cfg.model).eval()
    shapes = {}
    hooks = [m.register_forward_hook(lambda mod, args, out, key=key: shapes.__setitem__(key, (out.shape, mod)))
             for key, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    analyzer = FlopAnalyzer(model, torch.rand(1, 3, size, size))
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    total, by_module = analyzer.total(), analyzer.by_module()
    for hook in hooks:
        hook.remove()
    return total, by_module, shapes


# The CIFAR-100 configs have the CIFAR-10 ones' convs (only the linear head differs): count each network once.
@full  # tests/test_analysis_complexity.py and tests/test_plan.py check FLOPs in `make test-fast`
@pytest.mark.parametrize('name', [name for name in SKIP_CONFIGS if dataset_of(name) != 'cifar100'])
def test_flops_follow_skip_density(name):
    """SkipConv FLOPs = dense FLOPs with each conv's share scaled by the fraction of its outputs it keeps."""
    size = 224 if dataset_of(name) == 'in1k' else 32
    dense_total, dense_by_module, _ = _flops(dense_twin(name), size)
    skip_total, _, skip_convs = _flops(name, size)
    saved = 0
    for key, ((_, channels, height, width), conv) in skip_convs.items():
        kept = skip_mask(conv.skip_pattern, channels, height, width, conv.shift_channels).float().mean().item()
        saved += dense_by_module[key] * (1 - kept)
    expected = dense_total - saved
    # The sub-lattice convolutions may compute a few border outputs they then drop: allow 1% above.
    assert expected <= skip_total <= 1.01 * expected
    density = skip_density(next(iter(skip_convs.values()))[1].skip_pattern)
    assert density <= skip_total / dense_total <= density + 0.05, 'nearly all the FLOPs are in the convs'


@full
def test_train_tool_skipconv_flag_converts_an_mmpretrain_config(data_roots, tmp_path):
    """tools/train.py --skipconv on a dense mmpretrain config: every conv becomes a SkipConv, and it trains."""
    config = tmp_path / 'resnet20_cifar10.py'
    cfg = tiny_config('resnet56_8xb16_cifar10.py', data_roots['cifar10'], tmp_path / 'work_dir')
    cfg.model.backbone.depth = 20
    cfg.dump(str(config))

    runner = run_train([str(config), '--skipconv', '--skip-pattern', 'grid', '--shift-channels'])

    convs = [m for m in runner.model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 21 and all(isinstance(m, SkipConv2d) and m.skip_pattern == 'grid' and m.shift_channels
                                    for m in convs)
    assert math.isfinite(runner.message_hub.get_scalar('train/loss').current())
    # The config it dumps rebuilds the SkipConv model on its own.
    dumped = Config.fromfile(osp.join(runner.work_dir, osp.basename(str(config))))
    assert dumped.model.type == 'SkipConvModel' and dumped.model.model.backbone.type == 'CifarResNet'


@pytest.mark.parametrize('cifar100, difficulty', [(False, 'easy'), (True, 'easy'), (False, 'hard')])
def test_generated_cifar_reads_back_through_mmpretrain(cifar100, difficulty, tmp_path):
    num_classes, unverified, stock = ((100, UnverifiedCIFAR100, CIFAR100) if cifar100 else
                                      (10, UnverifiedCIFAR10, CIFAR10))
    write_cifar(str(tmp_path), num_train=7, num_test=3, cifar100=cifar100, seed=5, difficulty=difficulty)
    for split, count, seed in (('train', 7, 5), ('test', 3, 6)):
        dataset = unverified(data_root=str(tmp_path), split=split, download=False)
        images, labels = synthetic_shapes(count, num_classes, seed=seed, difficulty=difficulty)
        infos = [dataset.get_data_info(i) for i in range(len(dataset))]
        np.testing.assert_array_equal(np.stack([info['img'] for info in infos]), images)
        assert [info['gt_label'] for info in infos] == labels.tolist()
    # The stock loaders insist on the official release's md5 sums; they refuse these files instead of reading them.
    with pytest.raises(RuntimeError, match='Cannot find'):
        stock(data_root=str(tmp_path), split='train', download=False)


@pytest.mark.e2e
def test_cifar_writer_runs_from_the_command_line(tmp_path):
    """``python -m skipconv_det.datasets.synthetic_cls`` (the configs' way to write the study's set) writes what
    write_cifar writes, in a fresh interpreter that has imported the package first."""
    out = tmp_path / 'cli'
    subprocess.run([sys.executable, '-m', 'skipconv_det.datasets.synthetic_cls', '--out', str(out), '--num-train',
                    '5', '--num-test', '2', '--difficulty', 'medium', '--seed', '3'], check=True, cwd=str(tmp_path))
    write_cifar(str(tmp_path / 'api'), 5, 2, seed=3, difficulty='medium')
    for name in ('data_batch_1', 'data_batch_5', 'test_batch', 'batches.meta'):
        assert (out / 'cifar-10-batches-py' / name).read_bytes() == \
            (tmp_path / 'api' / 'cifar-10-batches-py' / name).read_bytes()


def test_generated_imagenet_reads_back_through_mmpretrain(tmp_path):
    init_default_scope('mmpretrain')
    write_imagenet(str(tmp_path), num_train=6, num_val=3, num_classes=3, size=(20, 24), seed=2)
    for split, count, seed in (('train', 6, 2), ('val', 3, 3)):
        dataset = ImageNet(data_root=str(tmp_path), split=split, pipeline=[dict(type='LoadImageFromFile')])
        images, labels = synthetic_shapes(count, 3, size=(20, 24), seed=seed)
        assert len(dataset) == count and len(dataset.CLASSES) == 1000
        for i in range(count):
            sample = dataset[i]
            assert sample['gt_label'] == labels[i]
            # JPEG is lossy; loaded images are BGR.
            assert np.abs(sample['img'][..., ::-1].astype(float) - images[i]).mean() < 12


@pytest.mark.parametrize('depth, paper_params', full_only([(20, 0.27e6), (56, 0.85e6), (110, 1.7e6)],
                                                          fast=((20, 0.27e6), ), several=True))
def test_cifar_resnet_matches_he_et_al(depth, paper_params):
    backbone = CifarResNet(depth=depth)
    convs = [m for m in backbone.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == depth - 2 + 1 + 2  # stem + 2 per block, + 2 projection shortcuts; the FC is the last layer
    params = sum(p.numel() for p in backbone.parameters())
    assert abs(params - paper_params) / paper_params < 0.03  # paper: Table 6 (option A shortcuts, with the FC)
    assert [tuple(out.shape) for out in backbone(torch.rand(2, 3, 32, 32))] == [(2, 64, 8, 8)]


def test_mobilenet_v2_cifar_keeps_mobilenet_v2_weights():
    backbone = MobileNetV2_CIFAR(conv_cfg=dict(type='SkipConv'))
    reference = MobileNetV2()
    assert {k: v.shape for k, v in backbone.state_dict().items()} == \
        {k: v.shape for k, v in reference.state_dict().items()}
    assert all(isinstance(m, SkipConv2d) for m in backbone.modules() if isinstance(m, nn.Conv2d))
    assert backbone.conv1.conv.stride == (1, 1)
    assert [tuple(out.shape) for out in backbone(torch.rand(2, 3, 32, 32))] == [(2, 1280, 4, 4)]


def test_hard_set_is_the_same_classes_drawn_harder():
    easy, easy_labels = synthetic_shapes(200, 10, seed=3)
    hard, hard_labels = synthetic_shapes(200, 10, seed=3, difficulty='hard')
    np.testing.assert_array_equal(easy_labels, hard_labels)  # same balanced, shuffled labels
    np.testing.assert_array_equal(hard, synthetic_shapes(200, 10, seed=3, difficulty='hard')[0])  # deterministic
    assert (hard != easy).any(axis=(1, 2, 3)).all()
    assert set(DIFFICULTIES) == {'easy', 'medium', 'hard'}
    # 'medium' is 'hard' with one stripe depth for every image.
    assert DIFFICULTIES['medium']._replace(stripe_depth=DIFFICULTIES['hard'].stripe_depth) == DIFFICULTIES['hard']
    medium = synthetic_shapes(200, 10, seed=3, difficulty='medium')[0]
    assert (medium != hard).any(axis=(1, 2, 3)).all()
    with pytest.raises(ValueError, match='Unknown difficulty'):
        synthetic_shapes(2, 10, difficulty='extreme')


def test_narrow_vgg_is_mmpretrains_vgg_at_a_width():
    full = NarrowVGG(16, base_channels=64, norm_cfg=dict(type='BN'))
    assert {k: v.shape for k, v in full.state_dict().items()} == \
        {k: v.shape for k, v in VGG(16, norm_cfg=dict(type='BN')).state_dict().items()}
    narrow = NarrowVGG(16, base_channels=16, norm_cfg=dict(type='BN'), conv_cfg=dict(type='SkipConv'))
    convs = [m for m in narrow.modules() if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in convs] == [16] * 2 + [32] * 2 + [64] * 3 + [128] * 3 + [128] * 3
    assert all(isinstance(m, SkipConv2d) for m in convs)  # conv_cfg reaches every rebuilt layer
    assert [tuple(out.shape) for out in narrow(torch.rand(2, 3, 32, 32))] == [(2, 128, 1, 1)]
    with pytest.raises(ValueError, match='num_classes=-1'):
        NarrowVGG(16, base_channels=16, num_classes=10)


@pytest.mark.e2e
@pytest.mark.parametrize('model', sorted(CLS_STUDY_MODELS))
def test_study_configs_train_and_validate(model, data_roots, tmp_path):
    """The classification study's CPU-sized configs (configs/demo/) build through mmpretrain's Runner and train."""
    path = osp.join(osp.dirname(osp.dirname(CONFIG_DIR)), CLS_STUDY_MODELS[model])
    cfg = Config.fromfile(path)
    assert cfg.train_dataloader.dataset.type == 'UnverifiedCIFAR10' and custom_imports_of(cfg) == ['skipconv_det']
    runner = Runner.from_cfg(tiny_config(model, data_roots['cifar10'], tmp_path, cfg))
    runner.train()
    assert math.isfinite(runner.message_hub.get_scalar('train/loss').current())
