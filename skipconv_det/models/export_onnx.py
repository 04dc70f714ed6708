# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""ONNX export of a model's tensor-to-tensor parts, and the onnxruntime session that checks them against PyTorch.

mmdet 3.x leaves exporting whole detectors (pre- and post-processing, NMS) to mmdeploy, so what is exported here
is what carries the convolutions: the backbone, the backbone with its neck (``extract_feat``), or for a classifier
the whole network (``mode='tensor'``). SkipConv layers export as their output assembled from its four cells
(docs/operator.md, How it is computed). ``tools/export_onnx.py`` (:mod:`skipconv_det.cli.export_onnx`) exports
and checks; :mod:`skipconv_det.analysis.onnxruntime_timing` times the sessions.
"""
import os
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

PARTS = ('backbone', 'backbone+neck', 'tensor')


class ModelPart(nn.Module):
    """One of :data:`PARTS` of an OpenMMLab model as a module of one input tensor returning a tuple of tensors."""

    def __init__(self, model: nn.Module, part: str) -> None:
        super().__init__()
        if part not in PARTS:
            raise ValueError(f'Unknown part {part!r}; use one of {", ".join(PARTS)}.')
        if part == 'backbone+neck' and not getattr(model, 'with_neck', False):
            raise ValueError(f'{type(model).__name__} has no neck; export --part backbone (or tensor).')
        self.model, self.part = model, part

    def forward(self, inputs: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        if self.part == 'backbone':
            out = self.model.backbone(inputs)
        elif self.part == 'backbone+neck':
            out = self.model.extract_feat(inputs)
        else:
            out = self.model(inputs, mode='tensor')
        return tuple(out) if isinstance(out, (tuple, list)) else (out, )


def export_onnx(module: nn.Module, inputs: torch.Tensor, path: str, dynamo: bool = True,
                opset_version: Optional[int] = None) -> str:
    """Export ``module(inputs)`` (in eval mode) to ``path`` with torch.onnx (``dynamo=False``: the TorchScript
    exporter); the input is named ``inputs`` and the outputs ``output_<i>``."""
    module.eval()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with torch.no_grad():
        num_outputs = len(module(inputs))
        torch.onnx.export(module, (inputs, ), path, input_names=['inputs'],
                          output_names=[f'output_{i}' for i in range(num_outputs)], dynamo=dynamo,
                          opset_version=opset_version, verbose=False)
    return path


def onnxruntime_session(path: str, threads: Optional[int] = None, profile_prefix: Optional[str] = None):
    """An onnxruntime CPU session of ``path`` (``threads`` intra-op threads; default: onnxruntime's); with
    ``profile_prefix``, onnxruntime's profiler writes the session's node times to a JSON file of that prefix
    (``session.end_profiling()`` returns its path)."""
    import onnxruntime
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return onnxruntime.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def run_onnxruntime(session, inputs: torch.Tensor) -> Sequence[np.ndarray]:
    return session.run(None, {session.get_inputs()[0].name: inputs.detach().cpu().numpy()})


def max_abs_difference(module: nn.Module, session, inputs: torch.Tensor) -> float:
    """The largest absolute difference between onnxruntime's outputs and PyTorch's (eval mode, no grad)."""
    with torch.no_grad():
        expected = module.eval()(inputs)
    got = run_onnxruntime(session, inputs)
    if len(got) != len(expected):
        raise RuntimeError(f'onnxruntime returned {len(got)} outputs, PyTorch {len(expected)}.')
    return max(float(np.abs(g - e.cpu().numpy()).max()) if e.numel() else 0.0 for g, e in zip(got, expected))


def onnx_op_counts(path: str) -> Dict[str, int]:
    """How many nodes of each op type the exported graph has (e.g. to check that no ScatterND is left)."""
    import onnx
    counts: Dict[str, int] = {}
    for node in onnx.load(path, load_external_data=False).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts
