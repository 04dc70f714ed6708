"""FLOPs and params of a config's model, dense vs SkipConv, per component (no dataset needed).

    python tools/get_flops.py configs/faster-rcnn_r50-skipconv_fpn_1x_coco.py --shape 800 1216
    python tools/get_flops.py mmdet::retinanet/retinanet_r50_fpn_1x_coco.py --skip-pattern grid --shift-channels
    python tools/get_flops.py CONFIG --json flops.json
"""
import argparse
import json

from mmengine.config import DictAction

import skipconv_det  # noqa: F401  (registers SkipConv and the safe checkpoint globals)
from skipconv_det.analysis.flops import compare_flops, format_flops_table
from skipconv_det.ops import SKIP_PATTERNS


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file (a path, or mmdet::... / mmpretrain::...)')
    parser.add_argument('--shape', type=int, nargs=2, default=[800, 1216], metavar=('H', 'W'),
                        help='input size (default: 800 1216)')
    parser.add_argument('--skip-pattern', choices=SKIP_PATTERNS, default='checkerboard',
                        help='pattern used to convert a dense config (default: checkerboard)')
    parser.add_argument('--shift-channels', action='store_true')
    parser.add_argument('--skip-scope', nargs='+', metavar='NAME', help='components to convert (default: all)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config settings')
    parser.add_argument('--json', help='also write the result to this JSON file')
    return parser.parse_args()


def main():
    args = parse_args()
    result = compare_flops(args.config, tuple(args.shape), args.cfg_options, args.skip_pattern, args.shift_channels,
                           args.skip_scope)
    print(format_flops_table(result))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)


if __name__ == '__main__':
    main()
