# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""The logic behind ``tools/demo.py`` (``make demo``): SkipConv vs dense Faster R-CNN, end to end, on a laptop.

1. Generate the synthetic shapes dataset in COCO format (:mod:`skipconv_det.datasets.synthetic_coco`).
2. Train the dense and the SkipConv Faster R-CNN of ``configs/demo/`` with mmengine's Runner, from scratch.
3. Evaluate both with mmdet's CocoMetric on the val split.
4. Count their FLOPs (mmengine.analysis, per component) and time their inference on one val image.
5. Print one table, and write it as JSON next to the checkpoints and logs.
"""
import argparse
import json
import os.path as osp
import time
from typing import Any, Dict, List, Optional, Sequence

import torch
from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from ..analysis import get_model_complexity, model_latency
from ..datasets.synthetic_coco import generate_synthetic_coco

DEMO_CONFIGS = {
    'dense': 'configs/demo/faster-rcnn_r18-w16-scratch_fpn_1xb8-6e_synthetic-coco.py',
    'skipconv': 'configs/demo/faster-rcnn_r18-w16-scratch-skipconv_fpn_1xb8-6e_synthetic-coco.py',
}
_METRICS = ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75')


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
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of both configs, as in tools/train.py, e.g. train_cfg.max_epochs=2')
    return parser


def _demo_config(config: str, work_dir: str, data_root: str, seed: int, cfg_options: Optional[dict]) -> Config:
    """The config with the demo's dataset location, work dir and seed (and any user overrides)."""
    cfg = Config.fromfile(config)
    data_root = osp.join(data_root, '')
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = data_root
    for evaluator in ('val_evaluator', 'test_evaluator'):
        cfg[evaluator].ann_file = osp.join(data_root, 'annotations', 'instances_val.json')
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=seed)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def _one_val_image(runner: Runner):
    """The first val image as the model sees it (after its data preprocessor), for FLOPs and latency."""
    data_batch = next(iter(runner.val_dataloader))
    data_batch = {key: value[:1] for key, value in data_batch.items()}
    data = runner.model.data_preprocessor(data_batch, training=False)
    return data['inputs'], data['data_samples']


def train_and_measure(name: str, cfg: Config, latency_repeats: int = 20) -> Dict[str, Any]:
    """Train one config with mmengine's Runner, evaluate it on val, and measure its FLOPs and latency.

    Args:
        name (str): Label of the model in the results.
        cfg (Config): A full detection config (train, val and evaluator set).
        latency_repeats (int): Timed inference runs. Default: 20.

    Returns:
        dict: ``config``, ``work_dir``, ``checkpoint``, ``log``, ``train_time_s``, ``metrics`` (bbox mAP,
        mAP@50, mAP@75 on val), ``complexity`` (see :func:`~skipconv_det.analysis.get_model_complexity`) and
        ``latency`` (see :func:`~skipconv_det.analysis.model_latency`, 'predict' mode, batch of one).
    """
    runner = Runner.from_cfg(cfg)
    start = time.perf_counter()
    runner.train()
    train_time = time.perf_counter() - start
    # mmengine's train loop always validates after its last epoch, and its RuntimeInfoHook keeps the metrics as
    # 'val/<name>' scalars: read them there rather than evaluating twice.
    scalars = runner.message_hub.log_scalars
    inputs, data_samples = _one_val_image(runner)
    complexity = get_model_complexity(runner.model, inputs, data_samples)
    latency = model_latency(runner.model, inputs, data_samples, mode='predict', warmup=3, repeats=latency_repeats)
    with open(osp.join(runner.work_dir, 'last_checkpoint'), encoding='utf-8') as f:
        checkpoint = f.read().strip()
    return dict(
        name=name,
        config=cfg.filename,
        work_dir=runner.work_dir,
        checkpoint=checkpoint,
        log=osp.join(runner.log_dir, f'{runner.timestamp}.log'),
        train_time_s=round(train_time, 1),
        # CocoMetric returns no keys when the model detects nothing at all: that is an mAP of 0.
        metrics={key: scalars[f'val/coco/{key}'].current() if f'val/coco/{key}' in scalars else 0.0
                 for key in _METRICS},
        complexity=complexity,
        latency=latency)


def format_table(results: List[Dict[str, Any]]) -> str:
    """The comparison as a Markdown table; the last row is each column's ratio of the last model to the first."""
    components = [c for c in results[0]['complexity']['flops'] if c != 'total']
    header = (['model'] + [f'{c} GFLOPs' for c in components] +
              ['total GFLOPs', 'latency ms', 'bbox mAP', 'mAP@50', 'mAP@75'])
    rows = []
    for res in results:
        flops = res['complexity']['flops']
        rows.append([res['name']] + [f'{flops[c] / 1e9:.3f}' for c in components] +
                    [f'{flops["total"] / 1e9:.3f}', f'{res["latency"]["median_ms"]:.1f}'] +
                    [f'{res["metrics"][m]:.3f}' for m in _METRICS])
    if len(results) > 1:
        first, last = results[0], results[-1]
        values = [first['complexity']['flops'][c] for c in components + ['total']]
        values_last = [last['complexity']['flops'][c] for c in components + ['total']]
        ratios = [b / a if a else float('nan') for a, b in zip(values, values_last)]
        ratios.append(last['latency']['median_ms'] / first['latency']['median_ms'])
        ratios += [last['metrics'][m] / first['metrics'][m] if first['metrics'][m] else float('nan')
                   for m in _METRICS]
        rows.append([f'{last["name"]} / {first["name"]}'] + [f'x{r:.3f}' for r in ratios])
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    lines = ['| ' + ' | '.join(str(v).ljust(w) for v, w in zip(row, widths)) + ' |' for row in [header] + rows]
    lines.insert(1, '|' + '|'.join('-' * (w + 2) for w in widths) + '|')
    return '\n'.join(lines)


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
        cfg = _demo_config(config, osp.join(args.work_dir, name), args.data_root, args.seed, args.cfg_options)
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
        print(f'{res["name"]}: checkpoint {res["checkpoint"]}\n    log {res["log"]}  (trained in {res["train_time_s"]} s)')
    print(f'results: {out_file}  (total {summary["total_time_s"]} s)')
    return summary
