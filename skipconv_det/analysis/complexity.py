# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""FLOPs, parameters and latency of built models, per component.

FLOPs are counted as mmdet's ``tools/analysis_tools/get_flops.py`` counts them: ``mmengine.analysis.FlopAnalyzer``
traces the model's ``'tensor'`` forward and counts every aten convolution, matmul and norm it runs (one
multiply-add = one FLOP, the fvcore convention). ``SkipConv2d`` runs smaller real convolutions, so the count is
the work actually done, not the work of the dense layer it replaces. Counts are split by the model's top-level
children (``backbone``, ``neck``, ``rpn_head``, ``roi_head`` for a Faster R-CNN; ``data_preprocessor`` is left
out), plus ``total``.

Latency is the median wall time of a forward pass in eval mode under ``torch.no_grad`` after warm-up, with the
number of CPU threads it ran on recorded beside it.
"""
import statistics
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer, parameter_count

# Not a child module whose work a user asks about: it normalises and pads inputs before the forward.
_SKIPPED_CHILDREN = ('data_preprocessor', )


class _TensorForward(nn.Module):
    """``model(inputs, data_samples, mode='tensor')`` as a one-input module, so the tracer sees only the tensor
    (mmdet's get_flops.py binds the samples with ``functools.partial`` for the same reason)."""

    def __init__(self, model: nn.Module, data_samples: Sequence[Any]) -> None:
        super().__init__()
        self.model = model
        self.data_samples = data_samples

    def forward(self, inputs: torch.Tensor) -> Any:
        return self.model(inputs, self.data_samples, mode='tensor')


def _components(model: nn.Module) -> List[str]:
    return [name for name, _ in model.named_children() if name not in _SKIPPED_CHILDREN]


def get_model_complexity(model: nn.Module,
                         inputs: torch.Tensor,
                         data_samples: Optional[Sequence[Any]] = None) -> Dict[str, Any]:
    """FLOPs and parameters of a model, per top-level component and in total.

    The model runs once in eval mode under ``torch.no_grad``; its training flag is restored afterwards.

    Args:
        model (nn.Module): A built model: an mmdet detector, an mmpretrain classifier or any module.
        inputs (Tensor): The batch the model's ``forward`` gets (after the data preprocessor), e.g. from
            :func:`~skipconv_det.analysis.dummy_batch` or ``model.data_preprocessor(data_batch)['inputs']``.
        data_samples (list, optional): Passed as ``forward(inputs, data_samples, mode='tensor')`` (an mmdet
            two-stage detector needs their metainfo to place proposals). If None, ``forward(inputs)`` is traced.

    Returns:
        dict: ``{'input_shape': [N, C, H, W], 'flops': {component: int, ..., 'total': int},
        'params': {component: int, ..., 'total': int}}``. Components are the model's top-level children
        (``backbone``, ``neck``, ``rpn_head``, ``roi_head`` ...), in definition order.
    """
    traced, prefix = (model, '') if data_samples is None else (_TensorForward(model, data_samples), 'model.')
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            analyzer = FlopAnalyzer(traced, (inputs, ))
            analyzer.unsupported_ops_warnings(False)  # shape ops, NMS, ...: not multiply-adds
            analyzer.uncalled_modules_warnings(False)  # e.g. losses, which the 'tensor' forward never calls
            flops = analyzer.by_module()
    finally:
        model.train(was_training)
    params = parameter_count(model)
    names = _components(model)
    return dict(
        input_shape=list(inputs.shape),
        flops={**{name: int(flops.get(prefix + name, 0)) for name in names}, 'total': int(flops[''])},
        params={**{name: int(params.get(name, 0)) for name in names}, 'total': int(params[''])})


def measure_latencies(fns: Dict[str, Callable[[], Any]],
                      warmup: int = 3,
                      repeats: int = 10,
                      num_threads: Optional[int] = None,
                      device: Optional[torch.device] = None) -> Dict[str, Dict[str, Any]]:
    """Median wall time of each ``fn()`` after warm-up, the calls taken in turns (round-robin).

    Taking turns puts the things being compared under the same machine conditions: on a shared machine whose
    speed drifts, timing one after the other would credit the drift to whichever came second.

    Args:
        fns (dict[str, callable]): The work to time, by name, each called without arguments.
        warmup (int): Untimed rounds first (allocator, caches, lazy init). Default: 3.
        repeats (int): Timed rounds. Default: 10.
        num_threads (int, optional): ``torch.set_num_threads`` for the measurement (restored afterwards).
            Default: None (torch's current setting).
        device (torch.device, optional): A CUDA device is synchronised around every call. Default: None.

    Returns:
        dict: Per name, ``median_ms``, ``min_ms``, ``max_ms``, ``repeats``, ``warmup``, ``threads``.
    """
    sync = torch.cuda.synchronize if device is not None and torch.device(device).type == 'cuda' else (lambda: None)
    previous = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        threads = torch.get_num_threads()
        for _ in range(warmup):
            for fn in fns.values():
                fn()
        times: Dict[str, List[float]] = {name: [] for name in fns}
        for _ in range(repeats):
            for name, fn in fns.items():
                sync()
                start = time.perf_counter()
                fn()
                sync()
                times[name].append((time.perf_counter() - start) * 1e3)
    finally:
        torch.set_num_threads(previous)
    return {
        name: dict(median_ms=statistics.median(ts), min_ms=min(ts), max_ms=max(ts), repeats=repeats, warmup=warmup,
                   threads=threads)
        for name, ts in times.items()
    }


def measure_latency(fn: Callable[[], Any], **timing) -> Dict[str, Any]:
    """:func:`measure_latencies` of one ``fn``: its median wall time after warm-up."""
    return measure_latencies({'fn': fn}, **timing)['fn']


def profile_calls(fn: Callable[[], Any], runs: int, device: str = 'cpu', record_shapes: bool = False):
    """torch.profiler over ``runs`` calls of ``fn()`` after one untimed warm-up call (oneDNN primitives,
    allocator), with CUDA activity too on a CUDA device. Returns the finished profiler."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if str(device).startswith('cuda') else [])
    fn()
    with profile(activities=activities, record_shapes=record_shapes) as prof:
        for _ in range(runs):
            fn()
    return prof


def model_latency(model: nn.Module,
                  inputs: torch.Tensor,
                  data_samples: Optional[Sequence[Any]] = None,
                  mode: Optional[str] = 'predict',
                  **kwargs) -> Dict[str, Any]:
    """Inference latency of a model in eval mode under ``torch.no_grad`` (training flag restored afterwards).

    Args:
        model (nn.Module): A built model.
        inputs (Tensor): Its preprocessed batch.
        data_samples (list, optional): Data samples for ``forward(inputs, data_samples, mode=mode)``.
        mode (str, optional): mmengine forward mode: 'predict' (full inference, post-processing included) or
            'tensor' (raw outputs). None calls ``model(inputs)`` (a plain module). Default: 'predict'.
        **kwargs: ``warmup``, ``repeats``, ``num_threads`` of :func:`measure_latencies`.

    Returns:
        dict: As :func:`measure_latency`, plus ``input_shape`` and ``mode``.
    """
    call = (lambda: model(inputs)) if mode is None else (lambda: model(inputs, data_samples, mode=mode))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            result = measure_latency(call, device=inputs.device, **kwargs)
    finally:
        model.train(was_training)
    return dict(result, input_shape=list(inputs.shape), mode=mode)
