# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""Speed of SkipConv vs dense convolution, on CPU or CUDA.

Layer mode: shapes x patterns, SkipConv vs the faster of NCHW and channels_last nn.Conv2d, in the same run:
    python tools/benchmark.py layer --preset resnet50-3x3 --plot speedup.png
    python tools/benchmark.py layer --preset resnet50-1x1 --backward --json layers.json
    python tools/benchmark.py layer --patterns checkerboard --profile channels_last   # where the time goes

Model mode: a config's model, dense vs SkipConv (its twin by convert/revert), per stage and one training step, and
the peak memory of inference and the training step:
    python tools/benchmark.py model configs/faster-rcnn_r50-skipconv_fpn_1x_coco.py --shape 800 1216
    python tools/benchmark.py model configs/faster-rcnn_r50-skipconv_fpn_1x_coco.py --profile channels_last
"""
import argparse
import json
from typing import List, Optional

import torch

from ..analysis.layer_benchmark import SHAPE_PRESETS, benchmark_layers, format_layer_table, plot_speedups, profile_layer
from ..analysis.model_benchmark import benchmark_model, format_model_table, profile_model, profile_model_onnxruntime
from ..analysis.onnxruntime_timing import LAYER_RUNTIMES, RUNTIMES
from ..models.skip_setting import SkipSetting
from ..ops import DEFAULT_FILL
from .args import add_cfg_options_arg, add_conversion_args, conversion_kwargs


def parse_pattern(text: str) -> SkipSetting:
    """'grid+shift/nearest' -> SkipSetting('grid', True, 'nearest'), a (pattern, shift, fill) tuple: the project's
    one syntax for a SkipConv setting (:class:`~skipconv_det.models.skip_setting.SkipSetting`)."""
    try:
        return SkipSetting.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_benchmark_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Arguments of ``tools/benchmark.py``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument('--device', default='cpu')
    common.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: all cores)')
    common.add_argument('--warmup', type=int, default=3)
    common.add_argument('--repeats', type=int, default=10)
    common.add_argument('--json', help='also write the results to this JSON file')
    sub = parser.add_subparsers(dest='mode', required=True)

    layer = sub.add_parser('layer', parents=[common], help='time single layers')
    layer.add_argument('--preset', choices=sorted(SHAPE_PRESETS), default='resnet50-3x3')
    layer.add_argument('--kernel-size', type=int, default=None, help='default: 1 for *-1x1 presets, else 3')
    layer.add_argument('--stride', type=int, default=1)
    layer.add_argument('--patterns', nargs='+', type=parse_pattern,
                       default=[SkipSetting('checkerboard'), SkipSetting('grid', shift_channels=True)],
                       help="skip patterns, '+shift' for shift_channels, '/FILL' for the fill (default: "
                       f"checkerboard grid+shift, fill {DEFAULT_FILL}), e.g. checkerboard/zero checkerboard/nearest")
    layer.add_argument('--backward', action='store_true', help='time forward + backward')
    layer.add_argument('--runtime', choices=LAYER_RUNTIMES, default='torch',
                       help='time in PyTorch (both layouts), exported to ONNX in onnxruntime (CPU, forward), or in '
                       'PyTorch with the cell assembly SkipConv exports (torch-cells)')
    layer.add_argument('--batch', type=int, default=1)
    layer.add_argument('--plot', help='save a PNG of speedup vs the density limit per layer')
    layer.add_argument('--profile', choices=['nchw', 'channels_last'],
                       help='then show where the time goes: torch.profiler ops of SkipConv and dense in this layout')

    model = sub.add_parser('model', parents=[common], help='time a config\'s model')
    model.add_argument('config', help='config file (a path, or mmdet::... / mmpretrain::...)')
    model.add_argument('--shape', type=int, nargs=2, default=[800, 1216], metavar=('H', 'W'))
    add_conversion_args(model, add_fill_arg=False)
    model.add_argument('--no-train', action='store_true', help='skip the training step')
    model.add_argument('--runtime', choices=RUNTIMES, default='torch',
                       help='onnxruntime: also time the backbone and backbone+neck exported to ONNX in onnxruntime')
    model.add_argument('--no-memory', action='store_true',
                       help='skip the peak memory of inference and the training step (see '
                       'skipconv_det.analysis.memory)')
    model.add_argument('--compile', action='store_true',
                       help='also time backbone and backbone+neck under torch.compile (inductor)')
    model.add_argument('--compile-mode', choices=['opaque', 'traced'], default='opaque',
                       help='how torch.compile sees SkipConv in inference: one custom op (opaque, the default) '
                       'or its PyTorch formulation (traced); see skipconv_det.ops.compile_mode')
    model.add_argument('--layouts', nargs='+', choices=['nchw', 'channels_last'], default=['nchw', 'channels_last'],
                       help='memory layouts to time (default: both; the faster one counts)')
    model.add_argument('--fuse-bn', action='store_true',
                       help='fold BN into the convs first (skipconv_det.models.fuse_conv_bn); inference only')
    model.add_argument('--optimize-for-inference', action='store_true',
                       help='also time the SkipConv model in the lattice domain (skipconv_det.optimize_for_inference, '
                       'a third row against BN-folded dense); implies --fuse-bn')
    model.add_argument('--batch-size', type=int, default=1, help='images per call (default: 1)')
    add_cfg_options_arg(model, 'override config settings')
    model.add_argument('--profile', choices=['nchw', 'channels_last'],
                       help='instead of timing, show where the time goes: torch.profiler ops of one stage, dense '
                       'beside SkipConv, in this layout; with --runtime onnxruntime, onnxruntime\'s node types of the '
                       'exported backbone or backbone+neck instead')
    model.add_argument('--profile-stage', default='backbone+neck',
                       choices=['backbone', 'backbone+neck', 'inference', 'train step'])
    return parser.parse_args(argv)


def run_benchmark(argv: Optional[List[str]] = None) -> dict:
    """Run ``tools/benchmark.py`` with the given command-line arguments (default: ``sys.argv``); print the table
    and return the result (as ``--json`` writes it)."""
    args = parse_benchmark_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = (torch.cuda.get_device_name(args.device)
              if args.device.startswith('cuda') else f'CPU, {torch.get_num_threads()} threads')
    timing = dict(warmup=args.warmup, repeats=args.repeats)
    timed = not (args.mode == 'model' and args.profile)
    print(f'# torch {torch.__version__}, {device}' +
          (f'; median (and min) of {args.repeats} runs after {args.warmup} warm-up, taken in turns' if timed else ''))
    if args.mode == 'layer':
        kernel = args.kernel_size or (1 if args.preset.endswith('1x1') else 3)
        result = benchmark_layers(SHAPE_PRESETS[args.preset], kernel, stride=args.stride, patterns=args.patterns,
                                  backward=args.backward, batch=args.batch, device=args.device,
                                  runtime=args.runtime, num_threads=args.threads, **timing)
        print(format_layer_table(result))
        if args.plot:
            plot_speedups(result, args.plot, title=f'{args.preset}, {device}')
        for cin, cout, h, w in SHAPE_PRESETS[args.preset] if args.profile else ():
            for pattern, shift, fill in args.patterns:
                print(profile_layer(cin, cout, h, w, kernel, args.stride, pattern, shift, fill, args.profile,
                                    args.backward, args.batch, args.device))
    elif args.profile and args.runtime == 'onnxruntime':
        if args.profile_stage not in ('backbone', 'backbone+neck'):
            raise SystemExit('--runtime onnxruntime --profile: --profile-stage is backbone or backbone+neck')
        result = profile_model_onnxruntime(args.config, tuple(args.shape), args.profile_stage, args.cfg_options,
                                           runs=args.repeats, optimize_for_inference=args.optimize_for_inference,
                                           batch_size=args.batch_size, **conversion_kwargs(args))
        print(result)
    elif args.profile:
        result = profile_model(args.config, tuple(args.shape), args.profile_stage, args.profile, args.device,
                               args.cfg_options, runs=args.repeats, fuse_bn=args.fuse_bn,
                               optimize_for_inference=args.optimize_for_inference, batch_size=args.batch_size,
                               **conversion_kwargs(args))
        print(result)
    else:
        result = benchmark_model(args.config, tuple(args.shape), args.device, not args.no_train, args.cfg_options,
                                 fuse_bn=args.fuse_bn, compile=args.compile, compile_mode=args.compile_mode,
                                 memory=not args.no_memory,
                                 layouts=args.layouts,
                                 onnxruntime=args.runtime == 'onnxruntime',
                                 optimize_for_inference=args.optimize_for_inference, batch_size=args.batch_size,
                                 **conversion_kwargs(args), **timing)
        print(format_model_table(result))
    report = dict(device=device, torch=torch.__version__, result=result)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(report, f, indent=1)
    return report
