# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""``tools/test.py``: MMDetection's test tool for any OpenMMLab config, plus ``--skipconv`` (see
:mod:`skipconv_det.cli.train`)."""
import argparse
from typing import List, Optional

from mmengine.config import Config
from mmengine.registry import METRICS

from ..datasets.checks import check_datasets
from ..engine import enable_lattice_inference, readable_checkpoint_errors
from .args import parse_skipconv_args
from .runner import add_runner_args, build_runner, load_config, process_group_teardown

# How each library's visualization hook is switched on and told where to write (mmdet's DetVisualizationHook,
# mmpretrain's VisualizationHook), and the metric that dumps predictions for --out (mmengine's generic one
# elsewhere).
_VISUALIZATION_KEYS = {'mmdet': ('draw', 'test_out_dir'), 'mmpretrain': ('enable', 'out_dir')}
_DUMP_METRIC = {'mmdet': 'DumpDetResults'}


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
    parser.add_argument('--optimize-for-inference', action='store_true',
                        help='fold BN and run SkipConv features in the lattice domain '
                        '(skipconv_det.optimize_for_inference), as mmdet 2.x\'s --fuse-conv-bn folded BN')
    add_runner_args(parser)
    return parser


def parse_test_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Arguments of ``tools/test.py``: MMDetection's, plus the SkipConv group (argparse exits with a usage message
    on an error)."""
    return parse_skipconv_args(_test_parser(), argv)


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
    cfg = load_config(args)
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
    if args.optimize_for_inference:
        enable_lattice_inference(cfg)
    runner = build_runner(cfg, args)
    if args.out is not None:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ValueError('The dump file (--out) must be a pkl file.')
        dump_type = _DUMP_METRIC.get(cfg.get('default_scope'), 'DumpResults')
        runner.test_evaluator.metrics.append(METRICS.build(dict(type=dump_type, out_file_path=args.out)))
    with process_group_teardown(), readable_checkpoint_errors():
        return runner.test()
