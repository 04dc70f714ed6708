# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""``tools/ablation.py``: the accuracy study of SkipConv variants against their dense twin over several seeds (see
:mod:`skipconv_det.apis.ablation`)."""
import argparse
from typing import Any, Dict, List, Optional

import torch

from ..apis.ablation import (CLS_VARIANTS, DEFAULT_CLS_VARIANTS, DEFAULT_VARIANTS, DET_MODEL, DET_VARIANTS, VARIANTS,
                             ClsStudy, DetStudy, default_variants, parse_variant, resolve_variants, run_study)
from ..apis.cls_demo import CLS_STUDY_MODELS
from .args import add_cfg_options_arg

_DET, _CLS = DetStudy(), ClsStudy()  # the defaults


def _variant_arg(text: str):
    try:
        return parse_variant(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_ablation_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Arguments of ``tools/ablation.py``."""
    parser = argparse.ArgumentParser(
        description='Train SkipConv variants and their dense twin for several seeds on the demo sets; print mean ± '
        'std of accuracy with GFLOPs and latency ratios, write JSON and a plot. A variant is a preset name, '
        'NAME=CONFIG.py (e.g. written by tools/plan.py), or NAME=SCOPES:SETTING[:keep=PATTERNS][:kernel=SIZES][;...] '
        'with SETTING = PATTERN[+shift][/FILL], e.g. "mine=backbone:checkerboard/zero;neck,rpn_head:grid+shift".')
    parser.add_argument('--tasks', nargs='+', choices=list(VARIANTS), default=['det', 'cls'])
    parser.add_argument('--det-variants', nargs='+', type=_variant_arg, metavar='NAME[=SPEC]',
                        help=f'detection variants (presets: {"; ".join(DET_VARIANTS)}; default: '
                        f'{"; ".join(DEFAULT_VARIANTS["det"])})')
    parser.add_argument('--cls-variants', nargs='+', type=_variant_arg, metavar='NAME[=SPEC]',
                        help=f'classification variants (presets: {"; ".join(CLS_VARIANTS)}; default: '
                        f'{"; ".join(DEFAULT_VARIANTS["cls"])}, and for '
                        + '; '.join(f'{m}: also {", ".join(v[len(DEFAULT_VARIANTS["cls"]):])}'
                                    for m, v in DEFAULT_CLS_VARIANTS.items()) + ')')
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    parser.add_argument('--work-dir', default='work_dirs/ablation')
    parser.add_argument('--json', help='results file (default: WORK_DIR/ablation.json); runs in it are reused')
    parser.add_argument('--plot', help='accuracy vs FLOPs PNG (default: WORK_DIR/ablation.png)')
    parser.add_argument('--threads', type=int, help='torch CPU threads (default: one per core)')
    parser.add_argument('--latency-repeats', type=int, default=10)
    parser.add_argument('--merge', nargs='+', default=[], metavar='JSON',
                        help='results files of other runs of the study (say, one process per core): their runs '
                        'are added to the JSON file and reused')
    parser.add_argument('--no-train', action='store_true',
                        help='train nothing: print the table and plot of the runs already in the JSON file')
    det = parser.add_argument_group('detection demo (tools/demo.py)')
    det.add_argument('--data-root', default=_DET.data_root)
    det.add_argument('--num-train', type=int, default=_DET.num_train)
    det.add_argument('--num-val', type=int, default=_DET.num_val)
    add_cfg_options_arg(det, 'overrides of the detection config')
    cls = parser.add_argument_group('classification demo (configs/demo/*cifar10.py)')
    cls.add_argument('--cls-models', nargs='+', choices=list(CLS_STUDY_MODELS), default=['resnet20'],
                     help='models of the study, each with its config in configs/demo/ (default: resnet20)')
    cls.add_argument('--cls-data-root', default=_CLS.data_root)
    cls.add_argument('--cls-difficulty', default=_CLS.difficulty,
                     help='of the generated set: easy or hard (skipconv_det.datasets.synthetic_cls.DIFFICULTIES)')
    cls.add_argument('--cls-num-train', type=int, default=_CLS.num_train)
    cls.add_argument('--cls-num-test', type=int, default=_CLS.num_test)
    return parser.parse_args(argv)


def run_ablation(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """Run ``tools/ablation.py`` with the given command-line arguments (default: ``sys.argv``); print the tables and
    return the results (as the JSON file holds them)."""
    args = parse_ablation_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    parts = ([('det', DET_MODEL)] if 'det' in args.tasks else []) + [('cls', model) for model in args.cls_models
                                                                     if 'cls' in args.tasks]
    chosen = {'det': args.det_variants, 'cls': args.cls_variants}
    try:
        variants = {(task, model): resolve_variants(task, chosen[task]) if chosen[task] else
                    default_variants(task, model)
                    for task, model in parts}
    except ValueError as error:
        raise SystemExit(f'tools/ablation.py: error: {error}') from None
    return run_study(
        variants, args.seeds, args.work_dir, json_path=args.json, plot_path=args.plot,
        det=DetStudy(args.data_root, args.num_train, args.num_val, args.cfg_options),
        cls=ClsStudy(args.cls_data_root, args.cls_difficulty, args.cls_num_train, args.cls_num_test),
        latency_repeats=args.latency_repeats, train=not args.no_train, merge=args.merge)
