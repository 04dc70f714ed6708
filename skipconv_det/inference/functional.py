# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""The lattice domain's operations, as the optimized graphs call them (:mod:`.graph`).

Each works on :class:`~.layout.Lattice` values (a map as its kept lattices) or on plain full maps, and computes
exactly what the eager SkipConv model computes at the positions its consumers read (up to float summation order):

- convolutions that produce a SkipConv's kept lattices: from a padded full map (:func:`conv_lattices`, any kernel),
  from kept lattices (:func:`conv_kept`, 1x1), from cell (0, 0) (:func:`conv_subsampled`, a 1x1 with stride 2, which
  reads only that cell), or from a full map (:func:`conv_gathered`);
- pointwise operations on kept lattices (:func:`lattice_clamp`, :func:`lattice_add`);
- :func:`materialise` (a full map, padded for the convolution that reads it) and :func:`track` (a map's skipped
  lattices), both one write plan (:mod:`.plan`, :mod:`.write`).
"""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.utils import _pair

from .layout import Lattice, PaddedMap, kept_lattices, lattice_extent, lattice_of
from .plan import Target, Term
from .write import kernel_applies, release, write

Value = Union[Lattice, torch.Tensor]


def conv_bias(conv: nn.Conv2d) -> Optional[torch.Tensor]:
    """What a SkipConv adds at its kept positions: its bias plus the shift of a folded BatchNorm."""
    bias, shift = conv.bias, getattr(conv, 'shift', None)
    if shift is None:
        return bias
    return shift if bias is None else bias + shift


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride=1, dilation=1, groups: int = 1,
           activation: Optional[Tuple[float, float]] = None, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``clamp(F.conv2d(x, ...) + residual)`` without padding; the sum and the activation in place on the
    convolution's fresh output (no map allocated for them)."""
    out = F.conv2d(x, weight, bias, _pair(stride), 0, _pair(dilation), groups)
    if residual is not None:
        out.add_(residual)
    if activation is not None:
        out.clamp_(*activation)
    return out


# 1x1 convolutions of kept lattices at most this many positions each run as one convolution of the lattices
# stacked along the batch: small maps reuse each weight for fewer positions, and one call reads it once.
_STACK_POSITIONS = 1024


def _stacked(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The tensors (equal shapes) along the batch: a view where they already lie one after the other in one
    storage (the outputs of a stacked convolution), else a copy."""
    first = tensors[0]
    step = first.shape[0] * first.stride(0)
    if (not torch.compiler.is_compiling() and not torch.jit.is_tracing()
            and all(t.shape == first.shape and t.stride() == first.stride() and t.untyped_storage().data_ptr()
                    == first.untyped_storage().data_ptr() and t.storage_offset() == first.storage_offset() + k * step
                    for k, t in enumerate(tensors))
            and (first.is_contiguous() or first.is_contiguous(memory_format=torch.channels_last))):
        return first.as_strided((len(tensors) * first.shape[0], ) + tuple(first.shape[1:]), first.stride(),
                                first.storage_offset())
    return torch.cat(list(tensors))


def _output_size(size: Sequence[int], conv: nn.Conv2d) -> Tuple[int, int]:
    return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1
                 for n, p, d, k, s in zip(size, conv.padding, conv.dilation, conv.kernel_size, conv.stride))


def _shifted(padded: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """``padded`` read from (rows, cols) on: a view of the same shape and strides starting further into its storage
    where the storage holds it (a :class:`PaddedMap` written with slack), which a convolution reads in place; else a
    slice (which it copies)."""
    if not rows and not cols:
        return padded
    if torch.compiler.is_compiling() or torch.jit.is_tracing():  # storage is not theirs to look at
        return padded[:, :, rows:, cols:]
    offset = padded.storage_offset() + rows * padded.stride(2) + cols * padded.stride(3)
    last = offset + sum((n - 1) * s for n, s in zip(padded.shape, padded.stride()))
    if last < padded.untyped_storage().nbytes() // padded.element_size():
        return padded.as_strided(padded.shape, padded.stride(), offset)
    return padded[:, :, rows:, cols:]


def conv_lattices(source: PaddedMap, conv: nn.Conv2d, activation: Optional[Tuple[float, float]] = None,
                  residual: Optional[Lattice] = None) -> Lattice:
    """A SkipConv's kept lattices from the padded map it reads: per lattice (a, b), one convolution with twice the
    stride along each axis the lattice thins, reading the map from (a, b) strides on.

    Args:
        source (PaddedMap): The input, padded by exactly the conv's padding.
        conv (SkipConv2d): The layer (symmetric zero padding; any kernel, stride, dilation and groups).
        activation: A clamp (low, high) applied to the result (fused where oneDNN runs the conv).
        residual (Lattice, optional): Kept lattices added before the activation.
    """
    padded = source.padded
    (sh, sw), size = conv.stride, tuple(n - 2 * p for n, p in zip(padded.shape[2:], source.pad))
    weight, bias = conv.weight, conv_bias(conv)
    out_size, lattices = _output_size(size, conv), kept_lattices(conv.skip_pattern)
    kept = []
    for a, b in lattices:
        extent = lattice_extent(out_size, (a, b))
        if min(extent) == 0:  # a map too small to hold this lattice
            shape = lattice_extent(out_size, lattices[0]) if kernel_applies(padded) else extent
            kept.append(padded.new_zeros((padded.shape[0], weight.shape[0]) + tuple(shape)))
            continue
        stride = (sh if a is None else 2 * sh, sw if b is None else 2 * sw)
        view = _shifted(padded, (a or 0) * sh, (b or 0) * sw)
        other = None if residual is None else residual.kept[len(kept)]
        kept.append(conv2d(view, weight, bias, stride, conv.dilation, conv.groups, activation, other))
    return Lattice(tuple(kept), out_size, _constant(conv, activation, residual))


def _constant(conv: nn.Conv2d, activation, residual: Optional[Lattice]) -> Optional[torch.Tensor]:
    """A conv output's constant while it is linear: its shift, plus a linear residual's constant."""
    if activation is not None:
        return None
    constants = [c for c in (getattr(conv, 'shift', None), None if residual is None else residual.constant)
                 if c is not None]
    return None if not constants else constants[0] if len(constants) == 1 else constants[0] + constants[1]


def conv_kept(x: Lattice, conv: nn.Conv2d, activation: Optional[Tuple[float, float]] = None,
              residual: Optional[Lattice] = None) -> Lattice:
    """A 1x1, stride-1 SkipConv of a map carried as the same pattern's kept lattices: it reads only those.
    ``activation`` and ``residual`` as in :func:`conv_lattices`."""
    weight, bias = conv.weight, conv_bias(conv)
    first = x.kept[0]
    if len(x.kept) > 1 and first.shape[2] * first.shape[3] <= _STACK_POSITIONS and all(
            t.shape == first.shape for t in x.kept):
        others = None if residual is None else _stacked(residual.kept)
        out = conv2d(_stacked(x.kept), weight, bias, 1, 1, conv.groups, activation, others)
        kept = tuple(out.split(first.shape[0]))
    else:
        kept = tuple(conv2d(t, weight, bias, 1, 1, conv.groups, activation,
                            None if residual is None else residual.kept[k]) for k, t in enumerate(x.kept))
    return Lattice(kept, x.size, _constant(conv, activation, residual))


def cell00(x: Lattice, pattern: str) -> torch.Tensor:
    """Cell (0, 0) of a map carried as kept lattices (which must hold it): the whole input of a 1x1 conv with
    stride 2, which reads positions (2i, 2j) only."""
    lattices = kept_lattices(pattern)
    index = lattice_of((0, 0), lattices)
    a, b = lattices[index]
    t = x.kept[index]
    if a is None:
        t = t[:, :, ::2]
    if b is None:
        t = t[:, :, :, ::2]
    rows, cols = ((n + 1) // 2 for n in x.size)
    if tuple(t.shape[2:]) != (rows, cols):
        t = t[:, :, :rows, :cols]
    return t


def gather(x: torch.Tensor, pattern: str, lattice_shape: bool) -> Tuple[torch.Tensor, ...]:
    """The kept lattices of a full map, each a contiguous tensor in ``x``'s layout; with ``lattice_shape``, each
    padded to the size of the first (as the kernel path stores lattices, see layout)."""
    memory_format = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and not \
        x.is_contiguous() else torch.contiguous_format
    lattices = kept_lattices(pattern)
    first = lattice_extent(tuple(x.shape[2:]), lattices[0])
    out = []
    for a, b in lattices:
        t = x[:, :, slice(None) if a is None else slice(a, None, 2), slice(None) if b is None else slice(b, None, 2)]
        if lattice_shape and tuple(t.shape[2:]) != first:
            t = F.pad(t, (0, first[1] - t.shape[3], 0, first[0] - t.shape[2]))
        out.append(t.contiguous(memory_format=memory_format))
    return tuple(out)


def gather_lattices(x: torch.Tensor, pattern: str, stride: Tuple[int, int] = (1, 1)) -> Lattice:
    """The kept lattices of a full map (subsampled by ``stride`` first): what a 1x1 SkipConv of it reads."""
    if tuple(stride) != (1, 1):
        x = x[:, :, ::stride[0], ::stride[1]]
    return Lattice(gather(x, pattern, kernel_applies(x)), tuple(x.shape[2:]))


def conv_subsampled(x: Lattice, pattern: str, conv: nn.Conv2d, activation: Optional[Tuple[float, float]] = None,
                    residual: Optional[Lattice] = None) -> Union[Lattice, torch.Tensor]:
    """A 1x1, stride-2 conv of a map carried as kept lattices that hold cell (0, 0), the only positions it reads: a
    SkipConv gives its kept lattices, a dense conv its full output."""
    cell = cell00(x, pattern)
    if not hasattr(conv, 'skip_pattern'):
        return F.conv2d(cell, conv.weight, conv.bias, 1, 0, 1, conv.groups)
    lattices = gather(cell, conv.skip_pattern, kernel_applies(cell))
    return conv_kept(Lattice(lattices, tuple(cell.shape[2:])), conv, activation, residual)


def lattice_clamp(x: Lattice, low: float, high: float) -> Lattice:
    """An activation (ReLU, ReLU6, Hardtanh) at the kept positions."""
    return Lattice(tuple(torch.clamp(t, low, high) for t in x.kept), x.size)


def lattice_add(x: Lattice, y: Lattice) -> Lattice:
    """The sum of two maps carried as the same pattern's kept lattices; a sum of linear maps is linear, with the sum
    of their constants."""
    kept = tuple(torch.add(a, b) for a, b in zip(x.kept, y.kept))
    constants = [c for c in (x.constant, y.constant) if c is not None]
    constant = None if not constants else constants[0] if len(constants) == 1 else constants[0] + constants[1]
    return Lattice(kept, x.size, constant)


def lattice_attr(x: Lattice, name: str):
    """``getattr`` of the full map a lattice value stands for: shape, dtype, device, ndim."""
    if name == 'shape':
        return x.shape
    if name == 'ndim':
        return 4
    return getattr(x.kept[0], name)


def lattice_method(x: Lattice, name: str, *args):
    """``size()`` and ``dim()`` of the full map a lattice value stands for."""
    if name == 'dim':
        return 4
    return x.shape if not args else x.shape[args[0]]


def _inputs(terms: Sequence[Tuple[str, Optional[str], Optional[str]]], values: Sequence[Value]):
    """The tensors, constants and map size of a write's terms."""
    inputs, constants, size = [], [], None
    for (kind, _, _), value in zip(terms, values):
        if kind == 'full':
            inputs.append(value)
            constants.append(None)
            size = size or tuple(value.shape[2:])
        else:
            inputs += value.kept
            if kind == 'explicit':
                inputs += value.skipped
            constants.append(value.constant if kind == 'linear' else None)
            size = size or tuple(value.size)
    return inputs, constants, size


def materialise(terms: Sequence[Tuple[str, Optional[str], Optional[str]]], values: Sequence[Value],
                clamp: Optional[Tuple[float, float]] = None, pad: Tuple[int, int] = (0, 0), pad_value: float = 0.0,
                slack: Tuple[int, int] = (0, 0), reuse: bool = False) -> PaddedMap:
    """The full map ``clamp(sum of terms)``, inside a border of ``pad`` for the convolution that reads it.

    Args:
        terms: Per value, ``(kind, pattern, fill)`` of a :class:`~.plan.Term`.
        values: The terms' values: lattice values, or full maps for ``'full'`` terms.
        clamp: The activation as (low, high), or None.
        pad: The border (pad_h, pad_w).
        pad_value: What the border holds (-inf for a max pool).
        slack: The largest (row, column) shift its readers view it at (see :func:`conv_lattices`).
        reuse: Write into storage released by earlier maps (:func:`release`), and let it be released in turn: for
            a map that nothing holds after its readers.
    """
    inputs, constants, size = _inputs(terms, values)
    like = inputs[0]
    row_stride = (size[1] + 2 * pad[1]) * like.shape[1]
    extra = slack[0] * row_stride + slack[1] * like.shape[1]
    padded, = write(tuple(Term(*t) for t in terms), inputs, constants, size, Target('map'), clamp, tuple(pad),
                    pad_value, extra, reuse)
    return PaddedMap(padded, tuple(pad), padded._base if reuse and padded._base is not None else None)


def track(value: Lattice, pattern: str, terms: Sequence[Tuple[str, Optional[str], Optional[str]]],
          values: Sequence[Value], clamp: Optional[Tuple[float, float]] = None) -> Lattice:
    """``value`` (kept lattices computed) with its skipped lattices, ``clamp(sum of terms)`` there."""
    inputs, constants, size = _inputs(terms, values)
    skipped = write(tuple(Term(*t) for t in terms), inputs, constants, size, Target('skipped', pattern), clamp)
    return value._replace(skipped=tuple(skipped))


def pad_map(x: torch.Tensor, pad: Tuple[int, int], pad_value: float = 0.0, slack: Tuple[int, int] = (0, 0),
            reuse: bool = False) -> PaddedMap:
    """A full map copied inside a border (for a convolution's lattices, :func:`conv_lattices`); ``reuse`` as in
    :func:`materialise`."""
    return materialise((('full', None, None), ), (x, ), None, pad, pad_value, slack, reuse)


def full_map(x: PaddedMap) -> torch.Tensor:
    """The map inside a padded map."""
    return x.map


def pool_lattices(source: PaddedMap, pattern: str, kernel_size: Tuple[int, int], stride: Tuple[int, int],
                  dilation: Tuple[int, int]) -> Lattice:
    """A max pool's outputs at a pattern's kept lattices, from its input padded with -inf (as max pooling pads)."""
    padded = source.padded
    size = tuple(n - 2 * p for n, p in zip(padded.shape[2:], source.pad))
    kept = []
    for a, b in kept_lattices(pattern):
        lattice_stride = (stride[0] if a is None else 2 * stride[0], stride[1] if b is None else 2 * stride[1])
        view = _shifted(padded, (a or 0) * stride[0], (b or 0) * stride[1])
        kept.append(F.max_pool2d(view, kernel_size, lattice_stride, 0, dilation))
    out_size = tuple((n + 2 * p - d * (k - 1) - 1) // s + 1
                     for n, p, d, k, s in zip(size, source.pad, dilation, kernel_size, stride))
    return Lattice(tuple(kept), out_size)


__all__ = [
    'conv2d', 'conv_bias', 'gather_lattices', 'conv_kept', 'conv_lattices', 'conv_subsampled', 'full_map', 'gather',
    'lattice_add', 'lattice_attr', 'lattice_clamp', 'lattice_method', 'materialise', 'pad_map', 'pool_lattices',
    'release', 'track'
]
