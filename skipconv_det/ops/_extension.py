# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""SkipConv's compiled CPU kernels (``csrc/``), built on first use with torch's JIT extension builder and cached
by it (``TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``); ``make install`` builds them once.

They only speed up eager SkipConv on the CPU; every op has its PyTorch formulation, used where the kernels are
not built (no C++ compiler, ``SKIPCONV_DET_EXTENSION=0``), on other devices, and under tracing or compiling.
"""
import logging
import os
import warnings
from pathlib import Path
from typing import Optional

import torch

_SOURCES = [Path(__file__).parent / 'csrc' / 'fill.cpp']
_loaded: Optional[bool] = None  # None: not tried yet


def enabled() -> bool:
    """Whether the kernels may be used (``SKIPCONV_DET_EXTENSION=0`` turns them off)."""
    return os.environ.get('SKIPCONV_DET_EXTENSION', '1') != '0'


def load(verbose: bool = False) -> bool:
    """Build (once per machine and source) and load the kernels; whether they are available. A failed build
    warns once and leaves SkipConv on its PyTorch ops."""
    global _loaded
    if _loaded is None:
        _loaded = False
        if enabled():
            cpp_extension = _import_cpp_extension()
            try:
                cpp_extension.load(
                    name='skipconv_det_cpu',
                    sources=[str(s) for s in _SOURCES],
                    extra_cflags=['-O3', '-fopenmp'],
                    extra_ldflags=['-fopenmp'],
                    is_python_module=False,
                    verbose=verbose)
                _loaded = True
            except Exception as error:  # no compiler, no ninja, a failed build: PyTorch ops do the same work
                warnings.warn(f'skipconv_det: the CPU kernels could not be built ({error}); SkipConv uses its '
                              'PyTorch ops instead (same results, slower fills). Set SKIPCONV_DET_EXTENSION=0 '
                              'to skip the build.')
    return _loaded


def _import_cpp_extension():
    # torch.utils.cpp_extension logs a warning on import on machines without CUDA ("No CUDA runtime is found"),
    # which says nothing about these CPU kernels.
    logger = logging.getLogger('torch.utils.cpp_extension')
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        from torch.utils import cpp_extension
    finally:
        logger.setLevel(level)
    return cpp_extension


def fill_kernel_applies(out: torch.Tensor) -> bool:
    """Whether the kernels (``torch.ops.skipconv_det.apply_fill_``, ``assemble_``, ``disassemble_``) can write
    ``out`` here: a 4D CPU tensor, outside tracing and compiling, with the kernels built."""
    return (out.device.type == 'cpu' and out.dim() == 4 and not torch.jit.is_tracing()
            and not torch.compiler.is_compiling() and load())
