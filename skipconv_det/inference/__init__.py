"""Inference in the lattice domain: SkipConv features carried between layers as their kept lattices
(docs/operator.md, "Lattice-domain inference"), materialised only where a consumer reads skipped positions."""
from .layout import Lattice, PaddedMap
from .optimize import optimize_for_inference

__all__ = ['Lattice', 'PaddedMap', 'optimize_for_inference']
