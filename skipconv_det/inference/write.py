# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""Run a write plan (:mod:`.plan`): materialise a lattice-domain map, or compute its skipped lattices.

In eager CPU inference a compiled kernel (``csrc/write_regions.cpp``) writes every target position once, reading the
lattice tensors in place. Elsewhere (other devices, ``torch.compile``, ONNX export, or without the kernel) the same
plan runs as PyTorch ops: each cell of the target is assembled from strided slices of the inputs and the cells are
interleaved with stacks and reshapes, which inductor fuses into one kernel and exporters record as plain ops.
"""
import logging
import os
import threading
import warnings
from contextlib import nullcontext
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .layout import Cell, PaddedMap, complement, kept_lattices, lattice_extent
from .plan import CellPlan, Region, Target, Term, plan_cells, plan_write, planned, target_position

Clamp = Optional[Tuple[float, float]]  # an activation as clamp(low, high): ReLU is (0, inf); None: none

_SOURCE = Path(__file__).parent / 'csrc' / 'write_regions.cpp'
_kernel = None  # the built module; False when it could not be built


def _load_kernel():
    """Build (once per machine and source, cached by torch) and import the kernel; None where it is off or failed."""
    global _kernel
    if _kernel is None:
        _kernel = False
        if os.environ.get('SKIPCONV_DET_EXTENSION', '1') != '0':
            # torch.utils.cpp_extension logs a warning on import on machines without CUDA, which says nothing about
            # a CPU kernel.
            logger = logging.getLogger('torch.utils.cpp_extension')
            level = logger.level
            logger.setLevel(logging.ERROR)
            try:
                from torch.utils import cpp_extension
                _kernel = cpp_extension.load(name='skipconv_det_lattice', sources=[str(_SOURCE)],
                                             extra_cflags=['-O3', '-fopenmp'], extra_ldflags=['-fopenmp'])
            except Exception as error:  # no compiler, a failed build: the PyTorch ops do the same work
                warnings.warn(f'skipconv_det: the lattice-domain kernel could not be built ({error}); '
                              'optimize_for_inference uses PyTorch ops instead (same results, slower).')
            finally:
                logger.setLevel(level)
    return _kernel or None


def build_kernel() -> bool:
    """Build the kernel now (``make install`` does); whether it is available."""
    return _load_kernel() is not None


def kernel_applies(like: torch.Tensor) -> bool:
    """Whether the compiled kernel writes for ``like``'s device here: eager CPU, not tracing, compiling or
    exporting, the kernel built."""
    return (not torch.compiler.is_compiling() and not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export()
            and like.device.type == 'cpu' and _load_kernel() is not None)


class _KernelPlan:
    """A plan converted once for the kernel (per target layout: the padding moves the regions)."""
    __slots__ = ('plan', )

    def __init__(self, kernel, regions: Tuple[Region, ...], target: Target, pad: Tuple[int, int]):
        converted = []
        for region in regions:
            index, row, row_step, col, col_step = target_position(target, region, pad)
            sources = [kernel.Source(input=s.input, row=s.row, row_step=s.row_step, col=s.col, col_step=s.col_step,
                                     weight=s.weight) for s in region.sources]
            constant = _constant_index(region.constant_terms, _constant_sets(regions))
            converted.append(kernel.Region(target=index, row=row, rows=region.rows, row_step=row_step, col=col,
                                           cols=region.cols, col_step=col_step, sources=sources, constant=constant))
        self.plan = kernel.Plan(regions=converted)


@lru_cache(maxsize=4096)
def _kernel_plan(terms: Tuple[Term, ...], size: Tuple[int, int], target: Target, pad: Tuple[int, int]) -> _KernelPlan:
    return _KernelPlan(_load_kernel(), plan_write(terms, size, target), target, pad)


def _constant_sets(regions: Sequence[Region]) -> Tuple[Tuple[int, ...], ...]:
    """The distinct non-empty sets of terms whose constants regions add, in a fixed order."""
    return tuple(sorted({r.constant_terms for r in regions if r.constant_terms}))


def _constant_index(terms: Tuple[int, ...], sets: Tuple[Tuple[int, ...], ...]) -> int:
    return sets.index(terms) if terms else -1


def _summed_constants(regions: Sequence[Region], constants: Sequence[Optional[torch.Tensor]], like: torch.Tensor
                      ) -> List[torch.Tensor]:
    """Per constant set, the sum of the terms' constants (a term without one adds 0)."""
    out = []
    for terms in _constant_sets(regions):
        values = [constants[t] for t in terms if constants[t] is not None]
        total = like.new_zeros(like.shape[1]) if not values else values[0].to(like.dtype)
        for value in values[1:]:
            total = total + value.to(like.dtype)
        out.append(total.contiguous())
    return out


def write(terms: Tuple[Term, ...], inputs: Sequence[torch.Tensor], constants: Sequence[Optional[torch.Tensor]],
          size: Tuple[int, int], target: Target, clamp: Clamp = None, pad: Tuple[int, int] = (0, 0),
          pad_value: float = 0.0, slack: int = 0, reuse: bool = False) -> List[torch.Tensor]:
    """``clamp(sum of terms)`` at every position of ``target``.

    Args:
        terms: The summands (:class:`~.plan.Term`).
        inputs: Their tensors, in order (:meth:`~.plan.Term.num_inputs` each).
        constants: Per term, a linear term's constant (per channel) or None.
        size: (H, W) of the full map.
        target: The full map, or the skipped lattices of a pattern.
        clamp: The activation as (low, high), or None.
        pad: For a full map, a border of (pad_h, pad_w) around it, filled with ``pad_value``.
        slack: For a full map, elements of storage past its end (see :class:`~.layout.PaddedMap`).
        reuse: For a full map, write it into released storage where there is some (see :func:`release`).

    Returns:
        list[Tensor]: ``[padded map]`` (the map is its inside), or the skipped lattices.
    """
    like = inputs[0]
    if kernel_applies(like):
        storage = None
        if reuse and target.kind == 'map':
            n, c = like.shape[:2]
            storage = _buffers.take(n * c * (size[0] + 2 * pad[0]) * (size[1] + 2 * pad[1]) + slack, like)
        return _write_by_kernel(terms, inputs, constants, size, target, clamp, pad, pad_value, slack, storage)
    return _write_by_torch_ops(terms, inputs, constants, size, target, clamp, pad, pad_value)


class _Buffers(threading.local):
    """Storage of materialised maps that their last reader has released (per thread): a map written into memory
    that was written before costs no page faults, which on the CPU are about half of writing a fresh map."""

    def __init__(self):
        self.free: List[torch.Tensor] = []

    def take(self, numel: int, like: torch.Tensor) -> torch.Tensor:
        """A flat tensor of at least ``numel`` elements like ``like``: the smallest free one that fits, else new."""
        fits = [b for b in self.free if b.numel() >= numel and b.dtype == like.dtype and b.device == like.device]
        if fits:
            best = min(fits, key=lambda b: b.numel())
            self.free = [b for b in self.free if b is not best]
            return best
        return torch.empty(numel, dtype=like.dtype, device=like.device)

    def give(self, buffer: torch.Tensor) -> None:
        self.free.append(buffer)
        if len(self.free) > _KEPT_BUFFERS:
            self.free.sort(key=lambda b: b.numel())
            self.free.pop(0)


_KEPT_BUFFERS = 4  # free buffers kept for reuse, per thread
_buffers = _Buffers()


def release(map_: PaddedMap) -> None:
    """Give a materialised map's storage back for reuse: the rewritten graph calls it after the map's last reader,
    where nothing else holds the map (:mod:`.graph` checks that)."""
    if map_.storage is not None:
        _buffers.give(map_.storage)


def _empty_like_layout(like: torch.Tensor, shape: Sequence[int], slack: int = 0,
                       storage: Optional[torch.Tensor] = None) -> torch.Tensor:
    """An uninitialised tensor of ``shape`` in ``like``'s memory format, with ``slack`` zeroed elements of storage
    after it, in ``storage`` (a flat tensor large enough) if given."""
    channels_last = like.dim() == 4 and like.is_contiguous(memory_format=torch.channels_last) and not \
        like.is_contiguous()
    n, c, h, w = shape
    numel = n * c * h * w
    if storage is None:
        storage = torch.empty(numel + slack, dtype=like.dtype, device=like.device)
    if slack:
        storage[numel:numel + slack].zero_()
    strides = (c * h * w, 1, w * c, c) if channels_last else (c * h * w, h * w, w, 1)
    return storage.as_strided(tuple(shape), strides)


def _fill_border(padded: torch.Tensor, pad: Tuple[int, int], value: float) -> None:
    ph, pw = pad
    if ph:
        padded[:, :, :ph].fill_(value)
        padded[:, :, -ph:].fill_(value)
    if pw:
        padded[:, :, ph:padded.shape[2] - ph, :pw].fill_(value)
        padded[:, :, ph:padded.shape[2] - ph, -pw:].fill_(value)


def _write_by_kernel(terms, inputs, constants, size, target, clamp, pad, pad_value, slack,
                     storage=None) -> List[torch.Tensor]:
    like = inputs[0]
    n, c = like.shape[:2]
    if target.kind == 'map':
        targets = [_empty_like_layout(like, (n, c, size[0] + 2 * pad[0], size[1] + 2 * pad[1]), slack, storage)]
        _fill_border(targets[0], pad, pad_value)
    else:
        # Each skipped lattice stored in the shape of the pattern's first kept lattice (see layout).
        shape = (n, c) + lattice_extent(size, kept_lattices(target.pattern)[0])
        targets = [_empty_like_layout(like, shape) for _ in complement(target.pattern)]
    regions = plan_write(terms, size, target)
    kernel = _load_kernel()
    low, high = clamp if clamp is not None else (0.0, 0.0)
    # Named for torch.profiler, which sees only ATen ops otherwise (tools/benchmark.py model --profile); the
    # record costs a few microseconds a call, so only while a profiler runs.
    profiled = torch.autograd._profiler_enabled()
    with torch.profiler.record_function('skipconv_det_lattice::write_regions') if profiled else nullcontext():
        kernel.write_regions(targets=targets, inputs=list(inputs), plan=_kernel_plan(terms, size, target, pad).plan,
                             constants=_summed_constants(regions, constants, like), clamp=clamp is not None,
                             low=float(low), high=float(high))
    return targets


def _block_map(like: torch.Tensor, weight) -> torch.Tensor:
    """A :data:`~.plan.BlockMap` as a (1, 1, h, w) tensor like ``like``."""
    rows, cols, values = weight
    return torch.cat([
        torch.cat([like.new_full((1, 1, h, w), v) for w, v in zip(cols, row_values)], dim=3)
        for h, row_values in zip(rows, values)
    ], dim=2)


def _weighted(value: torch.Tensor, weight, like: torch.Tensor) -> torch.Tensor:
    if isinstance(weight, tuple):
        return value * _block_map(like, weight)
    return value if weight == 1.0 else value * weight


def _cell_tensor(plan: CellPlan, inputs, padded, constant_of, like) -> torch.Tensor:
    """A cell of the target: the sum of its sources' whole-cell slices (inputs read through ``padded``: zero borders
    where a slice runs past an input) and constants."""
    h, w = plan.size
    total = None
    for s in plan.sources:
        x, (top, left) = padded[s.input]
        part = x[:, :, top + s.row:top + s.row + s.row_step * (h - 1) + 1:s.row_step,
                 left + s.col:left + s.col + s.col_step * (w - 1) + 1:s.col_step]
        part = _weighted(part, s.weight, like)
        total = part if total is None else total + part
    for terms, weight in plan.constants:
        constant = constant_of(terms)
        if constant is None:
            continue
        part = _weighted(constant.to(like.dtype).view(1, -1, 1, 1).expand(like.shape[0], -1, h, w), weight, like)
        total = part if total is None else total + part
    if total is None:
        total = like.new_zeros((like.shape[0], like.shape[1], h, w))
    return total


def _padded_inputs(plans: Sequence[CellPlan], inputs: Sequence[torch.Tensor]):
    """Each input with the zero border its cells' slices need: ``[(tensor, (top, left))]``."""
    need = [[0, 0, 0, 0] for _ in inputs]  # top, bottom, left, right
    for plan in plans:
        h, w = plan.size
        for s in plan.sources:
            x, n = inputs[s.input], need[s.input]
            n[0], n[2] = max(n[0], -s.row), max(n[2], -s.col)
            n[1] = max(n[1], s.row + s.row_step * (h - 1) - (x.shape[2] - 1))
            n[3] = max(n[3], s.col + s.col_step * (w - 1) - (x.shape[3] - 1))
    return [(F.pad(x, (n[2], n[3], n[0], n[1])) if any(n) else x, (n[0], n[2])) for x, n in zip(inputs, need)]


def interleave(cells: Dict[Cell, torch.Tensor], size: Tuple[int, int]) -> torch.Tensor:
    """The (N, C, H, W) map whose cell (a, b) is ``cells[a, b]``: a pixel shuffle written as two interleaving stacks
    (columns within each row parity, then rows), each cell first padded to the size of cell (0, 0)."""
    height, width = (-(-n // 2) for n in size)
    padded = {cell: t if tuple(t.shape[2:]) == (height, width) else
              F.pad(t, (0, width - t.shape[3], 0, height - t.shape[2])) for cell, t in cells.items()}
    rows = [torch.stack((padded[a, 0], padded[a, 1]), dim=-1).flatten(3) for a in (0, 1)]
    out = torch.stack(rows, dim=3).flatten(2, 3)
    if tuple(out.shape[2:]) != tuple(size):
        out = out[:, :, :size[0], :size[1]]
    return out


def _interleave_axis(first: torch.Tensor, second: torch.Tensor, dim: int, count: int) -> torch.Tensor:
    """Interleave two tensors along ``dim`` (first at even indices), ``count`` entries in all."""
    if second.shape[dim] < first.shape[dim]:
        pad = [0, 0, 0, 0]
        pad[(3 - dim) * 2 + 1] = first.shape[dim] - second.shape[dim]
        second = F.pad(second, pad)
    out = torch.stack((first, second), dim=dim + 1).flatten(dim, dim + 1)
    return out.narrow(dim, 0, count)


def _write_by_torch_ops(terms, inputs, constants, size, target, clamp, pad, pad_value) -> List[torch.Tensor]:
    like = inputs[0]
    plans = planned(plan_cells)(terms, size, target)
    padded = _padded_inputs(plans, inputs)
    summed = {}

    def constant_of(term_set):
        if term_set not in summed:
            values = [constants[t] for t in term_set if constants[t] is not None]
            summed[term_set] = None if not values else values[0] if len(values) == 1 else sum(values[1:], values[0])
        return summed[term_set]

    cells = {plan.cell: _cell_tensor(plan, inputs, padded, constant_of, like) for plan in plans}
    if target.kind == 'map':
        outs = [interleave(cells, size)]
    else:
        outs = []
        for a, b in complement(target.pattern):
            if a is not None and b is not None:
                outs.append(cells[a, b])
            elif a is None:
                outs.append(_interleave_axis(cells[0, b], cells[1, b], 2, size[0]))
            else:
                outs.append(_interleave_axis(cells[a, 0], cells[a, 1], 3, size[1]))
    if clamp is not None:
        outs = [torch.clamp(o, clamp[0], clamp[1]) for o in outs]
    if target.kind == 'map' and any(pad):
        outs = [F.pad(outs[0], (pad[1], pad[1], pad[0], pad[0]), value=pad_value)]
    return outs
