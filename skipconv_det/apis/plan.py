# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""The logic behind ``tools/plan.py``: a SkipConv setting per layer that meets a FLOPs budget with the least
predicted loss.

1. **Warm-up.** The dense config's model trains for a few hundred iterations with its own data, optimizer and
   schedule (mmengine's Runner), so that its layers compute features worth keeping.
2. **Sensitivity.** On a few fixed training batches, in eval mode and with the same random proposals and samples
   for every measurement, the loss is measured with the dense model, then with each
   candidate layer alone turned into a SkipConv of each candidate setting. A layer's cost of a setting is the
   loss increase; its saving is the multiply-adds of the skipped output positions, counted on the layer's output
   grid at the batch's input size (:func:`~skipconv_det.ops.skip_mask`). BN layers normalise with their running
   statistics (``bn_stats='running'``) or, as in training, with each batch's own (``'batch'``): the running
   statistics lag the weights while the loss still falls fast, and a loss measured with stale ones says more
   about the lag than about the layer.
3. **Choice.** One setting per layer (dense included) such that the model's FLOPs are at most ``flops_ratio`` of
   the dense model's and the sum of the costs is least: a multiple-choice knapsack, solved exactly by dynamic
   programming over the required saving (each saving rounded down, so the budget always holds).
4. **Config.** A config that inherits the dense one and wraps its model in one ``SkipConvModel`` per setting,
   each with the ``include`` list of its layers; it builds with the usual tools (``tools/train.py``,
   ``tools/get_flops.py``, ``tools/ablation.py NAME=FILE.py``).

The sum of single-layer loss increases is a first-order guess: it ignores how layers interact and how training
with SkipConv adapts the weights, which the study of the planned config (``tools/ablation.py``) measures.
Measurements go to ``WORK_DIR/sensitivity.json`` and are reused for other budgets of the same config and
settings.
"""
import contextlib
import copy
import json
import math
import os
import os.path as osp
import random
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from mmengine.config import Config

from ..analysis import get_model_complexity
from ..models.convert import PREDICTION_LAYERS, convert_skipconv, revert_skipconv
from ..models.skip_setting import SkipSetting
from ..ops import SkipConv2d, skip_mask

DEFAULT_SETTINGS = (SkipSetting('checkerboard'), SkipSetting('grid', True))
DENSE = 'dense'  # the choice that leaves a layer a plain convolution
BN_STATS = ('running', 'batch')  # what BN layers normalise with while the losses are measured


class LayerCost(NamedTuple):
    """What one candidate layer costs the model per setting.

    Args:
        name (str): Qualified module name.
        out_shapes (list[tuple[int, int, int]]): Output (C, H, W) of each call at the measured input size (a
            conv shared across levels, e.g. ``RPNHead.rpn_conv``, is called once per feature map).
        flops (dict[str, int]): Multiply-adds per image, all calls together, of the dense layer (:data:`DENSE`)
            and of each setting (by its text, e.g. ``'checkerboard/linear'``).
        loss_increase (dict[str, float]): Mean loss increase over the batches when this layer alone takes the
            setting (:data:`DENSE`: 0).
    """
    name: str
    out_shapes: List[Tuple[int, int, int]]
    flops: Dict[str, int]
    loss_increase: Dict[str, float]


def candidate_layers(model: nn.Module, scope: Optional[Sequence[str]] = None,
                     exclude: Sequence[str] = PREDICTION_LAYERS,
                     kernel_sizes: Optional[Sequence[int]] = None) -> List[str]:
    """Names of the convs that :func:`~skipconv_det.models.convert_skipconv` would convert with this ``scope``,
    ``exclude`` and ``kernel_sizes`` (the plain ``nn.Conv2d`` layers, prediction layers left out)."""
    converted = convert_skipconv(copy.deepcopy(model), scope=scope, exclude=exclude, kernel_sizes=kernel_sizes)
    return [name for name, module in converted.named_modules() if isinstance(module, SkipConv2d)]


def _seed_everything(seed: int) -> None:
    # Proposal and RoI samplers draw from all three generators: the same draws for every measurement.
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def batch_statistics(model: nn.Module) -> Iterator[None]:
    """Within the block, the model's BN layers normalise each batch with its own statistics, as in training,
    and leave their running statistics untouched (``track_running_stats`` off); the rest keeps its mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.training, m.track_running_stats) for m in norms]
    try:
        for m in norms:
            m.training, m.track_running_stats = True, False
        yield
    finally:
        for m, (training, track) in zip(norms, saved):
            m.training, m.track_running_stats = training, track


def mean_loss(model: nn.Module, batches: Sequence[dict], seed: int = 0, bn_stats: str = 'running') -> float:
    """The model's total training loss (``parse_losses`` of its ``'loss'`` forward), averaged over ``batches``
    (preprocessed data dicts), under ``no_grad`` with the same random draws for each batch; BN layers normalise
    with their running statistics (``bn_stats='running'``, the model's own mode) or each batch's (``'batch'``,
    :func:`batch_statistics`)."""
    if bn_stats not in BN_STATS:
        raise ValueError(f'bn_stats must be one of {BN_STATS}, got {bn_stats!r}')
    total = 0.0
    with torch.no_grad(), batch_statistics(model) if bn_stats == 'batch' else contextlib.nullcontext():
        for batch in batches:
            _seed_everything(seed)
            loss, _ = model.parse_losses(model(**batch, mode='loss'))
            total += float(loss)
    return total / len(batches)


class ConvGeometry(NamedTuple):
    """A conv's multiply-adds per output value (C_in / groups x kh x kw) and its output (C, H, W) per call."""
    macs_per_output: int
    out_shapes: List[Tuple[int, int, int]]


def layer_geometry(model: nn.Module, names: Sequence[str], inputs: torch.Tensor,
                   data_samples: Optional[list]) -> Dict[str, ConvGeometry]:
    """Per named conv, its :class:`ConvGeometry` in one forward of the first image (``'tensor'`` mode with its
    data sample; without data samples, ``model(inputs)``)."""
    modules = dict(model.named_modules())
    geometry = {name: ConvGeometry(modules[name].weight[0].numel(), []) for name in names}

    def hook(name):

        def record(conv, args, out):
            geometry[name].out_shapes.append(tuple(out.shape[1:]))

        return record

    handles = [modules[name].register_forward_hook(hook(name)) for name in names]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            if data_samples is None:  # a plain module, as get_model_complexity calls it
                model(inputs[:1])
            else:
                model(inputs[:1], data_samples[:1], mode='tensor')
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return geometry


def setting_flops(geometry: ConvGeometry, setting: Optional[SkipSetting] = None) -> int:
    """Multiply-adds of a conv's computed outputs over all its calls, as mmengine.analysis counts them (output
    values x C_in / groups x kh x kw): every output when dense (``setting`` None), else the kept ones (exact at odd
    sizes and per channel group with shift_channels)."""
    kept = 0
    for c, h, w in geometry.out_shapes:
        kept += c * h * w if setting is None else int(skip_mask(setting.skip_pattern, c, h, w,
                                                                setting.shift_channels).sum())
    return geometry.macs_per_output * kept


def _shapes_text(shapes: Sequence[Sequence[int]]) -> str:
    return ', '.join('x'.join(map(str, shape)) for shape in shapes)


def measure_costs(model: nn.Module,
                  names: Sequence[str],
                  settings: Sequence[SkipSetting],
                  batches: Sequence[dict],
                  geometry: Dict[str, ConvGeometry],
                  seed: int = 0,
                  bn_stats: str = 'running',
                  log=print) -> Tuple[float, List[LayerCost]]:
    """The dense loss and each layer's :class:`LayerCost` (see the module docstring), the model left dense.

    Args:
        model (nn.Module): The warmed-up dense model; its convs are converted one at a time and reverted.
        names (Sequence[str]): Candidate layers.
        settings (Sequence[SkipSetting]): Candidate settings.
        batches (Sequence[dict]): Preprocessed training batches (``data_preprocessor(batch, True)``).
        geometry (dict): :func:`layer_geometry` of the candidates.
        seed (int): Seed of the random draws of every loss evaluation. Default: 0.
        bn_stats (str): What BN layers normalise with (:data:`BN_STATS`, :func:`mean_loss`). Default: 'running'.
        log (callable): Progress lines. Default: print.

    Returns:
        tuple[float, list[LayerCost]]: The dense model's mean loss and the costs, in ``names`` order.
    """
    model.eval()
    base = mean_loss(model, batches, seed, bn_stats)
    other = BN_STATS[1 - BN_STATS.index(bn_stats)]  # logged beside: far apart, the running statistics lag
    log(f'dense loss {base:.4f} on {len(batches)} batches with BN {bn_stats} statistics '
        f'({mean_loss(model, batches, seed, other):.4f} with {other} ones)')
    costs = []
    for n, name in enumerate(names, start=1):
        flops, increase = {DENSE: setting_flops(geometry[name])}, {DENSE: 0.0}
        for setting in settings:
            convert_skipconv(model, include=[name], exclude=(), **setting.conversion_kwargs())
            try:
                increase[str(setting)] = mean_loss(model, batches, seed, bn_stats) - base
            finally:
                revert_skipconv(model)
            flops[str(setting)] = setting_flops(geometry[name], setting)
        costs.append(LayerCost(name, geometry[name].out_shapes, flops, increase))
        log(f'[{n}/{len(names)}] {name} {_shapes_text(geometry[name].out_shapes)}: ' +
            ', '.join(f'{key} {value:+.4f}' for key, value in increase.items() if key != DENSE))
    return base, costs


def choose_settings(costs: Sequence[LayerCost], dense_total: int, flops_ratio: float,
                    resolution: int = 2000) -> Dict[str, str]:
    """One choice per layer (:data:`DENSE` or a setting's text) whose model has at most ``flops_ratio`` of
    ``dense_total`` multiply-adds, with the least sum of loss increases.

    Exact dynamic programming over the saving still required, in ``resolution`` steps; each choice's saving is
    rounded down to a step, so the chosen model always meets the budget. A measured loss decrease counts as no
    change (skipping a layer is not taken to help; such differences are within the measurement's noise).

    Raises:
        ValueError: When even the cheapest setting of every layer cannot meet the budget.
    """
    required = dense_total - flops_ratio * dense_total
    if required <= 0:
        return {cost.name: DENSE for cost in costs}
    step = required / resolution
    inf = math.inf
    best = [0.0] + [inf] * resolution  # best[k]: least cost of a saving of at least k steps (k capped)
    picks: List[List[Tuple[int, str]]] = []  # per layer, per k: (previous k, choice)
    for cost in costs:
        new, back = [inf] * (resolution + 1), [(0, DENSE)] * (resolution + 1)
        for k, value in enumerate(best):
            if value == inf:
                continue
            for choice, flops in cost.flops.items():
                saved = min(resolution, k + math.floor((cost.flops[DENSE] - flops) / step))
                total = value + max(0.0, cost.loss_increase[choice])
                if total < new[saved]:
                    new[saved] = total
                    back[saved] = (k, choice)
        best = new
        picks.append(back)
    if best[resolution] == inf:
        lowest = (dense_total - sum(c.flops[DENSE] - min(c.flops.values()) for c in costs)) / dense_total
        raise ValueError(f'A FLOPs ratio of {flops_ratio} cannot be met: the cheapest setting of every candidate '
                         f'layer gives {lowest:.3f}.')
    plan, k = {}, resolution
    for cost, back in zip(reversed(costs), reversed(picks)):
        k, plan[cost.name] = back[k]
    return {cost.name: plan[cost.name] for cost in costs}


def skipconv_plan_model(model: Any, plan: Dict[str, str]) -> dict:
    """``model`` (a model config) wrapped in one ``SkipConvModel`` per setting of ``plan``, each converting exactly
    its layers (``include``) and nothing else (``exclude=[]``)."""
    by_setting: Dict[str, List[str]] = {}
    for name, choice in plan.items():
        if choice != DENSE:
            by_setting.setdefault(choice, []).append(name)
    for text, names in by_setting.items():
        model = dict(type='SkipConvModel', model=model, **SkipSetting.parse(text).conversion_kwargs(),
                     include=names, exclude=[])
    return model


class _BaseModel:
    """Stands for the base config's model in :func:`format_plan_config`."""

    def __repr__(self) -> str:
        return '{{_base_.model}}'  # mmengine substitutes the base config's value when it loads the file


def _format_value(value: Any, indent: str = '') -> str:
    inner = indent + '    '
    if isinstance(value, dict):
        return 'dict(\n' + ''.join(f'{inner}{key}={_format_value(item, inner)},\n'
                                     for key, item in value.items()) + f'{indent})'
    if isinstance(value, list) and value:
        return '[\n' + ''.join(f'{inner}{_format_value(item, inner)},\n' for item in value) + f'{indent}]'
    return repr(value)


def format_plan_config(base_config: str, out: str, plan: Dict[str, str], header: Sequence[str]) -> str:
    """The text of a config, to be written at ``out``, that inherits ``base_config`` and converts the layers of
    ``plan`` (:func:`skipconv_plan_model` around the base config's model); ``header`` lines become comments."""
    base = base_config if '::' in base_config else osp.relpath(osp.abspath(base_config),
                                                               osp.dirname(osp.abspath(out)))
    model = skipconv_plan_model(_BaseModel(), plan)
    lines = [f'# {line}' for line in header]
    lines += [f"_base_ = '{base}'", "custom_imports = dict(imports=['skipconv_det'], allow_failed_imports=False)"]
    if isinstance(model, dict):  # else every layer stays dense: the base config as it is
        lines += ['', '# One SkipConvModel per setting, each converting exactly the layers it lists.',
                  'model = ' + _format_value(dict(_delete_=True, **model))]
    return '\n'.join(lines) + '\n'


def warm_up(cfg: Config, iters: int, work_dir: str, seed: int = 0):
    """Train ``cfg``'s model for ``iters`` iterations with its own data, optimizer and schedule (no validation,
    no checkpoint); returns the Runner, whose ``model`` and ``train_dataloader`` the measurements use."""
    from mmengine.runner import Runner

    cfg = copy.deepcopy(cfg)
    cfg.work_dir = osp.join(work_dir, 'warmup')
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters)
    for key in ('val_cfg', 'val_dataloader', 'val_evaluator', 'test_cfg', 'test_dataloader', 'test_evaluator'):
        cfg[key] = None
    cfg.default_hooks.checkpoint = None
    cfg.log_processor = dict(type='LogProcessor', window_size=10, by_epoch=False)
    cfg.randomness = dict(seed=seed)
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


def _file_sha1(path: str) -> str:
    import hashlib
    with open(path, 'rb') as f:
        return hashlib.sha1(f.read()).hexdigest()


def measure_config(config: str,
                   work_dir: str,
                   settings: Sequence[SkipSetting] = DEFAULT_SETTINGS,
                   scope: Optional[Sequence[str]] = None,
                   kernel_sizes: Optional[Sequence[int]] = None,
                   warmup_iters: int = 300,
                   num_batches: int = 4,
                   seed: int = 0,
                   bn_stats: str = 'running',
                   cfg_options: Optional[dict] = None,
                   log=print) -> Dict[str, Any]:
    """Warm up ``config``'s dense model and measure every candidate layer's cost (the module docstring's steps 1
    and 2); reuse ``WORK_DIR/sensitivity.json`` when it holds the same measurement.

    Returns:
        dict: ``key`` (what was measured), ``scope`` (the config's default scope), ``input_shape`` (N, C, H, W of
        the first batch), ``dense_flops`` (the warmed-up model's multiply-adds on its first image), ``dense_loss``
        and ``layers`` (:class:`LayerCost` as dicts).
    """
    from ..engine.checks import check_custom_imports

    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    check_custom_imports(cfg)
    key = dict(config=osp.abspath(config), config_sha1=_file_sha1(config), cfg_options=cfg_options,
               settings=[str(s) for s in settings], scope=scope and list(scope),
               kernel_sizes=kernel_sizes and list(kernel_sizes), warmup_iters=warmup_iters, num_batches=num_batches,
               seed=seed, bn_stats=bn_stats)
    path = osp.join(work_dir, 'sensitivity.json')
    if osp.exists(path):
        with open(path, encoding='utf-8') as f:
            saved = json.load(f)
        if saved['key'] == key:
            log(f'measurements reused from {path}')
            return saved
    runner = warm_up(cfg, warmup_iters, work_dir, seed)
    model = runner.model
    loader = iter(runner.train_dataloader)
    batches = [model.data_preprocessor(next(loader), True) for _ in range(num_batches)]
    inputs, samples = batches[0]['inputs'], batches[0]['data_samples']
    names = candidate_layers(model, scope, kernel_sizes=kernel_sizes)
    geometry = layer_geometry(model, names, inputs, samples)
    dense_flops = get_model_complexity(model, inputs[:1], samples[:1])['flops']['total']
    dense_loss, costs = measure_costs(model, names, settings, batches, geometry, seed, bn_stats, log)
    result = dict(key=key, scope=cfg.get('default_scope', 'mmdet'), input_shape=list(inputs.shape),
                  dense_flops=dense_flops, dense_loss=dense_loss, layers=[c._asdict() for c in costs])
    os.makedirs(work_dir, exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(result, f, indent=1)
    return result


def plan_skipconv(config: str,
                  flops_ratio: float,
                  work_dir: str,
                  out: Optional[str] = None,
                  command: str = '',
                  log=print,
                  **measure_kwargs) -> Dict[str, Any]:
    """Plan a per-layer SkipConv config for ``config`` within ``flops_ratio`` of its FLOPs (the module
    docstring's steps), write it and count its FLOPs.

    Args:
        config (str): The dense model's config.
        flops_ratio (float): Budget: the planned model's FLOPs over the dense model's, in (0, 1].
        work_dir (str): Warm-up logs and ``sensitivity.json``.
        out (str, optional): The planned config. Default: ``WORK_DIR/<config name>_skipconv-plan<ratio>.py``.
        command (str): The command line, recorded in the planned config's header. Default: ''.
        log (callable): Progress lines. Default: print.
        **measure_kwargs: ``settings``, ``scope``, ``kernel_sizes``, ``warmup_iters``, ``num_batches``, ``seed``,
            ``bn_stats``, ``cfg_options``
            of :func:`measure_config`.

    Returns:
        dict: ``config`` (the written file), ``plan`` (layer -> choice), ``predicted_loss_increase``,
        ``predicted_flops_ratio``, ``flops`` (:func:`~skipconv_det.analysis.get_model_complexity` of the planned
        config's freshly built model, ``'planned'``, and of that model reverted to dense, ``'dense'``, on one input of
        the measured size) and ``layers``.

    Raises:
        ValueError: On a ratio outside (0, 1] or one no choice of settings meets.
    """
    from ..analysis.flops import compare_flops

    if not 0 < flops_ratio <= 1:
        raise ValueError(f'flops_ratio must lie in (0, 1], got {flops_ratio}')
    measured = measure_config(config, work_dir, log=log, **measure_kwargs)
    costs = [LayerCost(c['name'], [tuple(s) for s in c['out_shapes']], c['flops'], c['loss_increase'])
             for c in measured['layers']]
    plan = choose_settings(costs, measured['dense_flops'], flops_ratio)
    saved = sum(c.flops[DENSE] - c.flops[plan[c.name]] for c in costs)
    increase = sum(max(0.0, c.loss_increase[plan[c.name]]) for c in costs)
    predicted_ratio = 1 - saved / measured['dense_flops']

    stem = osp.splitext(osp.basename(config))[0]
    out = out or osp.join(work_dir, f'{stem}_skipconv-plan{flops_ratio:g}.py')
    counts = {choice: sum(1 for c in plan.values() if c == choice) for choice in sorted(set(plan.values()))}
    header = [f'Planned by tools/plan.py: a SkipConv setting per layer of {osp.basename(config)}',
              f'for at most {flops_ratio:g}x of its FLOPs, with the least predicted loss increase ({increase:+.4f};',
              f'predicted FLOPs ratio {predicted_ratio:.3f}); layers: ' +
              ', '.join(f'{n} {c}' for c, n in counts.items()) + '.',
              f'Measured after {measured["key"]["warmup_iters"]} dense warm-up iterations on '
              f'{measured["key"]["num_batches"]} training batches (seed {measured["key"]["seed"]}, BN '
              f'{measured["key"]["bn_stats"]} statistics).']
    if command:
        header.append(f'Command: {command}')
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    with open(out, 'w', encoding='utf-8') as f:
        f.write(format_plan_config(config, out, plan, header))

    # The planned model against itself reverted to dense: the same count as `tools/get_flops.py` prints.
    counted = compare_flops(out, tuple(measured['input_shape'][-2:]), measure_kwargs.get('cfg_options'))
    flops = dict(dense=counted['dense'], planned=counted['skipconv'])
    return dict(config=out, plan=plan, predicted_loss_increase=increase, predicted_flops_ratio=predicted_ratio,
                flops=flops, layers=measured['layers'])


def format_plan(result: Dict[str, Any]) -> str:
    """The plan as Markdown: per layer its output, FLOPs, measured loss increases and choice; then the FLOPs of
    the dense and the planned model per component."""
    layers = result['layers']
    settings = [key for key in layers[0]['loss_increase'] if key != DENSE] if layers else []
    lines = ['| layer | output CxHxW | dense MFLOPs | ' + ' | '.join(f'loss increase, {s}' for s in settings) +
             ' | choice |', '|' + '---|' * (4 + len(settings))]
    for layer in layers:
        lines.append(f"| {layer['name']} | {_shapes_text(layer['out_shapes'])} | "
                     f"{layer['flops'][DENSE] / 1e6:.2f} | " +
                     ' | '.join(f"{layer['loss_increase'][s]:+.4f}" for s in settings) +
                     f" | {result['plan'][layer['name']]} |")
    dense, planned = result['flops']['dense']['flops'], result['flops']['planned']['flops']
    lines += ['', '| component | dense GFLOPs | planned GFLOPs | ratio |', '|---|---|---|---|']
    for component in dense:
        ratio = planned[component] / dense[component] if dense[component] else float('nan')
        lines.append(f'| {component} | {dense[component] / 1e9:.4f} | {planned[component] / 1e9:.4f} | {ratio:.3f} |')
    lines += ['', f"predicted: FLOPs ratio {result['predicted_flops_ratio']:.3f}, loss increase "
              f"{result['predicted_loss_increase']:+.4f}", f"config: {result['config']}"]
    return '\n'.join(lines)
