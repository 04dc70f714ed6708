# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""``tools/ablation.py``: the accuracy study of SkipConv variants against their dense twin over several seeds (see
:mod:`skipconv_det.apis.ablation`)."""
import argparse
from typing import Any, Dict, List, Optional

import torch

from ..apis.ablation import CLS_VARIANTS, DEFAULT_VARIANTS, DET_VARIANTS, VARIANTS, parse_variant, run_study
from .args import add_cfg_options_arg


def parse_ablation_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Arguments of ``tools/ablation.py``."""
    parser = argparse.ArgumentParser(
        description='Train SkipConv variants and their dense twin for several seeds on the demo sets; print mean ± '
        'std of accuracy with GFLOPs and latency ratios, write JSON and a plot.')
    parser.add_argument('--tasks', nargs='+', choices=list(VARIANTS), default=['det', 'cls'])
    parser.add_argument('--det-variants', nargs='+', type=parse_variant, metavar='NAME[=SPEC]',
                        help=f'detection variants (presets: {"; ".join(DET_VARIANTS)}; default: '
                        f'{"; ".join(DEFAULT_VARIANTS["det"])})')
    parser.add_argument('--cls-variants', nargs='+', type=parse_variant, metavar='NAME[=SPEC]',
                        help=f'classification variants (presets: {"; ".join(CLS_VARIANTS)}; default: '
                        f'{"; ".join(DEFAULT_VARIANTS["cls"])})')
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    parser.add_argument('--work-dir', default='work_dirs/ablation')
    parser.add_argument('--json', help='results file (default: WORK_DIR/ablation.json); runs in it are reused')
    parser.add_argument('--plot', help='accuracy vs FLOPs PNG (default: WORK_DIR/ablation.png)')
    parser.add_argument('--threads', type=int, help='torch CPU threads (default: one per core)')
    parser.add_argument('--latency-repeats', type=int, default=10)
    parser.add_argument('--no-train', action='store_true',
                        help='train nothing: print the table and plot of the runs already in the JSON file')
    det = parser.add_argument_group('detection demo (tools/demo.py)')
    det.add_argument('--data-root', default='data/synthetic_coco')
    det.add_argument('--num-train', type=int, default=600)
    det.add_argument('--num-val', type=int, default=100)
    add_cfg_options_arg(det, 'overrides of the detection config')
    cls = parser.add_argument_group('classification demo (tools/cls_learning_demo.py)')
    cls.add_argument('--cls-data-root', default='data/synthetic_cifar10')
    cls.add_argument('--cls-depth', type=int, default=20)
    cls.add_argument('--cls-epochs', type=int, default=12)
    cls.add_argument('--cls-batch-size', type=int, default=64)
    cls.add_argument('--cls-num-train', type=int, default=3000)
    cls.add_argument('--cls-num-test', type=int, default=500)
    return parser.parse_args(argv)


def run_ablation(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """Run ``tools/ablation.py`` with the given command-line arguments (default: ``sys.argv``); print the tables and
    return the results (as the JSON file holds them)."""
    args = parse_ablation_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    return run_study(args)
