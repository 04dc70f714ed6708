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
    """numpy arrays, scalars and dtypes as numpy 2 pickles them, and under numpy 1's module path, so checkpoints
    written with numpy 1 load too (the same two functions, not more of numpy)."""
    multiarray = np._core.multiarray
    globals_: List[Union[Callable, Tuple[Callable, str]]] = [np.ndarray, np.dtype]
    for func in (multiarray._reconstruct, multiarray.scalar):
        globals_ += [(func, f'numpy._core.multiarray.{func.__name__}'),
                     (func, f'numpy.core.multiarray.{func.__name__}')]
    # A dtype is rebuilt as np.dtype(...) and then given its state, which the safe loader allows only for
    # allowlisted types: the classes of the two dtypes mmengine writes (float64 values and eta, int64 counts).
    globals_ += [type(np.dtype(np.float64)), type(np.dtype(np.int64))]
    return globals_


def checkpoint_safe_globals() -> List[Union[Callable, Tuple[Callable, str]]]:
    """The globals an mmengine checkpoint holds beyond what ``torch.load(weights_only=True)`` allows.

    - ``mmengine.logging.HistoryBuffer``: the message hub's log scalars;
    - ``builtins.getattr``, mapped to :func:`_history_buffer_statistic`: HistoryBuffer's statistics methods;
    - numpy ``ndarray``, ``dtype``, ``_reconstruct``, ``scalar`` and the float64 and int64 dtype classes: the
      buffers' histories and numpy scalars in the runtime info (e.g. ``eta``).

    ``collections.Counter`` (MultiStepLR milestones) and ``OrderedDict`` are allowed by torch already.

    Returns:
        list: Entries for ``torch.serialization.add_safe_globals``.
    """
    return [HistoryBuffer, (_history_buffer_statistic, 'builtins.getattr')] + _numpy_globals()


def register_checkpoint_safe_globals() -> None:
    """Add :func:`checkpoint_safe_globals` to torch's safe-loading allowlist (idempotent: it is a set)."""
    torch.serialization.add_safe_globals(checkpoint_safe_globals())
