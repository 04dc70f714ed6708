# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""The logic behind ``tools/ablation.py`` (run by :mod:`skipconv_det.cli.ablation`): which SkipConv variants keep
the dense model's accuracy, at what cost.

A study compares variants of a demo model, each trained for several seeds: the detection demo (Faster R-CNN on
synthetic COCO, :mod:`skipconv_det.apis.demo`) and the classification demo models (:data:`CLS_STUDY_MODELS`:
ResNet-20/56, VGG-16-BN and MobileNetV2 on a generated CIFAR-10, :mod:`skipconv_det.apis.cls_demo`).

A variant is the dense demo model converted by one or more :func:`~skipconv_det.models.convert_skipconv` steps
(which components, the :class:`~skipconv_det.models.skip_setting.SkipSetting`, layers left dense, kernel sizes), or
a config file of its own (e.g. written by ``tools/plan.py``) that inherits the dense demo config. Conversion
happens when the model is built, before its weights are initialised, so for one seed every variant starts from the
dense model's own initial weights and sees the same data in the same order: only the convolutions differ.

Each (model, variant, seed) is trained through mmengine's Runner. Results go to a JSON file after every run, and a
run already there (same model, variant, seed and settings) is not trained again, so an interrupted study resumes.
"""
import hashlib
import json
import os
import os.path as osp
import statistics
import time
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch

from ..models.convert import PREDICTION_LAYERS, skipconv_model_cfg
from ..models.skip_setting import SkipSetting
from .cls_demo import CLS_STUDY_MODELS, cls_demo_config


class Step(NamedTuple):
    """One :func:`~skipconv_det.models.convert_skipconv` call: the convs of the ``scope`` components get
    ``setting``; convs matching ``keep_dense`` (fnmatch patterns) stay dense besides the prediction layers, and
    with ``kernel_sizes`` only convs of those kernel sizes (``1`` means 1x1) are converted."""
    scope: Tuple[str, ...]
    setting: SkipSetting = SkipSetting()
    keep_dense: Tuple[str, ...] = ()
    kernel_sizes: Optional[Tuple[int, ...]] = None


class Variant(NamedTuple):
    """A model to compare with its dense twin: the dense demo model converted by ``steps`` (none: the dense model
    itself), or ``config``, a config file trained in its place on the same data and schedule."""
    steps: Tuple[Step, ...] = ()
    config: Optional[str] = None


class DetStudy(NamedTuple):
    """The detection demo's data (:mod:`skipconv_det.datasets.synthetic_coco`) and config overrides."""
    data_root: str = 'data/synthetic_coco'
    num_train: int = 600
    num_val: int = 100
    cfg_options: Optional[dict] = None


class ClsStudy(NamedTuple):
    """The classification demo's data (:func:`~skipconv_det.datasets.synthetic_cls.write_cifar`)."""
    data_root: str = 'data/synthetic_cifar10_hard'
    difficulty: str = 'hard'
    num_train: int = 3000
    num_test: int = 1000


DET_MODEL = 'faster-rcnn'  # the detection demo's one model
_DET_ALL = ('backbone', 'neck', 'rpn_head')
_HEADS = ('neck', 'rpn_head')
_STEM_AND_SHORTCUTS = ('backbone.conv1', '*downsample*')
# The first conv of each classification family: CifarResNet, MobileNetV2 (a ConvModule) and VGG.
_CLS_STEMS = ('backbone.conv1', 'backbone.conv1.conv', 'backbone.features.0.conv')
_LINEAR = SkipSetting('checkerboard', False, 'linear')
_GRID_SHIFT = SkipSetting('grid', True, 'linear')


def _checkerboard(fill: str) -> SkipSetting:
    return SkipSetting('checkerboard', False, fill)


DET_VARIANTS: Dict[str, Variant] = {
    'dense': Variant(),
    **{fill: Variant((Step(_DET_ALL, _checkerboard(fill)), )) for fill in ('zero', 'nearest', 'linear')},
    'backbone zero, neck+rpn linear': Variant((Step(('backbone', ), _checkerboard('zero')), Step(_HEADS, _LINEAR))),
    'backbone zero, neck+rpn nearest': Variant((Step(('backbone', ), _checkerboard('zero')),
                                                Step(_HEADS, _checkerboard('nearest')))),
    'linear, stem+shortcuts dense': Variant((Step(_DET_ALL, _LINEAR, keep_dense=_STEM_AND_SHORTCUTS), )),
    'grid+shift linear': Variant((Step(_DET_ALL, _GRID_SHIFT), )),
    'backbone grid+shift, neck+rpn dense': Variant((Step(('backbone', ), _GRID_SHIFT), )),
}
CLS_VARIANTS: Dict[str, Variant] = {
    'dense': Variant(),
    **{f'checkerboard {fill}': Variant((Step(('backbone', ), _checkerboard(fill)), ))
       for fill in ('zero', 'nearest', 'linear')},
    **{f'grid+shift {fill}': Variant((Step(('backbone', ), SkipSetting('grid', True, fill)), ))
       for fill in ('zero', 'nearest', 'linear')},
    'checkerboard linear, stem+shortcuts dense': Variant((Step(('backbone', ), _LINEAR,
                                                               keep_dense=_STEM_AND_SHORTCUTS), )),
    **{f'{name}, 1x1 convs only': Variant((Step(('backbone', ), setting, kernel_sizes=(1, )), ))
       for name, setting in (('checkerboard linear', _LINEAR), ('checkerboard zero', _checkerboard('zero')),
                             ('grid+shift linear', _GRID_SHIFT))},
    'grid+shift linear, stem dense': Variant((Step(('backbone', ), _GRID_SHIFT, keep_dense=_CLS_STEMS), )),
}
VARIANTS = {'det': DET_VARIANTS, 'cls': CLS_VARIANTS}
DEFAULT_VARIANTS = {
    'det': ['dense', 'zero', 'linear', 'backbone zero, neck+rpn linear'],
    'cls': ['dense', 'checkerboard linear', 'checkerboard zero', 'grid+shift linear'],
}
# MobileNetV2's 3x3 convs are depthwise and most of its FLOPs are 1x1: also SkipConv on the 1x1 convs alone.
DEFAULT_CLS_VARIANTS = {
    model: DEFAULT_VARIANTS['cls'] + [f'{name}, 1x1 convs only' for name in DEFAULT_VARIANTS['cls'] if name != 'dense']
    for model in ('mobilenetv2', 'mobilenetv2-48e')
}
METRICS = {'det': ('bbox_mAP', 'bbox_mAP_75'), 'cls': ('top1', )}


def parse_variant(text: str) -> Tuple[str, Optional[Variant]]:
    """Read a variant: ``NAME`` (a preset: None is returned for it), ``NAME=CONFIG.py`` or
    ``NAME=SCOPES:SETTING[:keep=PATTERNS][:kernel=SIZES][;...]``.

    SETTING is ``PATTERN[+shift][/FILL]`` (:class:`~skipconv_det.models.skip_setting.SkipSetting`); SCOPES,
    PATTERNS (fnmatch patterns of convs left dense) and SIZES are comma-separated. Example:
    ``'mine=backbone:checkerboard/zero;neck,rpn_head:grid+shift:keep=*fpn_convs*'``.

    Raises:
        ValueError: On a step that does not follow the syntax.
    """
    name, sep, spec = text.partition('=')
    if not sep:
        return name, None
    if spec.endswith('.py'):
        return name, Variant(config=spec)
    steps = []
    for part in spec.split(';'):
        fields = part.split(':')
        if len(fields) < 2 or not fields[0]:
            raise ValueError(f'{part!r}: use SCOPES:SETTING[:keep=PATTERNS][:kernel=SIZES]')
        options = dict(field.partition('=')[::2] for field in fields[2:])
        unknown = set(options) - {'keep', 'kernel'}
        if unknown:
            raise ValueError(f'{part!r}: unknown option(s) {", ".join(sorted(unknown))}; use keep= and kernel=')
        kernels = tuple(int(k) for k in options['kernel'].split(',')) if 'kernel' in options else None
        keep = tuple(options['keep'].split(',')) if 'keep' in options else ()
        steps.append(Step(tuple(fields[0].split(',')), SkipSetting.parse(fields[1]), keep, kernels))
    return name, Variant(tuple(steps))


def variant_model_cfg(model: dict, steps: Sequence[Step]) -> dict:
    """``model`` wrapped in one ``SkipConvModel`` per step (the innermost converts first)."""
    for step in steps:
        model = skipconv_model_cfg(model, **step.setting.conversion_kwargs(), scope=list(step.scope),
                                   exclude=list(PREDICTION_LAYERS + step.keep_dense),
                                   kernel_sizes=None if step.kernel_sizes is None else list(step.kernel_sizes))
    return model


def _variant_record(variant: Variant) -> dict:
    """What identifies a variant's runs in the JSON file: its steps, or its config file and that file's content."""
    record = dict(steps=[dict(scope=list(s.scope), setting=str(s.setting), keep_dense=list(s.keep_dense),
                              kernel_sizes=s.kernel_sizes and list(s.kernel_sizes)) for s in variant.steps])
    if variant.config:
        with open(variant.config, 'rb') as f:
            record.update(config=variant.config, config_sha1=hashlib.sha1(f.read()).hexdigest())
    return record


def _run_key(task: str, model: str, variant: str, seed: int, settings: dict) -> str:
    return json.dumps([task, model, variant, seed, settings], sort_keys=True)


def _train_det(variant: Variant, seed: int, det: DetStudy, work_dir: str, latency_repeats: int) -> Dict[str, Any]:
    from .demo import DEMO_CONFIGS, demo_config, train_and_measure

    cfg = demo_config(variant.config or DEMO_CONFIGS['dense'], work_dir, det.data_root, seed, det.cfg_options)
    cfg.model = variant_model_cfg(cfg.model, variant.steps)
    res = train_and_measure('variant', cfg, latency_repeats=latency_repeats)
    return dict(metrics=res['metrics'], flops=res['complexity']['flops']['total'],
                latency_ms=res['latency']['median_ms'], train_time_s=res['train_time_s'])


def _train_cls(model_name: str, variant: Variant, seed: int, cls: ClsStudy, work_dir: str,
               latency_repeats: int) -> Dict[str, Any]:
    from mmengine.runner import Runner

    from ..analysis import dummy_batch, get_model_complexity, model_latency

    cfg = cls_demo_config(variant.config or CLS_STUDY_MODELS[model_name], cls.data_root, work_dir, seed)
    cfg.model = variant_model_cfg(cfg.model, variant.steps)
    runner = Runner.from_cfg(cfg)
    start = time.perf_counter()
    runner.train()  # validates after the last epoch
    train_time = time.perf_counter() - start
    model = runner.model
    inputs, _ = dummy_batch('mmpretrain', (32, 32))
    flops = get_model_complexity(model, inputs)['flops']['total']
    latency = model_latency(model, inputs, mode=None, warmup=3, repeats=latency_repeats)
    return dict(metrics={'top1': runner.message_hub.get_scalar('val/accuracy/top1').current()}, flops=flops,
                latency_ms=latency['median_ms'], train_time_s=round(train_time, 1))


def summarize(runs: List[Dict[str, Any]], task: str, variants: Sequence[str]) -> List[Dict[str, Any]]:
    """Per variant: mean and std over seeds of each metric, and FLOPs and latency as ratios to 'dense' (same
    seed), when the study has dense runs. ``runs`` are the runs of one task and model."""
    dense = {r['seed']: r for r in runs if r['variant'] == 'dense'}
    rows = []
    for variant in variants:
        mine = [r for r in runs if r['variant'] == variant]
        if not mine:
            continue
        row = dict(variant=variant, seeds=sorted(r['seed'] for r in mine))
        for metric in METRICS[task]:
            values = [r['metrics'][metric] for r in sorted(mine, key=lambda r: r['seed'])]
            row[metric] = dict(mean=statistics.fmean(values), std=statistics.stdev(values) if len(values) > 1 else 0.0,
                               values=values)
        for key in ('flops', 'latency_ms'):
            ratios = [r[key] / dense[r['seed']][key] for r in mine if r['seed'] in dense]
            row[f'{key}_ratio'] = statistics.fmean(ratios) if ratios else None
        rows.append(row)
    return rows


def format_summary(rows: List[Dict[str, Any]], task: str) -> str:
    """The summary rows as a Markdown table, then each variant's per-seed values."""
    metrics = METRICS[task]
    header = ['variant', 'seeds'] + [f'{m} (mean ± std)' for m in metrics] + ['GFLOPs ratio', 'latency ratio']
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    fmt = '{:.3f}' if task == 'det' else '{:.1f}'
    for row in rows:
        cells = [row['variant'], str(len(row['seeds']))]
        cells += [f"{fmt.format(row[m]['mean'])} ± {fmt.format(row[m]['std'])}" for m in metrics]
        cells += ['-' if row[k] is None else f'{row[k]:.3f}' for k in ('flops_ratio', 'latency_ms_ratio')]
        lines.append('| ' + ' | '.join(cells) + ' |')
    lines.append('')
    for row in rows:
        values = ', '.join(fmt.format(v) for v in row[metrics[0]]['values'])
        lines.append(f"- {row['variant']}: {metrics[0]} per seed {values} (seeds {row['seeds']})")
    return '\n'.join(lines)


_TITLES = {'det': 'Faster R-CNN, synthetic COCO', 'cls': '{model}, generated CIFAR-10 ({difficulty})'}


def plot_summary(rows_by_model: Dict[Tuple[str, str], List[Dict[str, Any]]], path: str,
                 cls_difficulty: str) -> None:
    """Accuracy (mean ± std over seeds) against the GFLOPs ratio to dense, one panel per (task, model); dense
    marked. ``cls_difficulty`` names the classification set in the titles."""
    import matplotlib
    matplotlib.use('Agg')  # files only, no display
    import matplotlib.pyplot as plt

    panels = [key for key, rows in rows_by_model.items() if rows]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.5), squeeze=False)
    for ax, (task, model) in zip(axes[0], panels):
        metric = METRICS[task][0]
        for row in rows_by_model[task, model]:
            if row['flops_ratio'] is None:
                continue
            dense = row['variant'] == 'dense'
            ax.errorbar(row['flops_ratio'], row[metric]['mean'], yerr=row[metric]['std'], fmt='*' if dense else 'o',
                        markersize=12 if dense else 6, capsize=3, color='black' if dense else None)
            ax.annotate(row['variant'], (row['flops_ratio'], row[metric]['mean']), fontsize=7,
                        xytext=(4, 4), textcoords='offset points')
        ax.set_xlabel('GFLOPs / dense GFLOPs')
        ax.set_ylabel(f'{metric} ({"COCO bbox mAP" if task == "det" else "%"})')
        ax.set_title(_TITLES[task].format(model=model, difficulty=cls_difficulty), fontsize=9)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def resolve_variants(task: str, chosen: Sequence[Tuple[str, Optional[Variant]]]) -> Dict[str, Variant]:
    """Variants by name: presets where ``chosen`` gives a name only (see :func:`parse_variant`).

    Raises:
        ValueError: On an unknown preset.
    """
    presets = VARIANTS[task]
    out = {}
    for name, variant in chosen:
        if variant is None and name not in presets:
            raise ValueError(f'Unknown {task} variant {name!r}; presets: {", ".join(presets)}; or NAME=SPEC.')
        out[name] = variant or presets[name]
    return out


def default_variants(task: str, model: str) -> Dict[str, Variant]:
    """The variants a study of ``model`` runs when none are named."""
    names = DEFAULT_CLS_VARIANTS.get(model, DEFAULT_VARIANTS[task]) if task == 'cls' else DEFAULT_VARIANTS[task]
    return {name: VARIANTS[task][name] for name in names}


def _prepare_data(task: str, det: DetStudy, cls: ClsStudy) -> None:
    """Write a task's demo set with seed 0 for every training seed: the data stay the same, only training varies."""
    if task == 'det':
        from ..datasets.synthetic_coco import generate_synthetic_coco
        generate_synthetic_coco(det.data_root, det.num_train, det.num_val, 0)
    else:
        from ..datasets.synthetic_cls import write_cifar
        write_cifar(cls.data_root, cls.num_train, cls.num_test, seed=0, difficulty=cls.difficulty)


def run_study(variants: Dict[Tuple[str, str], Dict[str, Variant]],
              seeds: Sequence[int],
              work_dir: str,
              json_path: Optional[str] = None,
              plot_path: Optional[str] = None,
              det: DetStudy = DetStudy(),
              cls: ClsStudy = ClsStudy(),
              latency_repeats: int = 10,
              train: bool = True,
              merge: Sequence[str] = ()) -> Dict[str, Any]:
    """Train each (task, model, variant, seed) the JSON file lacks, then print the tables and write the plot.

    Args:
        variants (dict): Per ``(task, model)`` — ``('det', DET_MODEL)`` or ``('cls', name)`` with a name of
            :data:`CLS_STUDY_MODELS` — the variants to train, by name.
        seeds (Sequence[int]): Training seeds; every variant is trained with each.
        work_dir (str): Logs and checkpoints, one folder per run.
        json_path (str, optional): Results file; runs already in it are reused. Default: ``WORK_DIR/ablation.json``.
        plot_path (str, optional): Accuracy-vs-FLOPs PNG. Default: ``WORK_DIR/ablation.png``.
        det (DetStudy): The detection demo's data and config overrides.
        cls (ClsStudy): The classification demo's data.
        latency_repeats (int): Timed inference runs per trained model. Default: 10.
        train (bool): False: train nothing, summarise the runs in the JSON file. Default: True.
        merge (Sequence[str]): Results files of other runs of the study (e.g. one process per core, or other
            machines): their runs that the JSON file lacks are added to it, and reused. Default: none.

    Returns:
        dict: ``runs`` (every run in the JSON file) and ``summary`` (per ``'task/model'``, the rows of
        :func:`summarize`), as written to the JSON file.

    Raises:
        ValueError: On an unknown task, classification model or difficulty.
    """
    for task, model in variants:
        known = CLS_STUDY_MODELS if task == 'cls' else (DET_MODEL, ) if task == 'det' else ()
        if model not in known:
            raise ValueError(f'Unknown study part ({task!r}, {model!r}): use (\'det\', {DET_MODEL!r}) or '
                             f'(\'cls\', one of {", ".join(CLS_STUDY_MODELS)})')
        if task == 'cls':
            from ..datasets.synthetic_cls import DIFFICULTIES  # mmpretrain only for classification studies
            if cls.difficulty not in DIFFICULTIES:
                raise ValueError(f'Unknown difficulty {cls.difficulty!r}; use one of {", ".join(DIFFICULTIES)}')
    json_path = json_path or osp.join(work_dir, 'ablation.json')
    plot_path = plot_path or osp.join(work_dir, 'ablation.png')
    os.makedirs(osp.dirname(osp.abspath(json_path)), exist_ok=True)
    if osp.exists(json_path):
        with open(json_path, encoding='utf-8') as f:
            runs = json.load(f)['runs']
    else:
        runs = []
    done = {r['key'] for r in runs}
    for path in merge:
        with open(path, encoding='utf-8') as f:
            added = [r for r in json.load(f)['runs'] if r['key'] not in done]
        runs += added
        done.update(r['key'] for r in added)
        print(f'== {len(added)} runs merged from {path}', flush=True)
    settings = {'det': det._asdict(), 'cls': cls._asdict()}

    prepared = set()
    todo = [(task, model, name, seed) for (task, model), chosen in variants.items() for seed in seeds
            for name in chosen]
    for n, (task, model, name, seed) in enumerate(todo, start=1):
        variant = variants[task, model][name]
        record = _variant_record(variant)
        key = _run_key(task, model, name, seed, dict(settings[task], **record))
        label = f'[{n}/{len(todo)}] {task} {model} {name!r} seed {seed}'
        if key in done:
            print(f'== {label}: in {json_path}, reused', flush=True)
            continue
        if not train:
            print(f'== {label}: not in {json_path}, left out', flush=True)
            continue
        print(f'== {label}: training', flush=True)
        folder = name.replace(' ', '_').replace(',', '').replace('+', '-').replace('/', '-')
        run_dir = osp.join(work_dir, task, model, folder, f'seed{seed}')
        if task not in prepared:
            _prepare_data(task, det, cls)
            prepared.add(task)
        if task == 'det':
            result = _train_det(variant, seed, det, run_dir, latency_repeats)
        else:
            result = _train_cls(model, variant, seed, cls, run_dir, latency_repeats)
        runs.append(dict(key=key, task=task, model=model, variant=name, seed=seed, variant_record=record,
                         settings=settings[task], threads=torch.get_num_threads(), **result))
        done.add(key)
        with open(json_path, 'w', encoding='utf-8') as f:
            json.dump(dict(runs=runs), f, indent=1)
        print(f'   {label}: {result["metrics"]}, {result["train_time_s"]} s', flush=True)

    summary = {}
    for (task, model), chosen in variants.items():
        keys = {_run_key(task, model, name, seed, dict(settings[task], **_variant_record(variant)))
                for name, variant in chosen.items() for seed in seeds}
        current = [r for r in runs if r['key'] in keys]
        summary[task, model] = summarize(current, task, list(chosen))
        print(f'\n== {task} {model}: mean ± std over seeds {list(seeds)}; ratios to dense of the same seed')
        print(format_summary(summary[task, model], task))
    plot_summary(summary, plot_path, cls.difficulty)
    result = dict(runs=runs, summary={f'{task}/{model}': rows for (task, model), rows in summary.items()})
    with open(json_path, 'w', encoding='utf-8') as f:
        json.dump(result, f, indent=1)
    print(f'\nresults: {json_path}\nplot: {plot_path}')
    return result
