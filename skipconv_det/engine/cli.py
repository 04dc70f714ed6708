# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""The logic behind ``tools/train.py`` and ``tools/test.py``.

Same flags and behaviour as MMDetection's tools of the same name, for any OpenMMLab config (the config's
``default_scope`` decides which library builds it: mmdet, mmpretrain, ...), plus ``--skipconv``, which turns the
config's model into a SkipConv one without editing the config, by wrapping ``cfg.model`` in ``SkipConvModel``.
"""
import argparse
import os
import os.path as osp
from typing import List, Optional

import torch
import torch.distributed as torch_dist
from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.registry import METRICS, RUNNERS
from mmengine.runner import Runner

from ..models import skipconv_model_cfg
from ..ops import FILLS, SKIP_PATTERNS
from .checks import add_custom_import, check_custom_imports, check_datasets
from .resume import enable_exact_resume

# How each library's visualization hook is switched on and told where to write (mmdet's DetVisualizationHook,
# mmpretrain's VisualizationHook), and the metric that dumps predictions for --out (mmengine's generic one
# elsewhere).
_VISUALIZATION_KEYS = {'mmdet': ('draw', 'test_out_dir'), 'mmpretrain': ('enable', 'out_dir')}
_DUMP_METRIC = {'mmdet': 'DumpDetResults'}


def _add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair in xxx=yyy format will be merged '
        'into config file. If the value to be overwritten is a list, it should be like key="[a,b]" or '
        'key=a,b It also allows nested list/tuple values, e.g. key="[(a,b),(c,d)]" Note that the quotation '
        'marks are necessary and that no white space is allowed.')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher')
    # When using PyTorch version >= 2.0.0, the `torch.distributed.launch` will pass the `--local-rank`
    # parameter to `tools/train.py` instead of `--local_rank`.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    group = parser.add_argument_group('SkipConv', 'turn the config\'s model into a SkipConv one')
    group.add_argument('--skipconv', action='store_true',
                       help='convert the model\'s nn.Conv2d layers to SkipConv2d (prediction layers stay dense)')
    group.add_argument('--skip-pattern', choices=SKIP_PATTERNS, default='checkerboard',
                       help='pattern of computed output positions (default: checkerboard)')
    group.add_argument('--shift-channels', action='store_true',
                       help='shift the pattern per output-channel group (recommended with grid)')
    group.add_argument('--skip-scope', nargs='+', metavar='NAME',
                       help='top-level model components to convert, e.g. backbone neck rpn_head (default: all)')
    group.add_argument('--fill', choices=FILLS, default='linear',
                       help='what skipped output positions hold (default: linear)')


def _train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description='Train a model (optionally turned into SkipConv)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--amp', action='store_true', default=False,
                        help='enable automatic-mixed-precision training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='enable automatically scaling LR.')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='If specify checkpoint path, resume from it, while if not specify, try to auto '
                        'resume from the latest checkpoint in the work directory.')
    _add_common_args(parser)
    return parser


def _test_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model (optionally turned into SkipConv)')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', type=str,
                        help='dump predictions to a pickle file for offline evaluation')
    parser.add_argument('--show', action='store_true', help='show prediction results')
    parser.add_argument('--show-dir',
                        help='directory where painted images will be saved. If specified, it will be '
                        'automatically saved to the work_dir/timestamp/show_dir')
    parser.add_argument('--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument('--tta', action='store_true', help='test with the config\'s test-time augmentation')
    _add_common_args(parser)
    return parser


def _load_config(args: argparse.Namespace) -> Config:
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.skipconv:
        cfg.model = skipconv_model_cfg(cfg.model, skip_pattern=args.skip_pattern,
                                       shift_channels=args.shift_channels, scope=args.skip_scope, fill=args.fill)
        # The dumped config must rebuild the same model on its own, e.g. with mmdet's own tools/test.py.
        add_custom_import(cfg, 'skipconv_det')
    check_custom_imports(cfg)
    return cfg


def _parse_args(parser: argparse.ArgumentParser, argv: Optional[List[str]]) -> argparse.Namespace:
    """Parse and check; argparse exits with a usage message on an error."""
    args = parser.parse_args(argv)
    if not args.skipconv and (args.skip_pattern != 'checkerboard' or args.shift_channels or args.skip_scope
                              or args.fill != 'linear'):
        parser.error('--skip-pattern, --shift-channels, --skip-scope and --fill only apply with --skipconv; add it.')
    return args


def parse_train_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Arguments of ``tools/train.py``: MMDetection's, plus the SkipConv group."""
    return _parse_args(_train_parser(), argv)


def parse_test_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Arguments of ``tools/test.py``: MMDetection's, plus the SkipConv group."""
    return _parse_args(_test_parser(), argv)


def _setup_cpu_distributed(cfg: Config) -> None:
    """Make ``--launcher pytorch`` work without CUDA (e.g. ``torchrun`` on CPU).

    mmengine's pytorch launcher calls ``torch.cuda.set_device`` and wraps the model in DDP with
    ``device_ids=[LOCAL_RANK]``, both of which fail without a GPU. We start the gloo process group ourselves
    (the Runner then keeps it) and let DDP run on CPU with ``device_ids=None``.
    """
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend='gloo')
    wrapper = cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel')
    cfg.model_wrapper_cfg = dict(wrapper, device_ids=None)


def _build_runner(cfg: Config, args: argparse.Namespace) -> Runner:
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    if args.launcher == 'pytorch' and not torch.cuda.is_available():
        _setup_cpu_distributed(cfg)
    return Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)


def run_train(argv: Optional[List[str]] = None) -> Runner:
    """Run ``tools/train.py`` with the given command-line arguments (default: ``sys.argv``).

    Returns:
        Runner: The runner, after training.
    """
    args = parse_train_args(argv)
    cfg = _load_config(args)
    enable_exact_resume(cfg)
    check_datasets(cfg, splits=('train', 'val'))
    if args.amp:
        if cfg.optim_wrapper.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
            print_log('AMP training is already enabled in your config.', logger='current')
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'enable' not in cfg.get('auto_scale_lr', {}) or 'base_batch_size' not in cfg.auto_scale_lr:
            raise RuntimeError('Can not find "auto_scale_lr" or "auto_scale_lr.enable" or '
                               '"auto_scale_lr.base_batch_size" in your configuration file.')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    runner = _build_runner(cfg, args)
    runner.train()
    return runner


def _enable_visualization(cfg: Config, args: argparse.Namespace) -> None:
    scope = cfg.get('default_scope')
    if 'visualization' not in cfg.get('default_hooks', {}) or scope not in _VISUALIZATION_KEYS:
        raise RuntimeError(f'--show/--show-dir need the "visualization" hook of {", ".join(_VISUALIZATION_KEYS)} '
                           f'in the config\'s default_hooks (default_scope={scope!r}).')
    switch, out_dir = _VISUALIZATION_KEYS[scope]
    hook = cfg.default_hooks.visualization
    hook[switch] = True
    if args.show:
        hook.show = True
        hook.wait_time = args.wait_time
    if args.show_dir:
        hook[out_dir] = args.show_dir


def run_test(argv: Optional[List[str]] = None) -> dict:
    """Run ``tools/test.py`` with the given command-line arguments (default: ``sys.argv``).

    Returns:
        dict: The evaluation metrics.
    """
    args = parse_test_args(argv)
    cfg = _load_config(args)
    check_datasets(cfg, splits=('test',))
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        _enable_visualization(cfg, args)
    if args.tta:
        if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
            raise RuntimeError('--tta needs "tta_model" and "tta_pipeline" in the config.')
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    runner = _build_runner(cfg, args)
    if args.out is not None:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ValueError('The dump file (--out) must be a pkl file.')
        dump_type = _DUMP_METRIC.get(cfg.get('default_scope'), 'DumpResults')
        runner.test_evaluator.metrics.append(METRICS.build(dict(type=dump_type, out_file_path=args.out)))
    return runner.test()
