# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""``tools/demo.py`` (``make demo``): generate the synthetic COCO dataset, train the dense and the SkipConv Faster
R-CNN of ``configs/demo/`` on it from scratch, evaluate both, count their FLOPs, time their inference, print one
table and write it as JSON next to the checkpoints and logs (see :mod:`skipconv_det.apis.demo`)."""
import argparse
import json
import os.path as osp
import time
from typing import Any, Dict, Optional, Sequence

import torch
from mmengine.config import DictAction

from ..apis.demo import DEMO_CONFIGS, demo_config, format_table, train_and_measure
from ..datasets.synthetic_coco import generate_synthetic_coco
from ..engine import enable_amp
from .args import add_cfg_options_arg


def build_demo_parser() -> argparse.ArgumentParser:
    """Arguments of ``tools/demo.py``."""
    parser = argparse.ArgumentParser(
        description='Generate the synthetic COCO dataset, train and evaluate a dense and a SkipConv Faster R-CNN '
        'on it, and compare FLOPs, latency and bbox mAP.')
    parser.add_argument('--work-dir', default='work_dirs/demo', help='where checkpoints, logs and results go')
    parser.add_argument('--data-root', default='data/synthetic_coco', help='where the dataset is generated')
    parser.add_argument('--num-train', type=int, default=600, help='training images to generate')
    parser.add_argument('--num-val', type=int, default=100, help='validation images to generate')
    parser.add_argument('--seed', type=int, default=0, help='seed of the dataset and of training')
    parser.add_argument('--configs', nargs='+', metavar='NAME=CONFIG', action=DictAction,
                        help=f'models to compare (default: {" ".join(f"{k}={v}" for k, v in DEMO_CONFIGS.items())})')
    parser.add_argument('--threads', type=int, help='torch CPU threads (default: torch\'s, one per core)')
    parser.add_argument('--latency-repeats', type=int, default=20, help='timed inference runs per model')
    parser.add_argument('--amp', action='store_true',
                        help='train in mixed precision, as tools/train.py --amp (bfloat16 on the CPU, float16 on CUDA)')
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile the backbone and neck in training and evaluation, as tools/train.py '
                        '--compile (torch.compile arguments: --cfg-options compile.backend=aot_eager)')
    add_cfg_options_arg(parser, 'override settings of both configs, as in tools/train.py, e.g. train_cfg.max_epochs=2')
    return parser


def run_demo(args: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Run the demo from command-line arguments (see :func:`build_demo_parser`) and return its results."""
    args = build_demo_parser().parse_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    configs = args.configs or DEMO_CONFIGS
    total_start = time.perf_counter()
    steps = len(configs) + 1

    print(f'== [1/{steps}] synthetic COCO dataset -> {args.data_root}', flush=True)
    generate_synthetic_coco(args.data_root, args.num_train, args.num_val, args.seed)
    results = []
    for step, (name, config) in enumerate(configs.items(), start=2):
        print(f'== [{step}/{steps}] train + evaluate {name}: {config}', flush=True)
        cfg = demo_config(config, osp.join(args.work_dir, name), args.data_root, args.seed, args.cfg_options)
        if args.amp:
            enable_amp(cfg)
        if args.compile and not cfg.get('compile', None):
            cfg.compile = True  # train_and_measure turns it into a CompileHook
        results.append(train_and_measure(name, cfg, args.latency_repeats))

    summary = dict(
        results=results,
        threads=torch.get_num_threads(),
        input_shape=results[0]['complexity']['input_shape'],
        total_time_s=round(time.perf_counter() - total_start, 1),
        args=vars(args))
    out_file = osp.join(args.work_dir, 'demo_results.json')
    with open(out_file, 'w', encoding='utf-8') as f:
        json.dump(summary, f, indent=2)

    print(f'\n== SkipConv demo: Faster R-CNN trained from scratch on synthetic COCO '
          f'({args.num_train} train / {args.num_val} val images)')
    print(f'FLOPs: mmengine.analysis (1 multiply-add = 1 FLOP) and latency: median of {args.latency_repeats} '
          f'inference runs, batch of one {summary["input_shape"][2]}x{summary["input_shape"][3]} val image, '
          f'{summary["threads"]} torch threads; bbox mAP: COCO 0.5:0.95 on val.')
    print(format_table(results))
    for res in results:
        print(f'{res["name"]}: checkpoint {res["checkpoint"]}\n'
              f'    log {res["log"]}  (trained in {res["train_time_s"]} s)')
    print(f'results: {out_file}  (total {summary["total_time_s"]} s)')
    return summary
