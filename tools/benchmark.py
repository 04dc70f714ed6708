"""Speed of SkipConv vs dense convolution.

Layer mode (shapes x patterns, SkipConv vs the faster of NCHW and channels_last nn.Conv2d, same run):
    python tools/benchmark.py layer --preset resnet50-3x3
    python tools/benchmark.py layer --preset resnet50-1x1 --kernel-size 1 --backward --json out.json
"""
import argparse
import json

import torch

from skipconv_det.analysis.layer_benchmark import SHAPE_PRESETS, benchmark_layers, format_layer_table


def parse_pattern(text):
    """'grid+shift' -> ('grid', True)."""
    pattern, _, shift = text.partition('+')
    return pattern, shift == 'shift'


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='mode', required=True)
    layer = sub.add_parser('layer', help='time single layers')
    layer.add_argument('--preset', choices=sorted(SHAPE_PRESETS), default='resnet50-3x3')
    layer.add_argument('--kernel-size', type=int, default=None, help='default: 1 for *-1x1 presets, else 3')
    layer.add_argument('--stride', type=int, default=1)
    layer.add_argument('--patterns', nargs='+', type=parse_pattern, default=['checkerboard', 'grid+shift'],
                       help="skip patterns, '+shift' for shift_channels (e.g. grid+shift)")
    layer.add_argument('--backward', action='store_true', help='time forward + backward')
    layer.add_argument('--batch', type=int, default=1)
    layer.add_argument('--device', default='cpu')
    layer.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: all cores)')
    layer.add_argument('--warmup', type=int, default=3)
    layer.add_argument('--repeats', type=int, default=10)
    layer.add_argument('--json', help='also write the rows to this JSON file')
    return parser.parse_args()


def main():
    args = parse_args()
    patterns = [parse_pattern(p) if isinstance(p, str) else p for p in args.patterns]
    kernel = args.kernel_size or (1 if args.preset.endswith('1x1') else 3)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.cuda.get_device_name() if args.device.startswith('cuda') else f'CPU, {torch.get_num_threads()} threads'
    print(f'# torch {torch.__version__}, {device}; median of {args.repeats} after {args.warmup} warm-up')
    rows = benchmark_layers(SHAPE_PRESETS[args.preset], kernel, stride=args.stride, patterns=patterns,
                            backward=args.backward, batch=args.batch, device=args.device, warmup=args.warmup,
                            repeats=args.repeats)
    print(format_layer_table(rows))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(device=device, torch=torch.__version__, rows=rows), f, indent=1)


if __name__ == '__main__':
    main()
