# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""Building SkipConv's compiled CPU kernels (``csrc/``, a Python module): on first use with torch's JIT extension
builder, cached by it (``TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``); ``make install`` builds
them once.

They only speed up eager SkipConv on the CPU; every kernel has its PyTorch formulation, used where the kernels are
not built (no C++ compiler, ``SKIPCONV_DET_EXTENSION=0``), on other devices, and under tracing or compiling.
:mod:`._kernels` calls them.
"""
import logging
import os
import warnings
from pathlib import Path
from types import ModuleType
from typing import Optional

_CSRC = Path(__file__).parent / 'csrc'
# The sources, one per kernel, and the module that binds them (their shared headers lie beside them).
SOURCES = [_CSRC / name for name in ('fill_in_place.cpp', 'assemble_nchw.cpp', 'disassemble_nchw.cpp', 'module.cpp')]
_loaded: Optional[bool] = None  # None: not tried yet
_module: Optional[ModuleType] = None


def enabled() -> bool:
    """Whether the kernels may be used (``SKIPCONV_DET_EXTENSION=0`` turns them off)."""
    return os.environ.get('SKIPCONV_DET_EXTENSION', '1') != '0'


def load(verbose: bool = False) -> bool:
    """Build (once per machine and source) and load the kernels; whether they are available. A failed build
    warns once and leaves SkipConv on its PyTorch ops."""
    global _loaded, _module
    if _loaded is None:
        _loaded = False
        if enabled():
            cpp_extension = _import_cpp_extension()
            try:
                _module = cpp_extension.load(
                    name='skipconv_det_kernels',
                    sources=[str(s) for s in SOURCES],
                    extra_cflags=['-O3', '-fopenmp'],
                    extra_ldflags=['-fopenmp'],
                    is_python_module=True,
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


def module() -> ModuleType:
    """The kernels' Python module (``csrc/module.cpp``): its record types and kernels. Only once :func:`load` has
    returned True."""
    if not load():
        raise RuntimeError('skipconv_det: the CPU kernels are not built; check load() first.')
    return _module
