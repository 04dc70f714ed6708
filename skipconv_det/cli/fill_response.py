# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""How much of a striped texture each SkipConv setting keeps at its skipped positions (no model or data needed).

    python tools/fill_response.py
    python tools/fill_response.py checkerboard/linear row/nearest --periods 2 3 4 8 --angles 0 30 60 90
"""
import argparse
import json
from typing import List, Optional

from ..analysis.fill_response import fill_gains, format_fill_gains
from ..models.skip_setting import SkipSetting


def parse_fill_response_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Arguments of ``tools/fill_response.py``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('settings', nargs='*', type=SkipSetting.parse, metavar='PATTERN[+shift][/FILL]',
                        default=[SkipSetting.parse(s) for s in ('checkerboard/linear', 'checkerboard/nearest')],
                        help='settings to measure (default: checkerboard/linear checkerboard/nearest)')
    parser.add_argument('--periods', type=float, nargs='+', default=[2.5, 3.0, 4.0, 8.0, 16.0],
                        help="the stripes' periods in pixels of the layer's output (default: 2.5 3 4 8 16)")
    parser.add_argument('--angles', type=float, nargs='+', default=[0.0, 15.0, 45.0],
                        help="the stripes' normals, degrees from the x axis (default: 0 15 45)")
    parser.add_argument('--size', type=int, default=64, help='side of the square map (default: 64)')
    parser.add_argument('--json', help='also write the gains to this JSON file')
    return parser.parse_args(argv)


def run_fill_response(argv: Optional[List[str]] = None) -> dict:
    """Run ``tools/fill_response.py``; print the tables and return the gains."""
    args = parse_fill_response_args(argv)
    gains = fill_gains(args.settings, args.periods, args.angles, args.size)
    print(format_fill_gains(gains))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(gains, f, indent=1)
    return gains
