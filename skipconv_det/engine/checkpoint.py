# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""Let torch's safe checkpoint loader read mmengine's own checkpoints.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``: it unpickles tensors, containers and primitive
types only, and refuses any other global. mmengine 0.10.7 calls ``torch.load`` without ``weights_only``, and the
checkpoints its Runner writes hold more than weights (the message hub's log history and runtime info), so
``--resume`` and ``load_from`` fail. Instead of turning the safe loader off, we allowlist exactly the globals an
mmengine checkpoint contains (found by saving checkpoints from real Runner trainings and listing them with
``torch.serialization.get_unsafe_globals_in_checkpoint``); anything else is still refused.
"""
import pickle
from typing import Any, Callable, List, Tuple, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

# mmengine registers these four statistics on every HistoryBuffer (``_set_default_statistics``).
_HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')


def _history_buffer_statistic(owner: Any, name: str) -> Callable:
    """Stand-in for ``getattr`` while unpickling: resolves only HistoryBuffer's statistics methods.

    ``HistoryBuffer.__getstate__`` pickles its statistics methods, and Python pickles an unbound method as
    ``getattr(HistoryBuffer, 'min')``. Allowlisting the real ``getattr`` would let a checkpoint reach any
    attribute of any allowed object; this resolves the four names mmengine writes and refuses the rest.
    """
    if owner is HistoryBuffer and name in _HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(f'Refusing getattr({owner!r}, {name!r}) in a checkpoint: only HistoryBuffer '
                                 f'statistics ({", ".join(_HISTORY_BUFFER_STATISTICS)}) are allowed.')


def _numpy_globals() -> List[Union[Callable, Tuple[Callable, str]]]:
    """numpy arrays, scalars and dtypes as pickled by numpy 2 and, under their old names, by numpy 1."""
    multiarray = np._core.multiarray
    globals_: List[Union[Callable, Tuple[Callable, str]]] = [np.ndarray, np.dtype]
    for func in (multiarray._reconstruct, multiarray.scalar):
        globals_ += [(func, f'numpy._core.multiarray.{func.__name__}'),
                     (func, f'numpy.core.multiarray.{func.__name__}')]
    # A dtype is rebuilt as np.dtype(...) and then given its state, which the safe loader only allows for
    # allowlisted types: the dtype classes of the numeric types mmengine logs (np.float64 values, int64 counts,
    # and the float32/int32 a metric may produce).
    globals_ += [type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32, np.bool_)]
    return globals_


def checkpoint_safe_globals() -> List[Union[Callable, Tuple[Callable, str]]]:
    """The globals an mmengine checkpoint holds beyond what ``torch.load(weights_only=True)`` allows.

    - ``mmengine.logging.HistoryBuffer``: the message hub's log scalars;
    - ``builtins.getattr``, mapped to :func:`_history_buffer_statistic`: HistoryBuffer's statistics methods;
    - numpy ``ndarray``, ``dtype``, ``_reconstruct``, ``scalar`` and numeric dtype classes: the buffers'
      histories and numpy scalars in the runtime info (e.g. ``eta``).

    ``collections.Counter`` (MultiStepLR milestones) and ``OrderedDict`` are allowed by torch already.

    Returns:
        list: Entries for ``torch.serialization.add_safe_globals``.
    """
    return [HistoryBuffer, (_history_buffer_statistic, 'builtins.getattr')] + _numpy_globals()


def register_checkpoint_safe_globals() -> None:
    """Add :func:`checkpoint_safe_globals` to torch's safe-loading allowlist (idempotent: it is a set)."""
    torch.serialization.add_safe_globals(checkpoint_safe_globals())
