# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""FLOPs and params of a config's model, dense vs SkipConv, per component (no dataset needed).

    python tools/get_flops.py configs/faster-rcnn_r50-skipconv_fpn_1x_coco.py --shape 800 1216
    python tools/get_flops.py mmdet::retinanet/retinanet_r50_fpn_1x_coco.py --skip-pattern grid --shift-channels
    python tools/get_flops.py CONFIG --json flops.json
"""
import argparse
import json
from typing import List, Optional

from ..analysis.flops import compare_flops, format_flops_table
from .args import add_cfg_options_arg, add_conversion_args, conversion_kwargs


def parse_get_flops_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Arguments of ``tools/get_flops.py``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file (a path, or mmdet::... / mmpretrain::...)')
    parser.add_argument('--shape', type=int, nargs=2, default=[800, 1216], metavar=('H', 'W'),
                        help='input size (default: 800 1216)')
    add_conversion_args(parser, add_fill_arg=False)
    add_cfg_options_arg(parser, 'override config settings')
    parser.add_argument('--json', help='also write the result to this JSON file')
    return parser.parse_args(argv)


def run_get_flops(argv: Optional[List[str]] = None) -> dict:
    """Run ``tools/get_flops.py`` with the given command-line arguments (default: ``sys.argv``); print the table
    and return the result (as ``--json`` writes it)."""
    args = parse_get_flops_args(argv)
    result = compare_flops(args.config, tuple(args.shape), args.cfg_options, **conversion_kwargs(args))
    print(format_flops_table(result))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)
    return result
