# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""Export a config's model (backbone, backbone + neck, or a classifier) to ONNX and check it in onnxruntime.

    python tools/export_onnx.py configs/faster-rcnn_r50-skipconv_fpn_1x_coco.py --shape 800 1216 \
        --part backbone+neck --out work_dirs/r50_fpn_skipconv.onnx
    python tools/export_onnx.py mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py --skipconv --fill nearest

The model is built from the config (``--checkpoint`` loads weights; otherwise it keeps its initialisation, which is
enough to check the export and time it). With ``--skipconv`` a dense config's convs are converted first
(prediction layers stay dense). BatchNorm is folded into the convs first (exact for SkipConv too; ``--keep-bn``
keeps it). ``--optimize-for-inference`` exports the model in the lattice domain
(``skipconv_det.optimize_for_inference``): 1x1 convolutions and pointwise ops on kept lattices, a map interleaved only
where a layer reads it whole. The tool prints the largest absolute difference between onnxruntime's and
PyTorch's outputs and fails when it exceeds ``--atol``.
"""
import argparse
import sys
from typing import List, Optional

from ..analysis.dummy_data import dummy_batch
from ..analysis.flops import build_model_from_config
from ..models.convert import convert_skipconv
from ..models.export_onnx import PARTS, ModelPart, export_onnx, max_abs_difference, onnx_op_counts, onnxruntime_session
from ..inference import optimize_for_inference
from ..models.fuse import fuse_conv_bn
from .args import add_cfg_options_arg, add_skipconv_args, conversion_kwargs, parse_skipconv_args


def parse_export_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Arguments of ``tools/export_onnx.py``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file (a path, or mmdet::... / mmpretrain::...)')
    parser.add_argument('--checkpoint', help='weights to load (default: the model\'s initialisation)')
    parser.add_argument('--shape', type=int, nargs=2, default=[800, 1216], metavar=('H', 'W'),
                        help='input height and width (the graph has this fixed shape)')
    parser.add_argument('--part', choices=PARTS, default=None,
                        help='what to export (default: backbone+neck for detectors, tensor for classifiers)')
    parser.add_argument('--out', default=None, help='the .onnx file (default: work_dirs/<config name>.onnx)')
    parser.add_argument('--torchscript-exporter', action='store_true',
                        help='use torch.onnx\'s TorchScript exporter instead of the torch.export-based one')
    parser.add_argument('--keep-bn', action='store_true',
                        help='export BatchNorm layers as they are (default: fold them into the convs first, '
                        'exactly, with skipconv_det.models.fuse_conv_bn)')
    parser.add_argument('--optimize-for-inference', action='store_true',
                        help='export the model in the lattice domain (skipconv_det.optimize_for_inference; folds '
                        'BN too)')
    parser.add_argument('--atol', type=float, default=1e-3, help='largest accepted difference from PyTorch')
    add_skipconv_args(parser)
    add_cfg_options_arg(parser)
    return parse_skipconv_args(parser, argv)


def run_export(argv: Optional[List[str]] = None) -> dict:
    """Run ``tools/export_onnx.py``; returns the file, the difference from PyTorch and the graph's op counts."""
    args = parse_export_args(argv)
    model, scope = build_model_from_config(args.config, args.cfg_options)
    if args.checkpoint:
        from mmengine.runner import load_checkpoint
        load_checkpoint(model, args.checkpoint, map_location='cpu')
    if args.skipconv:
        convert_skipconv(model, **conversion_kwargs(args))
    if args.optimize_for_inference:
        if args.keep_bn:
            raise ValueError('--optimize-for-inference folds BatchNorm; it cannot --keep-bn.')
        optimize_for_inference(model)
    elif not args.keep_bn:
        fuse_conv_bn(model.eval())
    part = args.part or ('backbone+neck' if getattr(model, 'with_neck', False) else
                         'tensor' if scope == 'mmpretrain' else 'backbone')
    module = ModelPart(model.eval(), part)
    inputs, _ = dummy_batch(scope, tuple(args.shape))
    name = args.config.split('::')[-1].rsplit('/', 1)[-1].rsplit('.py', 1)[0]
    suffix = ('_skipconv' if args.skipconv else '') + ('_lattice' if args.optimize_for_inference else '')
    out = args.out or f'work_dirs/{name}{suffix}_{part.replace("+", "_")}.onnx'
    export_onnx(module, inputs, out, dynamo=not args.torchscript_exporter)
    diff = max_abs_difference(module, onnxruntime_session(out), inputs)
    ops = onnx_op_counts(out)
    print(f'{out}: {part} of {args.config} at {args.shape[0]}x{args.shape[1]}; onnxruntime vs PyTorch max abs '
          f'difference {diff:.2e} (atol {args.atol:g}); {sum(ops.values())} nodes: '
          + ', '.join(f'{op} {n}' for op, n in sorted(ops.items(), key=lambda item: -item[1])))
    if not diff <= args.atol:
        print(f'onnxruntime differs from PyTorch by {diff:.3g} > --atol {args.atol:g}', file=sys.stderr)
        sys.exit(1)
    return dict(file=out, part=part, max_abs_difference=diff, ops=ops)
