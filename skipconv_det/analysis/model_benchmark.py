"""Whole-model speed, dense vs SkipConv: per component in inference, and one training step.

Each model runs in NCHW and in channels_last and the faster layout counts, as in the layer benchmark; dense and
SkipConv are called in turns (see :func:`~skipconv_det.analysis.measure_latencies`). The stages
are nested prefixes of the forward (backbone, backbone + neck, full inference with post-processing), so the
time of each component is the difference of two rows.

The lattice-domain model (``skipconv_det.optimize_for_inference``) can be timed beside them, as a third model:
BN folded, as it is, so the other two are folded too and the ratios are against the BN-folded dense model.

Memory is measured apart from the timing, one call of each model per stage and layout (see
:func:`~skipconv_det.analysis.memory.peak_memory`): inference and the training step, each as the model's
parameters and buffers plus the most the call allocates at once on top of them.
"""
import copy
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..inference import optimize_for_inference as lattice_domain
from ..models.fuse import fuse_conv_bn
from ..ops import compile_mode as skipconv_compile_mode
from .complexity import measure_latencies, profile_calls
from .dummy_data import dummy_batch
from .flops import build_model_from_config, dense_and_skipconv_twins
from .layer_benchmark import LAYOUTS
from .onnxruntime_timing import profile_part_onnxruntime, time_parts_onnxruntime
from .memory import peak_memory


def _stages(model: nn.Module, inputs: torch.Tensor, samples: Any) -> Dict[str, Callable[[], Any]]:
    """The forward prefixes to time for this kind of model."""
    stages = {'backbone': lambda: model.backbone(inputs)}
    if getattr(model, 'with_neck', False):
        stages['backbone+neck'] = lambda: model.extract_feat(inputs)
    stages['inference'] = lambda: model(inputs, samples, mode='predict')
    return stages


def _train_step(model: nn.Module, inputs: torch.Tensor, samples: Any) -> Callable[[], None]:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)

    def step():  # in mmengine's OptimWrapper.update_params order: no gradients are held between steps
        losses = model(inputs, samples, mode='loss')
        loss, _ = model.parse_losses(losses)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    return step


Times = Dict[str, Dict[str, Dict[str, float]]]  # {model: {stage: {layout: ms}}}


def time_models(models: Dict[str, nn.Module], scope: str, shape: Tuple[int, int], device: str = 'cpu',
                train: bool = True, compile: bool = False, layouts: Sequence[str] = tuple(LAYOUTS),
                compile_mode: str = 'opaque', batch_size: int = 1, **timing) -> Tuple[Times, Times]:
    """Median and minimum ms of each stage (and a training step) of each model in each memory layout, the models
    timed in turns (see :func:`measure_latencies`): ``({model: {stage: {layout: ms}}}, the same of minima)``.
    With ``compile``, the backbone and neck stages are also timed under ``torch.compile`` (inductor; compiled in
    the warm-up), as ``'<stage> compiled'``, SkipConv as ``compile_mode`` (:func:`skipconv_det.ops.compile_mode`).
    ``layouts``: the names of :data:`LAYOUTS` to time; ``batch_size``: images per call."""
    models = {name: model.to(device) for name, model in models.items()}
    inputs, samples = dummy_batch(scope, shape, batch_size, device=device,
                                  data_preprocessor=next(iter(models.values())).data_preprocessor)
    results: Times = {name: {} for name in models}
    minima: Times = {name: {} for name in models}

    def record(stage, layout, calls):
        for name, t in measure_latencies(calls, device=device, **timing).items():
            results[name].setdefault(stage, {})[layout] = t['median_ms']
            minima[name].setdefault(stage, {})[layout] = t['min_ms']

    for layout in layouts:
        memory_format = LAYOUTS[layout]
        x = inputs.contiguous(memory_format=memory_format)
        stages = {}
        for name, model in models.items():
            model.to(memory_format=memory_format).eval()
            stages[name] = _stages(model, x, samples)
        with torch.no_grad():
            for stage in next(iter(stages.values())):
                record(stage, layout, {name: fns[stage] for name, fns in stages.items()})
            for stage in COMPILED_STAGES if compile else ():
                torch._dynamo.reset()
                with skipconv_compile_mode(compile_mode):  # compiled in the first (warm-up) call
                    record(f'{stage} compiled', layout,
                           {name: torch.compile(fns[stage]) for name, fns in stages.items() if stage in fns})
        if train:
            for model in models.values():
                model.train()
            record('train step', layout, {name: _train_step(model, x, samples) for name, model in models.items()})
    return results, minima


COMPILED_STAGES = ('backbone', 'backbone+neck')


def _model_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


def measure_models_memory(models: Dict[str, nn.Module], scope: str, shape: Tuple[int, int], device: str = 'cpu',
                          train: bool = True, layouts: Sequence[str] = tuple(LAYOUTS),
                          batch_size: int = 1) -> Dict[str, Dict[str, Dict[str, int]]]:
    """Peak memory in bytes of inference (and a training step) of each model in each memory layout:
    ``{model: {stage: {layout: bytes}}}``. A model's peak is its parameters and buffers plus what the call
    allocates at once on top of them (:func:`~skipconv_det.analysis.memory.peak_memory`), so models that share a
    device do not count each other."""
    models = {name: model.to(device) for name, model in models.items()}
    inputs, samples = dummy_batch(scope, shape, batch_size, device=device,
                                  data_preprocessor=next(iter(models.values())).data_preprocessor)
    results: Dict[str, Dict[str, Dict[str, int]]] = {name: {} for name in models}
    for layout in layouts:
        memory_format = LAYOUTS[layout]
        x = inputs.contiguous(memory_format=memory_format)
        for name, model in models.items():
            model.to(memory_format=memory_format).eval()
            with torch.no_grad():
                peak = peak_memory(_stages(model, x, samples)['inference'], device)
            results[name].setdefault('inference', {})[layout] = _model_bytes(model) + peak
            if train:
                peak = peak_memory(_train_step(model.train(), x, samples), device)
                results[name].setdefault('train step', {})[layout] = _model_bytes(model) + peak
    return results


def _dense_and_skipconv(config, cfg_options, skip_pattern, shift_channels, scope, fuse_bn=False,
                        optimize_for_inference=False):
    """``({'dense': model, 'skipconv': model}, library scope)``: a config's model and its twin; with
    ``optimize_for_inference`` also the twin in the lattice domain, as :data:`OPTIMIZED`. ``fuse_bn`` (implied by
    ``optimize_for_inference``) folds every BN of every model, in eval."""
    model, lib_scope = build_model_from_config(config, cfg_options)
    dense, skip = dense_and_skipconv_twins(model, skip_pattern=skip_pattern, shift_channels=shift_channels,
                                           scope=scope)
    models = dict(dense=dense, skipconv=skip)
    if optimize_for_inference:
        models[OPTIMIZED] = lattice_domain(copy.deepcopy(skip).eval())
    if fuse_bn or optimize_for_inference:
        models = {name: fuse_conv_bn(model.eval()) for name, model in models.items()}
    return models, lib_scope


OPTIMIZED = 'skipconv optimized'  # the lattice-domain model's name in results
_NAMES = {'dense': 'dense', 'skipconv': 'SkipConv', OPTIMIZED: 'SkipConv optimized'}


def _ratios(values: Dict[str, Dict[str, Dict[str, float]]], dense: Dict[str, float]) -> Dict[str, Dict[str, float]]:
    """Per model other than dense and per stage, its best layout over ``dense[stage]``."""
    return {name: {stage: min(times.values()) / dense[stage.replace(' compiled', '')] for stage, times in stages.items()}
            for name, stages in values.items() if name != 'dense'}


def _best_dense(values: Dict[str, Dict[str, Dict[str, float]]]) -> Dict[str, float]:
    """The best dense time of each stage, eager or compiled, in either layout."""
    best: Dict[str, float] = {}
    for stage, times in values['dense'].items():
        base = stage.replace(' compiled', '')
        best[base] = min(best.get(base, float('inf')), *times.values())
    return best


def benchmark_model(config: str,
                    shape: Tuple[int, int],
                    device: str = 'cpu',
                    train: bool = True,
                    cfg_options: Optional[dict] = None,
                    skip_pattern: str = 'checkerboard',
                    shift_channels: bool = False,
                    scope: Optional[Sequence[str]] = None,
                    fuse_bn: bool = False,
                    compile: bool = False,
                    compile_mode: str = 'opaque',
                    memory: bool = True,
                    onnxruntime: bool = False,
                    layouts: Sequence[str] = tuple(LAYOUTS),
                    optimize_for_inference: bool = False,
                    batch_size: int = 1,
                    **timing) -> Dict[str, Any]:
    """Dense vs SkipConv timing of a config's model (see :func:`time_models`), with best-layout ratios (of medians
    under ``'ratio'``, of minima under ``'min_ratio'``, per model other than dense), and with ``memory`` their peak
    memory under ``'memory'`` (see :func:`measure_models_memory`), ratios likewise.
    ``fuse_bn`` folds every BN into the conv before it in both models first (inference only, as deployed).
    ``optimize_for_inference`` adds the SkipConv model in the lattice domain
    (:func:`skipconv_det.optimize_for_inference`) as a third model, :data:`OPTIMIZED`, and implies ``fuse_bn``.
    ``onnxruntime`` also times the backbone and backbone + neck exported to ONNX, in onnxruntime (CPU), under
    ``'onnxruntime'``, with ratios against dense in onnxruntime. ``layouts`` as in :func:`time_models`;
    ``batch_size``: images per call."""
    fuse_bn = fuse_bn or optimize_for_inference
    train = train and not fuse_bn
    models, lib_scope = _dense_and_skipconv(config, cfg_options, skip_pattern, shift_channels, scope, fuse_bn,
                                            optimize_for_inference)
    result = dict(config=config, shape=list(shape), device=device, threads=torch.get_num_threads(),
                  batch_size=batch_size, fuse_bn=fuse_bn, compile_mode=compile_mode if compile else None)
    medians, minima = time_models(models, lib_scope, shape, device, train, compile, layouts, compile_mode,
                                  batch_size, **timing)
    result.update(medians)
    result['min'] = minima
    # Against the best dense of the same stage, eager or compiled, in either layout.
    ratios, min_ratios = _ratios(medians, _best_dense(medians)), _ratios(minima, _best_dense(minima))
    result['ratio'] = ratios.get('skipconv', {})
    result['min_ratio'] = min_ratios.get('skipconv', {})
    if optimize_for_inference:
        result['optimized_ratio'], result['optimized_min_ratio'] = ratios[OPTIMIZED], min_ratios[OPTIMIZED]
    if onnxruntime:
        if device != 'cpu':
            raise ValueError('The onnxruntime rows are timed on the CPU; run them with --device cpu.')
        parts = ['backbone', 'backbone+neck'] if getattr(models['dense'], 'with_neck', False) else ['backbone']
        inputs, _ = dummy_batch(lib_scope, shape, batch_size, data_preprocessor=models['dense'].data_preprocessor)
        # As deployed (tools/export_onnx.py): BN folded, which onnxruntime does by itself for dense convs only.
        folded = {name: fuse_conv_bn(copy.deepcopy(model).eval()) for name, model in models.items()}
        times = time_parts_onnxruntime(folded, inputs, parts, num_threads=timing.pop('num_threads', None),
                                       **timing)
        ratio = {name: {part: times[name][part] / times['dense'][part] for part in times['dense']}
                 for name in times if name != 'dense'}
        result['onnxruntime'] = dict(times, ratio=ratio['skipconv'])
        if optimize_for_inference:
            result['onnxruntime']['optimized_ratio'] = ratio[OPTIMIZED]
    if memory:
        peaks = measure_models_memory(models, lib_scope, shape, device, train, layouts, batch_size)
        peaks['ratio'] = {stage: min(peaks['skipconv'][stage].values()) / min(peaks['dense'][stage].values())
                          for stage in peaks['dense']}
        if optimize_for_inference:
            peaks['optimized_ratio'] = {stage: min(peaks[OPTIMIZED][stage].values()) /
                                        min(peaks['dense'][stage].values()) for stage in peaks['dense']}
        result['memory'] = peaks
    return result


def _layout_rows(values: Dict[str, Any], ratios: Dict[str, Dict[str, float]], cell,
                 minima: Optional[Dict[str, Any]] = None) -> List[str]:
    """Table rows of ``{'dense': {stage: {layout: value}}, 'skipconv': ..., ...}`` (each value written by ``cell``,
    with its minimum after it where ``minima`` are given), and per model other than dense its ratio to dense of
    the best layouts (``ratios[model][stage]``)."""
    names = [name for name in _NAMES if name in values]
    head = [f'{_NAMES[n]} {lay}' for n in names for lay in ('NCHW', 'CL')]
    head += [f'{_NAMES[n]} / dense (best layouts)' for n in names if n != 'dense']
    lines = ['| stage | ' + ' | '.join(head) + ' |', '|---|' + '---|' * len(head)]
    for stage in values['dense']:
        cells = []
        for name in names:
            for layout in ('nchw', 'channels_last'):
                value = values[name].get(stage, {}).get(layout)
                text = '-' if value is None else cell(value)  # '-': a layout not timed
                if value is not None and minima is not None:
                    text += f' ({cell(minima[name][stage][layout])})'
                cells.append(text)
        cells += [f'{ratios[name][stage]:.2f}×' for name in names if name != 'dense']
        lines.append(f'| {stage} | ' + ' | '.join(cells) + ' |')
    return lines


def format_model_table(result: Dict[str, Any]) -> str:
    """A markdown table of :func:`benchmark_model`'s result: median ms (minimum ms) per model and layout, and the
    ratios of the medians (and of the minima, below the table)."""
    ratios = {'skipconv': result['ratio']}
    min_ratios = {'skipconv': result.get('min_ratio', {})}
    if OPTIMIZED in result:
        ratios[OPTIMIZED], min_ratios[OPTIMIZED] = result['optimized_ratio'], result['optimized_min_ratio']
    batch = result.get('batch_size', 1)
    lines = [
        f"{result['config']} @ {result['shape'][0]}x{result['shape'][1]}"
        f"{f', batch {batch}' if batch != 1 else ''}, {result['device']}, "
        f"{'BN folded, ' if result.get('fuse_bn') else ''}"
        f"{'compiled SkipConv ' + result['compile_mode'] + ', ' if result.get('compile_mode') else ''}"
        f"{result['threads']} threads (median ms (min ms); CL = channels_last)"
    ]
    lines += _layout_rows(result, ratios, lambda ms: f'{ms:.0f}', result.get('min'))
    if result.get('min_ratio'):
        lines += ['', 'The same ratios of the minima: ' + '; '.join(
            f'{_NAMES[name]} ' + ', '.join(f'{stage} {r:.2f}×' for stage, r in stages.items())
            for name, stages in min_ratios.items() if stages)]
    if 'onnxruntime' in result:
        ort = result['onnxruntime']
        names = [name for name in _NAMES if name in ort]
        ort_ratio = {'skipconv': ort['ratio'], OPTIMIZED: ort.get('optimized_ratio')}
        lines += ['', 'onnxruntime (CPU; exported with tools/export_onnx.py\'s exporter), median ms',
                  '| stage | ' + ' | '.join(_NAMES[n] for n in names) + ' | ' +
                  ' | '.join(f'{_NAMES[n]} / dense' for n in names if n != 'dense') + ' |',
                  '|---|' + '---|' * (2 * len(names) - 1)]
        lines += [f"| {part} | " + ' | '.join(f'{ort[n][part]:.0f}' for n in names) + ' | ' +
                  ' | '.join(f"{ort_ratio[n][part]:.2f}×" for n in names if n != 'dense') + ' |'
                  for part in ort['dense']]
    if 'memory' in result:
        gb = 2**30  # mmdet's logger and model zoo divide by 1024**3 too
        memory = result['memory']
        memory_ratios = {'skipconv': memory['ratio']}
        if 'optimized_ratio' in memory:
            memory_ratios[OPTIMIZED] = memory['optimized_ratio']
        lines += ['', 'Mem (GB): parameters and buffers + peak of what the call allocates '
                  '(skipconv_det.analysis.memory)']
        lines += _layout_rows(memory, memory_ratios, lambda size: f'{size / gb:.3f}')
    return '\n'.join(lines)


def profile_model(config: str,
                  shape: Tuple[int, int],
                  stage: str = 'backbone+neck',
                  layout: str = 'channels_last',
                  device: str = 'cpu',
                  cfg_options: Optional[dict] = None,
                  skip_pattern: str = 'checkerboard',
                  shift_channels: bool = False,
                  scope: Optional[Sequence[str]] = None,
                  runs: int = 1,
                  top: int = 12,
                  fuse_bn: bool = False,
                  optimize_for_inference: bool = False,
                  batch_size: int = 1) -> str:
    """Where a model's time goes, dense vs SkipConv: torch.profiler's ops of one stage (or 'train step') by self
    time per call (averaged over ``runs`` calls after a warm-up call), the models side by side. ``fuse_bn`` and
    ``optimize_for_inference`` (a third column, :data:`OPTIMIZED`) as in :func:`benchmark_model`.

    Returns:
        str: A markdown table of the ``top`` ops by the largest of the times, then the rest and the total.
    """
    cuda, training = device.startswith('cuda'), stage == 'train step'
    fuse_bn = fuse_bn or optimize_for_inference
    if fuse_bn and training:
        raise ValueError('BN folding and the lattice domain are for inference: profile another stage than the '
                         'training step.')
    models, lib_scope = _dense_and_skipconv(config, cfg_options, skip_pattern, shift_channels, scope, fuse_bn,
                                            optimize_for_inference)
    inputs, samples = dummy_batch(lib_scope, shape, batch_size, device=device,
                                  data_preprocessor=models['dense'].data_preprocessor)
    x = inputs.contiguous(memory_format=LAYOUTS[layout])
    per_op: Dict[str, Dict[str, Tuple[float, float]]] = {}
    for name, model in models.items():
        model.to(device).to(memory_format=LAYOUTS[layout]).train(training)
        call = _train_step(model, x, samples) if training else _stages(model, x, samples)[stage]
        with torch.set_grad_enabled(training):
            prof = profile_calls(call, runs, device)
        for event in prof.key_averages():
            us = event.self_device_time_total if cuda else event.self_cpu_time_total
            per_op.setdefault(event.key, {})[name] = (us / 1e3 / runs, event.count / runs)
    totals = {name: sum(ops[name][0] for ops in per_op.values() if name in ops) for name in models}
    ranked = sorted(per_op.items(), key=lambda item: -max(ms for ms, _ in item[1].values()))
    names = [_NAMES[name] for name in models]
    batch = f', batch {batch_size}' if batch_size != 1 else ''
    lines = [
        f'{config} @ {shape[0]}x{shape[1]}{batch}, {stage}, {layout}, {device}{", BN folded" if fuse_bn else ""}: '
        f'self {"device" if cuda else "CPU"} ms per call by op (mean of {runs} after a warm-up)',
        '| op | ' + ' | '.join(f'{n} ms' for n in names) + ' | ' + ' | '.join(f'{n} calls' for n in names) + ' |',
        '|---|' + '---|' * (2 * len(names))
    ]

    def cells(ops):
        ms = [f'{ops[name][0]:.1f}' if name in ops else '-' for name in models]
        calls = [f'{ops[name][1]:g}' if name in ops else '-' for name in models]
        return ' | '.join(ms + calls)

    for op, ops in ranked[:top]:
        lines.append(f'| {op} | {cells(ops)} |')
    rest = {name: sum(ops[name][0] for _, ops in ranked[top:] if name in ops) for name in models}
    blanks = ' |' * len(models)
    lines.append('| other ops | ' + ' | '.join(f'{rest[name]:.1f}' for name in models) + ' |' + blanks)
    lines.append('| total | ' + ' | '.join(f'{totals[name]:.1f}' for name in models) + ' |' + blanks)
    return '\n'.join(lines)


def profile_model_onnxruntime(config: str,
                              shape: Tuple[int, int],
                              part: str = 'backbone',
                              cfg_options: Optional[dict] = None,
                              skip_pattern: str = 'checkerboard',
                              shift_channels: bool = False,
                              scope: Optional[Sequence[str]] = None,
                              runs: int = 1,
                              optimize_for_inference: bool = False,
                              batch_size: int = 1) -> str:
    """Where onnxruntime's time goes in ``part`` ('backbone' or 'backbone+neck') of a config's model, BN folded
    as deployed, dense beside SkipConv (and the lattice-domain model with ``optimize_for_inference``): see
    :func:`~.onnxruntime_timing.profile_part_onnxruntime`."""
    models, lib_scope = _dense_and_skipconv(config, cfg_options, skip_pattern, shift_channels, scope, fuse_bn=True,
                                            optimize_for_inference=optimize_for_inference)
    models = {_NAMES[name]: model for name, model in models.items()}
    inputs, _ = dummy_batch(lib_scope, shape, batch_size, data_preprocessor=models['dense'].data_preprocessor)
    return (f'{config} @ {shape[0]}x{shape[1]}, BN folded, ' +
            profile_part_onnxruntime(models, inputs, part, runs, num_threads=torch.get_num_threads()))
