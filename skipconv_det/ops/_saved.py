# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""What SkipConv's lattice convolutions keep for backward.

A lattice convolution often reads a copy of the layer's input x: one padded copy (small inputs), a crop, a
subsampling (1x1 kernels) or a thin border strip. A convolution keeps its input for the weight gradient, so each
copy would stay alive until backward beside x itself, which the layer before usually keeps anyway: a SkipConv
training step would hold more activations than the dense one. While :meth:`InputCopies.saved_as_recipes` is
active, autograd keeps x and how each copy was made instead, and backward makes the copy again: a copy costs little
next to the convolution that reads it, and the gradients are bit for bit the same.
"""
import weakref
from contextlib import nullcontext
from typing import Callable, Dict, Optional, Tuple

import torch


def _key(t: torch.Tensor) -> Tuple:
    return t.data_ptr(), tuple(t.shape), t.stride(), t.dtype


class InputCopies:
    """The copies of ``x`` that a SkipConv's lattice convolutions read, each with how to make it from x.

    Args:
        x (Tensor): The layer's input.
        *operands (Tensor | None): The layer's other operands (weight, bias). Unless autograd will keep anything
            (grad mode on and an operand requiring grad), or when the jit tracer or torch.compile traces (they see
            the plain ops), :meth:`make` just makes the copies.
    """

    def __init__(self, x: torch.Tensor, *operands) -> None:
        self._x = x
        self._active = (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, *operands))
                        and not torch.jit.is_tracing() and not torch.compiler.is_compiling())
        # Key of a copy -> (weak reference to it, ((fn, args), ...) applied to x in turn). A key is only good while
        # its copy lives: another tensor may take a freed copy's memory, shape and all.
        self._recipes: Dict[Tuple, Tuple[weakref.ref, Tuple]] = {}

    def _recipe(self, t: torch.Tensor) -> Optional[Tuple]:
        copy, recipe = self._recipes.get(_key(t), (lambda: None, None))
        return recipe if copy() is not None else None

    def make(self, fn: Callable, source: torch.Tensor, *args) -> torch.Tensor:
        """``fn(source, *args)``, remembered as a copy of x when ``source`` is x or a copy made here."""
        copy = fn(source, *args)
        if self._active:
            parent = () if source is self._x else self._recipe(source)
            if parent is not None and copy.numel():
                self._recipes[_key(copy)] = weakref.ref(copy), parent + ((fn, args), )
        return copy

    def alias(self, view: torch.Tensor, source: torch.Tensor) -> None:
        """Remember ``view`` (all of ``source``, as a new tensor) as x or as the copy ``source`` is."""
        recipe = () if source is self._x else self._recipe(source)
        if self._active and recipe is not None and view.numel():
            self._recipes[_key(view)] = weakref.ref(view), recipe

    def saved_as_recipes(self):
        """A context in which autograd keeps, for a copy made by :meth:`make`, x and the copy's recipe."""
        if not self._active:
            return nullcontext()
        return torch.autograd.graph.saved_tensors_hooks(self._pack, _unpack)

    def _pack(self, t: torch.Tensor):
        recipe = self._recipe(t)
        return t if recipe is None else (self._x, self._x._version, recipe)


def _unpack(packed):
    if isinstance(packed, torch.Tensor):
        return packed
    x, version, recipe = packed
    if x._version != version:  # what autograd checks for the tensors it keeps itself
        raise RuntimeError('The input of a SkipConv2d, needed for its gradient, has been modified by an inplace '
                           'operation; clone it before modifying it (or modify a copy).')
    with torch.no_grad():
        for fn, args in recipe:
            x = fn(x, *args)
    return x
