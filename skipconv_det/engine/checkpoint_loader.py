# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""One clear error for a checkpoint file torch cannot read, for the tools that opt into it.

A truncated checkpoint (e.g. a run killed while saving) otherwise surfaces from deep inside torch as
``PytorchStreamReader failed reading zip archive``. :func:`readable_checkpoint_errors` makes mmengine load local
files with :func:`load_local_checkpoint` for the duration of a ``with`` block, so ``--resume``, ``load_from`` and
``tools/test.py`` all report such a file the same way. Importing ``skipconv_det`` leaves mmengine's loader alone;
``tools/train.py`` and ``tools/test.py`` use the block around their run.
"""
import pickle
from contextlib import contextmanager
from typing import Iterator

from mmengine.runner.checkpoint import CheckpointLoader, load_from_local

# Words of a refusal by the safe loader (not of garbage): torch's for a global outside the allowlist, ours for a
# getattr outside HistoryBuffer's statistics (see checkpoint.py).
_REFUSAL_WORDS = ('GLOBAL', 'add_safe_globals', 'Refusing getattr')
_LOCAL_PREFIX = ''  # mmengine's scheme for paths without a prefix (local files)


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read."""


def load_local_checkpoint(filename: str, map_location=None) -> dict:
    """mmengine's ``load_from_local``, with one clear error for a file torch cannot read.

    A missing file keeps mmengine's message, and a checkpoint that holds objects outside the safe-loading
    allowlist is still refused by torch with its own message.

    Raises:
        CheckpointError: For a truncated or garbled file, naming it and the fix.
    """
    try:
        return load_from_local(filename, map_location)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as e:
        # A refusal of a global outside the allowlist explains itself (and must not pass for mere corruption).
        if isinstance(e, FileNotFoundError) or any(word in str(e) for word in _REFUSAL_WORDS):
            raise
        raise CheckpointError(
            f'Cannot read the checkpoint {filename} ({type(e).__name__}: {str(e).splitlines()[0]}). It is truncated '
            '(e.g. the run was killed while saving) or not a torch checkpoint. Delete it and point --resume / '
            'load_from / the checkpoint argument at an intact file (an earlier *.pth in the work dir; '
            '--resume without a path picks the one named in the work dir\'s last_checkpoint).') from e


@contextmanager
def readable_checkpoint_errors() -> Iterator[None]:
    """Within the block, mmengine loads local checkpoints with :func:`load_local_checkpoint`; on leaving it, the
    loader that was registered before is registered again.

    Example:
        >>> with readable_checkpoint_errors():
        ...     runner.train()  # a truncated --resume checkpoint raises CheckpointError
    """
    # mmengine 0.10.7 has no public getter for a registered loader.
    previous = CheckpointLoader._schemes[_LOCAL_PREFIX]
    CheckpointLoader.register_scheme(prefixes=_LOCAL_PREFIX, loader=load_local_checkpoint, force=True)
    try:
        yield
    finally:
        CheckpointLoader.register_scheme(prefixes=_LOCAL_PREFIX, loader=previous, force=True)
