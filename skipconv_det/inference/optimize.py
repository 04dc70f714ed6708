# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""``optimize_for_inference``: fold BatchNorm, then run SkipConv features in the lattice domain.

Named after ``torch.jit.optimize_for_inference``. The model is changed in place and keeps its modules, parameters,
state_dict and class: what changes is the ``forward`` of the parts that were rewritten (and, for a detector, its
``extract_feat``), each replaced by a ``torch.fx`` graph (:mod:`.graph`) that calls the same layers. Which parts:

- a detector's ``extract_feat`` (backbone, then neck), as one graph, so that features cross from the backbone to
  the neck as kept lattices where the neck reads only those (SkipConv 1x1 laterals);
- then, top-down, every module with SkipConvs whose forward traces: the backbone alone (its outputs complete), the
  neck alone (a tuple of maps traces as one placeholder each, from ``in_channels``), or, where a forward does not
  trace (data-dependent control flow), its children.

Anything else runs exactly as before. The optimized model is for inference only (``eval()``, no gradients).
"""
import inspect
from typing import List, Optional

import torch.fx as fx
import torch.nn as nn

from ..models import fuse_conv_bn
from ..ops import SkipConv2d
from .graph import LatticeGraph, LatticeTracer


class _FeatureExtractor(nn.Module):
    """A detector's ``extract_feat`` as a module to trace: the backbone, then the neck."""

    def __init__(self, backbone: nn.Module, neck: Optional[nn.Module]):
        super().__init__()
        self.backbone, self.neck = backbone, neck

    def forward(self, x):
        x = self.backbone(x)
        return self.neck(x) if self.neck is not None else x


class LatticeForward:
    """What an optimized module's ``forward`` (or a detector's ``extract_feat``) becomes: the rewritten graph,
    refusing to run in training mode (BatchNorm is folded, and the graph takes no gradients)."""

    def __init__(self, owner: nn.Module, graph_module: fx.GraphModule):
        self.owner, self.graph_module = owner, graph_module

    def __call__(self, *args, **kwargs):
        if self.owner.training:
            raise RuntimeError(f'{type(self.owner).__name__} was optimized for inference (BatchNorm folded, features '
                               'in the lattice domain); it cannot train. Call .eval(), or rebuild the model.')
        return self.graph_module(*args, **kwargs)


def _trace(module: nn.Module) -> fx.Graph:
    """The module's forward as a graph; a forward that takes a tuple of maps (a neck) is traced with one
    placeholder per input level (``in_channels``)."""
    try:
        return LatticeTracer().trace(module)
    except Exception:
        levels = getattr(module, 'in_channels', None)
        params = list(inspect.signature(module.forward).parameters)
        if not isinstance(levels, (list, tuple)) or not params:
            raise
        return LatticeTracer().trace(module, concrete_args={params[0]: tuple(fx.PH for _ in levels)})


def _lattice_module(module: nn.Module) -> Optional[fx.GraphModule]:
    """The module's forward rewritten into the lattice domain, or None where it does not trace or nothing in it
    travels as kept lattices."""
    try:
        graph = _trace(module)
        lattice = LatticeGraph(graph, module)
        if not lattice.lattice_values:
            return None
        new = lattice.rewrite()
    except Exception:  # a forward fx cannot trace, or a graph the rewrite refuses: its children are tried
        return None
    new._codegen = graph._codegen  # the traced calling convention (e.g. a tuple of levels)
    return fx.GraphModule(module, new, f'Lattice{type(module).__name__}')


def _has_skipconv(module: nn.Module) -> bool:
    return any(isinstance(m, SkipConv2d) for m in module.modules())


def _optimize(module: nn.Module, done: List[str], prefix: str) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d) or not _has_skipconv(child):
            continue
        graph_module = _lattice_module(child)
        if graph_module is not None:
            child.forward = LatticeForward(child, graph_module)
            done.append(prefix + name)
        else:
            _optimize(child, done, prefix + name + '.')


def optimize_for_inference(model: nn.Module) -> nn.Module:
    """Fold BatchNorm into the convs (exactly, :func:`skipconv_det.models.fuse_conv_bn`) and run SkipConv features
    in the lattice domain, in place: between layers a feature map travels as the kept lattices of its SkipConv
    pattern, and is materialised (filled, with the activation and residual sum pending on it, in one pass) only where
    a consumer reads its skipped positions. Outputs equal the eager model's up to float summation order.

    Args:
        model (nn.Module): A model with SkipConv layers (a detector, classifier, backbone, ...). Put it in eval
            mode; it is for inference only afterwards.

    Returns:
        nn.Module: ``model`` itself. ``model.lattice_regions`` lists the names of the parts that were rewritten
        (``'extract_feat'`` for a detector's backbone and neck together).
    """
    model.eval()
    fuse_conv_bn(model)
    done: List[str] = []
    extract_feat = getattr(model, 'extract_feat', None)
    backbone = getattr(model, 'backbone', None)
    if (callable(extract_feat) and isinstance(backbone, nn.Module)
            and len(inspect.signature(extract_feat).parameters) == 1):
        graph_module = _lattice_module(_FeatureExtractor(backbone, getattr(model, 'neck', None)))
        if graph_module is not None:
            model.extract_feat = LatticeForward(model, graph_module)
            done.append('extract_feat')
    if isinstance(model, nn.Conv2d) or not _has_skipconv(model):
        pass
    elif not done and (graph_module := _lattice_module(model)) is not None:
        model.forward = LatticeForward(model, graph_module)
        done.append('')
    else:
        _optimize(model, done, '')
    model.lattice_regions = tuple(done)
    return model
