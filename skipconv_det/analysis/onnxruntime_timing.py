# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""Timing in onnxruntime: modules exported to ONNX (see :mod:`skipconv_det.models.export_onnx`), checked against
PyTorch, and handed to :func:`~.complexity.measure_latencies` as calls of their sessions."""
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
