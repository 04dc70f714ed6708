"""Whole-model speed, dense vs SkipConv: per component in inference, and one training step.

Each model runs in NCHW and in channels_last and the faster layout counts, as in the layer benchmark; dense and
SkipConv are called in turns (see :func:`~skipconv_det.analysis.measure_latencies`). The stages
are nested prefixes of the forward (backbone, backbone + neck, full inference with post-processing), so the
time of each component is the difference of two rows.

Memory is measured apart from the timing, one call of each model per stage and layout (see
:func:`~skipconv_det.analysis.memory.peak_memory`): inference and the training step, each as the model's
parameters and buffers plus the most the call allocates at once on top of them.
"""
import copy
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..models.fuse import fuse_conv_bn
from ..ops import compile_mode as skipconv_compile_mode
from .complexity import measure_latencies, profile_calls
from .dummy_data import dummy_batch
from .flops import build_model_from_config, dense_and_skipconv_twins
from .layer_benchmark import LAYOUTS
from .onnxruntime_timing import time_parts_onnxruntime
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


def time_models(models: Dict[str, nn.Module], scope: str, shape: Tuple[int, int], device: str = 'cpu',
                train: bool = True, compile: bool = False, layouts: Sequence[str] = tuple(LAYOUTS),
                compile_mode: str = 'opaque', **timing) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Median ms of each stage (and a training step) of each model in each memory layout, the models timed in
    turns (see :func:`measure_latencies`): ``{model: {stage: {layout: ms}}}``. With ``compile``, the backbone
    and neck stages are also timed under ``torch.compile`` (inductor; compiled in the warm-up), as
    ``'<stage> compiled'``, SkipConv as ``compile_mode`` (:func:`skipconv_det.ops.compile_mode`). ``layouts``:
    the names of :data:`LAYOUTS` to time."""
    models = {name: model.to(device) for name, model in models.items()}
    inputs, samples = dummy_batch(scope, shape, device=device,
                                  data_preprocessor=next(iter(models.values())).data_preprocessor)
    results: Dict[str, Dict[str, Dict[str, float]]] = {name: {} for name in models}

    def record(stage, layout, calls):
        for name, t in measure_latencies(calls, device=device, **timing).items():
            results[name].setdefault(stage, {})[layout] = t['median_ms']

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
    return results


COMPILED_STAGES = ('backbone', 'backbone+neck')


def _model_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


def measure_models_memory(models: Dict[str, nn.Module], scope: str, shape: Tuple[int, int], device: str = 'cpu',
                          train: bool = True,
                          layouts: Sequence[str] = tuple(LAYOUTS)) -> Dict[str, Dict[str, Dict[str, int]]]:
    """Peak memory in bytes of inference (and a training step) of each model in each memory layout:
    ``{model: {stage: {layout: bytes}}}``. A model's peak is its parameters and buffers plus what the call
    allocates at once on top of them (:func:`~skipconv_det.analysis.memory.peak_memory`), so models that share a
    device do not count each other."""
    models = {name: model.to(device) for name, model in models.items()}
    inputs, samples = dummy_batch(scope, shape, device=device,
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


def _dense_and_skipconv(config, cfg_options, skip_pattern, shift_channels, scope):
    """``({'dense': model, 'skipconv': model}, library scope)``: a config's model and its twin."""
    model, lib_scope = build_model_from_config(config, cfg_options)
    dense, skip = dense_and_skipconv_twins(model, skip_pattern=skip_pattern, shift_channels=shift_channels,
                                           scope=scope)
    return dict(dense=dense, skipconv=skip), lib_scope


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
                    **timing) -> Dict[str, Any]:
    """Dense vs SkipConv timing of a config's model (see :func:`time_models`), with best-layout ratios, and with
    ``memory`` their peak memory under ``'memory'`` (see :func:`measure_models_memory`), ratios likewise.
    ``fuse_bn`` folds every BN into the conv before it in both models first (inference only, as deployed).
    ``onnxruntime`` also times the backbone and backbone + neck exported to ONNX, in onnxruntime (CPU), under
    ``'onnxruntime'``, with ratios against dense in onnxruntime. ``layouts`` as in :func:`time_models`."""
    models, lib_scope = _dense_and_skipconv(config, cfg_options, skip_pattern, shift_channels, scope)
    if fuse_bn:
        models = {name: fuse_conv_bn(model.eval()) for name, model in models.items()}
        train = False
    result = dict(config=config, shape=list(shape), device=device, threads=torch.get_num_threads(),
                  fuse_bn=fuse_bn, compile_mode=compile_mode if compile else None)
    result.update(time_models(models, lib_scope, shape, device, train, compile, layouts, compile_mode, **timing))
    # Against the best dense of the same stage, eager or compiled, in either layout.
    best_dense = {}
    for stage, times in result['dense'].items():
        base = stage.replace(' compiled', '')
        best_dense[base] = min(best_dense.get(base, float('inf')), *times.values())
    result['ratio'] = {
        stage: min(result['skipconv'][stage].values()) / best_dense[stage.replace(' compiled', '')]
        for stage in result['dense']
    }
    if onnxruntime:
        if device != 'cpu':
            raise ValueError('The onnxruntime rows are timed on the CPU; run them with --device cpu.')
        parts = ['backbone', 'backbone+neck'] if getattr(models['dense'], 'with_neck', False) else ['backbone']
        inputs, _ = dummy_batch(lib_scope, shape, data_preprocessor=models['dense'].data_preprocessor)
        # As deployed (tools/export_onnx.py): BN folded, which onnxruntime does by itself for dense convs only.
        folded = {name: fuse_conv_bn(copy.deepcopy(model).eval()) for name, model in models.items()}
        times = time_parts_onnxruntime(folded, inputs, parts, num_threads=timing.pop('num_threads', None),
                                       **timing)
        result['onnxruntime'] = dict(times, ratio={part: times['skipconv'][part] / times['dense'][part]
                                                   for part in times['dense']})
    if memory:
        peaks = measure_models_memory(models, lib_scope, shape, device, train, layouts)
        peaks['ratio'] = {stage: min(peaks['skipconv'][stage].values()) / min(peaks['dense'][stage].values())
                          for stage in peaks['dense']}
        result['memory'] = peaks
    return result


def _layout_rows(values: Dict[str, Any], ratio: Dict[str, float], cell) -> List[str]:
    """Table rows of ``{'dense': {stage: {layout: value}}, 'skipconv': ...}``, each value written by ``cell``."""
    lines = ['| stage | dense NCHW | dense CL | SkipConv NCHW | SkipConv CL | SkipConv / dense (best layouts) |',
             '|---|---|---|---|---|---|']
    for stage, dense in values['dense'].items():
        skip = values['skipconv'][stage]
        row = [times.get(layout) for times in (dense, skip) for layout in ('nchw', 'channels_last')]
        cells = ' | '.join('-' if v is None else cell(v) for v in row)  # '-': a layout not timed
        lines.append(f'| {stage} | {cells} | {ratio[stage]:.2f}× |')
    return lines


def format_model_table(result: Dict[str, Any]) -> str:
    """A markdown table of :func:`benchmark_model`'s result."""
    lines = [
        f"{result['config']} @ {result['shape'][0]}x{result['shape'][1]}, {result['device']}, "
        f"{'BN folded, ' if result.get('fuse_bn') else ''}"
        f"{'compiled SkipConv ' + result['compile_mode'] + ', ' if result.get('compile_mode') else ''}"
        f"{result['threads']} threads (median ms; CL = channels_last)"
    ]
    lines += _layout_rows(result, result['ratio'], lambda ms: f'{ms:.0f}')
    if 'onnxruntime' in result:
        ort = result['onnxruntime']
        lines += ['', 'onnxruntime (CPU; exported with tools/export_onnx.py\'s exporter), median ms',
                  '| stage | dense | SkipConv | SkipConv / dense |', '|---|---|---|---|']
        lines += [f"| {part} | {ort['dense'][part]:.0f} | {ort['skipconv'][part]:.0f} | {ort['ratio'][part]:.2f}× |"
                  for part in ort['dense']]
    if 'memory' in result:
        gb = 2**30  # mmdet's logger and model zoo divide by 1024**3 too
        lines += ['', 'Mem (GB): parameters and buffers + peak of what the call allocates '
                  '(skipconv_det.analysis.memory)']
        lines += _layout_rows(result['memory'], result['memory']['ratio'], lambda size: f'{size / gb:.3f}')
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
                  top: int = 12) -> str:
    """Where a model's time goes, dense vs SkipConv: torch.profiler's ops of one stage (or 'train step') by self
    time per call (averaged over ``runs`` calls after a warm-up call), the two models side by side.

    Returns:
        str: A markdown table of the ``top`` ops by the larger of the two times, then the rest and the total.
    """
    cuda, training = device.startswith('cuda'), stage == 'train step'
    models, lib_scope = _dense_and_skipconv(config, cfg_options, skip_pattern, shift_channels, scope)
    inputs, samples = dummy_batch(lib_scope, shape, device=device, data_preprocessor=models['dense'].data_preprocessor)
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
    lines = [
        f'{config} @ {shape[0]}x{shape[1]}, {stage}, {layout}, {device}: self {"device" if cuda else "CPU"} ms '
        f'per call by op (mean of {runs} after a warm-up)',
        '| op | dense ms | SkipConv ms | dense calls | SkipConv calls |', '|---|---|---|---|---|'
    ]

    def cells(ops):
        ms = [f'{ops[name][0]:.1f}' if name in ops else '-' for name in models]
        calls = [f'{ops[name][1]:g}' if name in ops else '-' for name in models]
        return ' | '.join(ms + calls)

    for op, ops in ranked[:top]:
        lines.append(f'| {op} | {cells(ops)} |')
    rest = {name: sum(ops[name][0] for _, ops in ranked[top:] if name in ops) for name in models}
    lines.append(f"| other ops | {rest['dense']:.1f} | {rest['skipconv']:.1f} | | |")
    lines.append(f"| total | {totals['dense']:.1f} | {totals['skipconv']:.1f} | | |")
    return '\n'.join(lines)
