# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""The logic behind ``tools/ablation.py`` (run by :mod:`skipconv_det.cli.ablation`): which SkipConv variants keep
the dense model's accuracy, at what cost.

A variant is the dense demo model converted by one or more :func:`~skipconv_det.models.convert_skipconv` steps
(which components, pattern, shift_channels, fill, layers left dense). Conversion happens when the model is built,
before its weights are initialised, so for one seed every variant starts from the dense model's own initial
weights and sees the same data in the same order: only the convolutions differ.

Each (variant, seed) is trained through mmengine's Runner on the demo data and schedule: the detection demo
(Faster R-CNN on synthetic COCO, :mod:`skipconv_det.apis.demo`) or the classification demo (a CIFAR ResNet on
generated CIFAR-10, :mod:`skipconv_det.apis.cls_demo`). Results go to a JSON file after every run, and a run
already there (same task, variant, seed and settings) is not trained again, so an interrupted study resumes.
"""
import argparse
import json
import os
import os.path as osp
import statistics
import time
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch

from ..models.convert import PREDICTION_LAYERS, skipconv_model_cfg
from ..ops import FILLS, SKIP_PATTERNS


class Step(NamedTuple):
    """One :func:`convert_skipconv` call: ``scope`` components get ``pattern`` (+ shift_channels) with ``fill``;
    convs matching ``keep_dense`` (fnmatch patterns) stay dense besides the prediction layers."""
    scope: Tuple[str, ...]
    pattern: str = 'checkerboard'
    shift: bool = False
    fill: str = 'linear'
    keep_dense: Tuple[str, ...] = ()


_DET_ALL = ('backbone', 'neck', 'rpn_head')
_HEADS = ('neck', 'rpn_head')
_STEM_AND_SHORTCUTS = ('backbone.conv1', '*downsample*')
DET_VARIANTS: Dict[str, Tuple[Step, ...]] = {
    'dense': (),
    'zero': (Step(_DET_ALL, fill='zero'), ),
    'nearest': (Step(_DET_ALL, fill='nearest'), ),
    'linear': (Step(_DET_ALL, fill='linear'), ),
    'backbone zero, neck+rpn linear': (Step(('backbone', ), fill='zero'), Step(_HEADS, fill='linear')),
    'backbone zero, neck+rpn nearest': (Step(('backbone', ), fill='zero'), Step(_HEADS, fill='nearest')),
    'backbone only (zero)': (Step(('backbone', ), fill='zero'), ),
    'linear, stem+shortcuts dense': (Step(_DET_ALL, fill='linear', keep_dense=_STEM_AND_SHORTCUTS), ),
    'grid+shift linear': (Step(_DET_ALL, 'grid', True, 'linear'), ),
}
CLS_VARIANTS: Dict[str, Tuple[Step, ...]] = {
    'dense': (),
    **{f'checkerboard {fill}': (Step(('backbone', ), fill=fill), ) for fill in FILLS},
    **{f'grid+shift {fill}': (Step(('backbone', ), 'grid', True, fill), ) for fill in FILLS},
    'checkerboard linear, stem+shortcuts dense': (Step(('backbone', ), fill='linear',
                                                       keep_dense=_STEM_AND_SHORTCUTS), ),
}
VARIANTS = {'det': DET_VARIANTS, 'cls': CLS_VARIANTS}
DEFAULT_VARIANTS = {
    'det': ['dense', 'zero', 'linear', 'backbone zero, neck+rpn linear'],
    'cls': ['dense', 'checkerboard zero', 'checkerboard linear', 'grid+shift zero', 'grid+shift linear'],
}
METRICS = {'det': ('bbox_mAP', 'bbox_mAP_75'), 'cls': ('top1', )}


def parse_variant(text: str) -> Tuple[str, Tuple[Step, ...]]:
    """``NAME=SCOPES:PATTERN[+shift]:FILL[:KEEP_DENSE][;...]``, e.g.
    ``'mine=backbone:checkerboard:zero;neck,rpn_head:grid+shift:linear:*fpn_convs*'`` (scopes and keep-dense
    patterns comma-separated); a bare NAME is a preset."""
    name, sep, spec = text.partition('=')
    if not sep:
        return name, ()
    steps = []
    for part in spec.split(';'):
        fields = part.split(':')
        if len(fields) not in (3, 4):
            raise argparse.ArgumentTypeError(f'{part!r}: use SCOPES:PATTERN[+shift]:FILL[:KEEP_DENSE]')
        pattern, _, shift = fields[1].partition('+')
        if pattern not in SKIP_PATTERNS or shift not in ('', 'shift') or fields[2] not in FILLS:
            raise argparse.ArgumentTypeError(f'{part!r}: pattern in {SKIP_PATTERNS} (+shift), fill in {FILLS}')
        keep = tuple(fields[3].split(',')) if len(fields) == 4 else ()
        steps.append(Step(tuple(fields[0].split(',')), pattern, bool(shift), fields[2], keep))
    return name, tuple(steps)


def variant_model_cfg(model: dict, steps: Sequence[Step]) -> dict:
    """``model`` wrapped in one ``SkipConvModel`` per step (the innermost converts first)."""
    for step in steps:
        model = skipconv_model_cfg(model, skip_pattern=step.pattern, shift_channels=step.shift, fill=step.fill,
                                   scope=list(step.scope), exclude=list(PREDICTION_LAYERS + step.keep_dense))
    return model


def _run_key(task: str, variant: str, seed: int, settings: dict) -> str:
    return json.dumps([task, variant, seed, settings], sort_keys=True)


def _train_det(steps: Sequence[Step], seed: int, args, work_dir: str) -> Dict[str, Any]:
    from .demo import DEMO_CONFIGS, demo_config, train_and_measure

    cfg = demo_config(DEMO_CONFIGS['dense'], work_dir, args.data_root, seed, args.cfg_options)
    cfg.model = variant_model_cfg(cfg.model, steps)
    res = train_and_measure('variant', cfg, latency_repeats=args.latency_repeats)
    return dict(metrics=res['metrics'], flops=res['complexity']['flops']['total'],
                latency_ms=res['latency']['median_ms'], train_time_s=res['train_time_s'])


def _train_cls(steps: Sequence[Step], seed: int, args, work_dir: str) -> Dict[str, Any]:
    from mmengine.runner import Runner

    from ..analysis import dummy_batch, get_model_complexity, model_latency
    from .cls_demo import cls_demo_config

    cfg = cls_demo_config('dense', args.cls_data_root, work_dir, depth=args.cls_depth, epochs=args.cls_epochs,
                          batch_size=args.cls_batch_size, seed=seed)
    cfg.model = variant_model_cfg(cfg.model, steps)
    runner = Runner.from_cfg(cfg)
    start = time.perf_counter()
    runner.train()  # validates after the last epoch
    train_time = time.perf_counter() - start
    model = runner.model
    inputs, _ = dummy_batch('mmpretrain', (32, 32))
    flops = get_model_complexity(model, inputs)['flops']['total']
    latency = model_latency(model, inputs, mode=None, warmup=3, repeats=args.latency_repeats)
    return dict(metrics={'top1': runner.message_hub.get_scalar('val/accuracy/top1').current()}, flops=flops,
                latency_ms=latency['median_ms'], train_time_s=round(train_time, 1))


def summarize(runs: List[Dict[str, Any]], task: str, variants: Sequence[str]) -> List[Dict[str, Any]]:
    """Per variant: mean and std over seeds of each metric, and FLOPs and latency as ratios to 'dense' (same
    seed), when the study has dense runs."""
    dense = {r['seed']: r for r in runs if r['task'] == task and r['variant'] == 'dense'}
    rows = []
    for variant in variants:
        mine = [r for r in runs if r['task'] == task and r['variant'] == variant]
        if not mine:
            continue
        row = dict(variant=variant, seeds=sorted(r['seed'] for r in mine), steps=mine[0]['steps'])
        for metric in METRICS[task]:
            values = [r['metrics'][metric] for r in mine]
            row[metric] = dict(mean=statistics.fmean(values), std=statistics.stdev(values) if len(values) > 1 else 0.0,
                               values=values)
        for key in ('flops', 'latency_ms'):
            ratios = [r[key] / dense[r['seed']][key] for r in mine if r['seed'] in dense]
            row[f'{key}_ratio'] = statistics.fmean(ratios) if ratios else None
        rows.append(row)
    return rows


def format_summary(rows: List[Dict[str, Any]], task: str) -> str:
    metrics = METRICS[task]
    header = ['variant', 'seeds'] + [f'{m} (mean ± std)' for m in metrics] + ['GFLOPs ratio', 'latency ratio']
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    fmt = '{:.3f}' if task == 'det' else '{:.1f}'
    for row in rows:
        cells = [row['variant'], str(len(row['seeds']))]
        cells += [f"{fmt.format(row[m]['mean'])} ± {fmt.format(row[m]['std'])}" for m in metrics]
        cells += ['-' if row[k] is None else f'{row[k]:.3f}' for k in ('flops_ratio', 'latency_ms_ratio')]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def plot_summary(rows_by_task: Dict[str, List[Dict[str, Any]]], path: str) -> None:
    """Accuracy (mean ± std over seeds) against the GFLOPs ratio to dense, one panel per task; dense marked."""
    import matplotlib
    matplotlib.use('Agg')  # files only, no display
    import matplotlib.pyplot as plt

    tasks = [t for t, rows in rows_by_task.items() if rows]
    fig, axes = plt.subplots(1, len(tasks), figsize=(6.5 * len(tasks), 4.5), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        metric = METRICS[task][0]
        for row in rows_by_task[task]:
            if row['flops_ratio'] is None:
                continue
            dense = row['variant'] == 'dense'
            ax.errorbar(row['flops_ratio'], row[metric]['mean'], yerr=row[metric]['std'], fmt='*' if dense else 'o',
                        markersize=12 if dense else 6, capsize=3, color='black' if dense else None)
            ax.annotate(row['variant'], (row['flops_ratio'], row[metric]['mean']), fontsize=7,
                        xytext=(4, 4), textcoords='offset points')
        ax.set_xlabel('GFLOPs / dense GFLOPs')
        ax.set_ylabel(f'{metric} ({"COCO bbox mAP" if task == "det" else "%"})')
        ax.set_title('Faster R-CNN, synthetic COCO' if task == 'det' else 'CIFAR ResNet, generated CIFAR-10',
                     fontsize=9)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _variants(task: str, chosen: Optional[List[Tuple[str, Tuple[Step, ...]]]]) -> Dict[str, Tuple[Step, ...]]:
    presets = VARIANTS[task]
    if not chosen:
        return {name: presets[name] for name in DEFAULT_VARIANTS[task]}
    out = {}
    for name, steps in chosen:
        if not steps and name not in presets:
            raise SystemExit(f'Unknown {task} variant {name!r}; presets: {", ".join(presets)}, or NAME=SPEC.')
        out[name] = steps or presets[name]
    return out


def run_study(args: argparse.Namespace) -> Dict[str, Any]:
    """Run the study: train each (task, variant, seed) the JSON file lacks (none with ``no_train``), then print
    the tables and write the plot; return the JSON content.

    Args:
        args (argparse.Namespace): The arguments of ``tools/ablation.py``, from
            :func:`~skipconv_det.cli.ablation.parse_ablation_args`.
    """
    json_path = args.json or osp.join(args.work_dir, 'ablation.json')
    plot_path = args.plot or osp.join(args.work_dir, 'ablation.png')
    os.makedirs(osp.dirname(osp.abspath(json_path)), exist_ok=True)
    saved = json.load(open(json_path, encoding='utf-8')) if osp.exists(json_path) else dict(runs=[])
    runs = saved['runs']
    done = {r['key'] for r in runs}

    settings = {
        'det': dict(num_train=args.num_train, num_val=args.num_val, cfg_options=args.cfg_options),
        'cls': dict(depth=args.cls_depth, epochs=args.cls_epochs, batch_size=args.cls_batch_size,
                    num_train=args.cls_num_train, num_test=args.cls_num_test),
    }
    chosen = {'det': _variants('det', args.det_variants) if 'det' in args.tasks else {},
              'cls': _variants('cls', args.cls_variants) if 'cls' in args.tasks else {}}
    prepared = set()
    todo = [(task, name, seed) for task in args.tasks for seed in args.seeds for name in chosen[task]]
    for n, (task, name, seed) in enumerate(todo, start=1):
        steps = chosen[task][name]
        key = _run_key(task, name, seed, dict(settings[task], steps=[list(s) for s in steps]))
        if key in done:
            print(f'== [{n}/{len(todo)}] {task} {name!r} seed {seed}: in {json_path}, reused', flush=True)
            continue
        if args.no_train:
            print(f'== [{n}/{len(todo)}] {task} {name!r} seed {seed}: not in {json_path}, left out', flush=True)
            continue
        print(f'== [{n}/{len(todo)}] {task} {name!r} seed {seed}: training', flush=True)
        work_dir = osp.join(args.work_dir, task, name.replace(' ', '_').replace(',', '').replace('+', '-'),
                            f'seed{seed}')
        if task not in prepared:
            _prepare_data(task, args)
            prepared.add(task)
        result = (_train_det if task == 'det' else _train_cls)(steps, seed, args, work_dir)
        runs.append(dict(key=key, task=task, variant=name, seed=seed, steps=[s._asdict() for s in steps],
                         settings=settings[task], threads=torch.get_num_threads(), **result))
        done.add(key)
        with open(json_path, 'w', encoding='utf-8') as f:
            json.dump(dict(runs=runs), f, indent=1)
        print(f'   {task} {name!r} seed {seed}: {result["metrics"]}, {result["train_time_s"]} s', flush=True)

    summary = {task: summarize([r for r in runs if r['seed'] in args.seeds and r['settings'] == settings[task]],
                               task, list(chosen[task]))
               for task in args.tasks}
    for task, rows in summary.items():
        print(f'\n== {task}: mean ± std over seeds {args.seeds}; ratios to dense of the same seed')
        print(format_summary(rows, task))
    plot_summary(summary, plot_path)
    result = dict(runs=runs, summary=summary)
    with open(json_path, 'w', encoding='utf-8') as f:
        json.dump(result, f, indent=1)
    print(f'\nresults: {json_path}\nplot: {plot_path}')
    return result


def _prepare_data(task: str, args) -> None:
    """Write a task's demo set with seed 0 for every training seed: the data stay the same, only training varies."""
    if task == 'det':
        from ..datasets.synthetic_coco import generate_synthetic_coco
        generate_synthetic_coco(args.data_root, args.num_train, args.num_val, 0)
    else:
        from ..datasets.synthetic_cls import write_cifar
        write_cifar(args.cls_data_root, args.cls_num_train, args.cls_num_test, seed=0)
