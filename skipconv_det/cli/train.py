# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""``tools/train.py``: MMDetection's train tool for any OpenMMLab config (the config's ``default_scope`` decides
which library builds it: mmdet, mmpretrain, ...), plus ``--skipconv``, which turns the config's model into a
SkipConv one without editing the config, by wrapping ``cfg.model`` in ``SkipConvModel``; exact resume is on.
``--compile`` (or the config key ``compile``) compiles the backbone and neck, not mmengine's whole ``train_step``
(see :mod:`skipconv_det.engine.compile`)."""
import argparse
from typing import List, Optional

from mmengine.runner import Runner

from ..datasets.checks import check_datasets
from ..engine import enable_amp, enable_exact_resume, readable_checkpoint_errors
from .args import parse_skipconv_args
from .runner import add_runner_args, build_runner, load_config, process_group_teardown


def _train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description='Train a model (optionally turned into SkipConv)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--amp', action='store_true', default=False,
                        help='enable automatic-mixed-precision training (float16 on CUDA, bfloat16 on the CPU)')
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile the backbone and neck, as the config key compile=True (which '
                        'tools/train.py also takes: --cfg-options compile=True or compile.backend=aot_eager)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='enable automatically scaling LR.')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='If specify checkpoint path, resume from it, while if not specify, try to auto '
                        'resume from the latest checkpoint in the work directory.')
    add_runner_args(parser)
    return parser


def parse_train_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Arguments of ``tools/train.py``: MMDetection's, plus the SkipConv group (argparse exits with a usage message
    on an error)."""
    return parse_skipconv_args(_train_parser(), argv)


def run_train(argv: Optional[List[str]] = None) -> Runner:
    """Run ``tools/train.py`` with the given command-line arguments (default: ``sys.argv``).

    Returns:
        Runner: The runner, after training.
    """
    args = parse_train_args(argv)
    cfg = load_config(args)
    enable_exact_resume(cfg)
    check_datasets(cfg, splits=('train', 'val'))
    if args.amp:
        enable_amp(cfg)
    if args.compile and not cfg.get('compile', None):
        cfg.compile = True  # build_runner turns it into a CompileHook
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
    runner = build_runner(cfg, args)
    with process_group_teardown(), readable_checkpoint_errors():
        runner.train()
    return runner
