# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""``tools/plan.py``: a SkipConv setting per layer of a dense config that meets a FLOPs budget with the least
predicted loss (see :mod:`skipconv_det.apis.plan`).

    python tools/plan.py configs/demo/faster-rcnn_r18-w16-scratch_fpn_1xb8-6e_synthetic-coco.py --flops-ratio 0.62
    python tools/plan.py CONFIG --flops-ratio 0.45 --out configs/my_planned.py --work-dir work_dirs/plan/mine
    python tools/plan.py CONFIG --flops-ratio 0.5 --choices checkerboard grid+shift checkerboard/zero
"""
import argparse
import os.path as osp
import shlex
import sys
from typing import Any, Dict, List, Optional

from ..apis.plan import BN_STATS, DEFAULT_SETTINGS, format_plan, plan_skipconv
from ..models.skip_setting import SkipSetting
from .args import add_cfg_options_arg


def _setting_arg(text: str) -> SkipSetting:
    try:
        return SkipSetting.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_plan_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Arguments of ``tools/plan.py``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='the dense model\'s config file')
    parser.add_argument('--flops-ratio', type=float, required=True,
                        help='budget: the planned model\'s FLOPs over the dense model\'s, e.g. 0.62')
    parser.add_argument('--out', help='planned config to write (default: WORK_DIR/<config>_skipconv-plan<R>.py)')
    parser.add_argument('--work-dir', help='warm-up logs and sensitivity.json (default: work_dirs/plan/<config>)')
    parser.add_argument('--choices', nargs='+', type=_setting_arg, default=list(DEFAULT_SETTINGS),
                        metavar='PATTERN[+shift][/FILL]',
                        help='settings a layer may take besides dense (default: checkerboard grid+shift)')
    parser.add_argument('--scope', nargs='+', metavar='NAME',
                        help='top-level components whose convs are candidates (default: all; prediction layers '
                        'always stay dense)')
    parser.add_argument('--kernel-sizes', nargs='+', type=int, metavar='K',
                        help='only convs of these square kernel sizes are candidates, e.g. 1 for the 1x1 convs of '
                        'a MobileNetV2 (default: every size)')
    parser.add_argument('--warmup-iters', type=int, default=300, help='dense training iterations before measuring')
    parser.add_argument('--batches', type=int, default=4, help='training batches each loss is measured on')
    parser.add_argument('--seed', type=int, default=0, help='seed of the warm-up and of the measurements')
    parser.add_argument('--bn-stats', choices=BN_STATS, default='running',
                        help='what BN layers normalise with while the losses are measured: their running '
                        'statistics (eval mode) or each batch\'s own, as in training; use "batch" when the two '
                        'dense losses the tool logs are far apart (default: running)')
    add_cfg_options_arg(parser)
    args = parser.parse_args(argv)
    if not 0 < args.flops_ratio <= 1:
        parser.error(f'--flops-ratio must lie in (0, 1], got {args.flops_ratio}')
    return args


def run_plan(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """Run ``tools/plan.py`` with the given command-line arguments (default: ``sys.argv``); print the plan and
    return it (see :func:`~skipconv_det.apis.plan.plan_skipconv`)."""
    args = parse_plan_args(argv)
    work_dir = args.work_dir or osp.join('work_dirs', 'plan', osp.splitext(osp.basename(args.config))[0])
    command = 'python tools/plan.py ' + ' '.join(map(shlex.quote, sys.argv[1:] if argv is None else argv))
    result = plan_skipconv(args.config, args.flops_ratio, work_dir, args.out, command=command, settings=args.choices,
                           scope=args.scope, kernel_sizes=args.kernel_sizes, warmup_iters=args.warmup_iters,
                           num_batches=args.batches, seed=args.seed, bn_stats=args.bn_stats,
                           cfg_options=args.cfg_options)
    print(format_plan(result))
    return result
