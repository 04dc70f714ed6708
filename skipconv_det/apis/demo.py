# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""The logic behind ``tools/demo.py`` (``make demo``, run by :mod:`skipconv_det.cli.demo`): SkipConv vs dense
Faster R-CNN, end to end, on a laptop.

Each of the ``configs/demo/`` models is trained from scratch with mmengine's Runner on the synthetic shapes dataset
(:mod:`skipconv_det.datasets.synthetic_coco`), evaluated with mmdet's CocoMetric on the val split, and measured: its
FLOPs (mmengine.analysis, per component) and its inference time on one val image. :func:`format_table` puts the
models side by side.
"""
import copy
import os.path as osp
import time
from typing import Any, Dict, List, Optional

from mmengine.config import Config
from mmengine.runner import Runner

from ..analysis import get_model_complexity, model_latency
from ..engine import enable_compile
from ..inference import optimize_for_inference

# The SkipConv model is the placement tools/plan.py chose at the uniform checkerboard's FLOPs (0.62x): over the
# accuracy study's seeds it keeps the dense model's mAP, where uniform checkerboard loses some (README, "Planned
# placement"). The uniform model is ...-skipconv_fpn_...: `tools/demo.py --configs NAME=CONFIG ...` trains any.
DEMO_CONFIGS = {
    'dense': 'configs/demo/faster-rcnn_r18-w16-scratch_fpn_1xb8-6e_synthetic-coco.py',
    'skipconv': 'configs/demo/faster-rcnn_r18-w16-scratch-skipconv-plan0.62_fpn_1xb8-6e_synthetic-coco.py',
}
_METRICS = ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75')


def demo_config(config: str, work_dir: str, data_root: str, seed: int, cfg_options: Optional[dict]) -> Config:
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
        ``latency`` (see :func:`~skipconv_det.analysis.model_latency`, 'predict' mode, batch of one, of the model
        as deployed: :func:`skipconv_det.optimize_for_inference`). A
        ``compile`` key compiles the backbone and neck for training and validation
        (:func:`~skipconv_det.engine.enable_compile`); FLOPs and latency are measured on the eager model.
    """
    enable_compile(cfg)
    runner = Runner.from_cfg(cfg)
    start = time.perf_counter()
    runner.train()
    train_time = time.perf_counter() - start
    # mmengine's train loop always validates after its last epoch, and its RuntimeInfoHook keeps the metrics as
    # 'val/<name>' scalars: read them there rather than evaluating twice.
    scalars = runner.message_hub.log_scalars
    inputs, data_samples = _one_val_image(runner)
    complexity = get_model_complexity(runner.model, inputs, data_samples)
    # Latency as deployed: BN folded, SkipConv features in the lattice domain (a dense model is only folded).
    deployed = optimize_for_inference(copy.deepcopy(runner.model))
    latency = model_latency(deployed, inputs, data_samples, mode='predict', warmup=3, repeats=latency_repeats)
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
