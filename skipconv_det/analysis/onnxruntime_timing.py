# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""Timing in onnxruntime: modules exported to ONNX (see :mod:`skipconv_det.models.export_onnx`), checked against
PyTorch, and handed to :func:`~.complexity.measure_latencies` as calls of their sessions."""
import collections
import json
import os
import tempfile
from typing import Callable, Dict, Hashable, Optional, Sequence

import torch
import torch.nn as nn

from ..models.export_onnx import ModelPart, export_onnx, max_abs_difference, onnxruntime_session, run_onnxruntime
from .complexity import measure_latencies

RUNTIMES = ('torch', 'onnxruntime')
# For layers also SkipConv in PyTorch with the assembly it exports.
LAYER_RUNTIMES = ('torch', 'torch-cells', 'onnxruntime')


def onnxruntime_calls(modules: Dict[Hashable, nn.Module],
                      inputs: torch.Tensor,
                      threads: Optional[int] = None,
                      atol: float = 1e-3,
                      work_dir: Optional[str] = None) -> Dict[Hashable, Callable[[], None]]:
    """Per module (returning a tensor or a tuple of tensors of ``inputs``), a no-argument call that runs its ONNX
    export in an onnxruntime CPU session with ``threads`` intra-op threads (default: torch's thread count, as the
    PyTorch rows use). Raises if a session's outputs differ from PyTorch's by more than ``atol``."""
    threads = threads or torch.get_num_threads()
    calls = {}
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        for i, (key, module) in enumerate(modules.items()):
            module = _AsTuple(module).eval()
            path = export_onnx(module, inputs, os.path.join(tmp, f'{i}.onnx'))
            session = onnxruntime_session(path, threads)  # the session keeps the graph; the file can go
            diff = max_abs_difference(module, session, inputs)
            if not diff <= atol:
                raise RuntimeError(f'onnxruntime differs from PyTorch by {diff:.3g} for {key!r}.')
            calls[key] = (lambda s: lambda: run_onnxruntime(s, inputs))(session)
    return calls


class _AsTuple(nn.Module):
    """A module's output as a tuple of tensors, as :func:`export_onnx` takes it."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x):
        out = self.module(x)
        return tuple(out) if isinstance(out, (tuple, list)) else (out, )


def time_parts_onnxruntime(models: Dict[str, nn.Module], inputs: torch.Tensor, parts: Sequence[str],
                           num_threads: Optional[int] = None, **timing) -> Dict[str, Dict[str, float]]:
    """Median ms of each of ``parts`` (see :data:`~skipconv_det.models.export_onnx.PARTS`) of each model in
    onnxruntime with ``num_threads`` threads, the models timed in turns: ``{model: {part: ms}}``."""
    results: Dict[str, Dict[str, float]] = {name: {} for name in models}
    for part in parts:
        calls = onnxruntime_calls({name: ModelPart(model.eval(), part) for name, model in models.items()}, inputs,
                                  num_threads)
        for name, t in measure_latencies(calls, **timing).items():
            results[name][part] = t['median_ms']
    return results


def profile_part_onnxruntime(models: Dict[str, nn.Module], inputs: torch.Tensor, part: str, runs: int = 1,
                             num_threads: Optional[int] = None,
                             top: int = 12) -> str:
    """Where onnxruntime's time goes in one part of each model (exported as :func:`time_parts_onnxruntime` times
    it): ms per run by node type, from onnxruntime's own profiler (``runs`` runs after a warm-up run, which also
    holds the session's graph optimisations), the models side by side.

    Returns:
        str: A markdown table of the ``top`` node types by the largest of the times, then the rest and the total;
        a node type onnxruntime made (e.g. ``ReorderInput``, ``ReorderOutput`` of its blocked NCHWc layout) counts
        like any other.
    """
    threads = num_threads or torch.get_num_threads()
    per_type: Dict[str, Dict[str, float]] = collections.defaultdict(dict)
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, model) in enumerate(models.items()):
            module = _AsTuple(ModelPart(model.eval(), part)).eval()
            path = export_onnx(module, inputs, os.path.join(tmp, f'{i}.onnx'))
            session = onnxruntime_session(path, threads, profile_prefix=os.path.join(tmp, f'profile{i}'))
            for _ in range(1 + runs):
                run_onnxruntime(session, inputs)
            with open(session.end_profiling()) as f:
                events = json.load(f)
            # Node events of the runs after the first: the first run's are its warm-up's.
            runs_seen, totals = 0, collections.Counter()
            for event in events:
                if event.get('cat') == 'Session' and event.get('name') == 'model_run':
                    runs_seen += 1
                elif event.get('cat') == 'Node' and event.get('name', '').endswith('_kernel_time') and runs_seen:
                    totals[event['args']['op_name']] += event['dur']
            for op, us in totals.items():
                per_type[op][name] = us / 1e3 / runs
    names = list(models)
    ranked = sorted(per_type.items(), key=lambda item: -max(item[1].values()))
    lines = [f'{part}, onnxruntime (CPU, {threads} threads): ms per run by node type (mean of {runs} after a '
             'warm-up run; onnxruntime\'s profiler)',
             '| node type | ' + ' | '.join(f'{n} ms' for n in names) + ' |', '|---|' + '---|' * len(names)]
    for op, ms in ranked[:top]:
        lines.append(f'| {op} | ' + ' | '.join(f'{ms[n]:.1f}' if n in ms else '-' for n in names) + ' |')
    rest = {n: sum(ms.get(n, 0.0) for _, ms in ranked[top:]) for n in names}
    total = {n: sum(ms.get(n, 0.0) for ms in per_type.values()) for n in names}
    lines.append('| other node types | ' + ' | '.join(f'{rest[n]:.1f}' for n in names) + ' |')
    lines.append('| total | ' + ' | '.join(f'{total[n]:.1f}' for n in names) + ' |')
    return '\n'.join(lines)
