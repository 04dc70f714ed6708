# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""Resume a killed training run with nothing lost: the same batches, the same random draws, the same weights.

mmengine 0.10.7 resumes the weights, optimizer, schedulers and counters, but not the random number generators, and
``EpochBasedTrainLoop`` restarts a mid-epoch checkpoint's epoch from its first batch. So a run resumed from
``iter_N.pth`` trains more iterations than the uninterrupted one, on other batches, with other augmentations
(``RandomFlip`` draws from numpy) and other RoI samples (mmdet's ``RandomSampler`` draws from torch). Two pieces
fix it:

- :class:`RandomStateHook` stores the python, numpy and torch (and CUDA) generator states in every checkpoint, at
  the moment it is written, and hands them back on ``--resume``; it also keeps validation from consuming training
  randomness, so that a run resumed from an epoch-end checkpoint (where the uninterrupted run validated after
  saving) starts its next epoch from the same state.
- :class:`ResumableEpochBasedTrainLoop` re-enters the checkpoint's epoch at the batch after the last trained one:
  it replays the epoch's sampler order (mmengine's samplers draw the order from ``seed + epoch``) and fetches the
  batches already trained, so per-worker augmentation states are replayed as well, then restores the saved random
  states, exactly where the uninterrupted run wrote them.

``tools/train.py`` enables both by default (:func:`enable_exact_resume`); in a config, write::

    train_cfg = dict(type='ResumableEpochBasedTrainLoop', max_epochs=12, val_interval=1)
    custom_hooks = [dict(type='RandomStateHook')]

On CPU with fixed seeds the resumed run then ends with bitwise the same weights as an uninterrupted one
(``tests/test_reliability_resume.py``). Limits: with ``persistent_workers=True`` dataloader workers keep their
random state across epochs, which a restart cannot recover (use ``num_workers=0`` or non-persistent workers where
augmentations are random); skipped batches are loaded, not trained, so resuming late in a long epoch costs the
data-loading time of that part of the epoch; GPU kernels may be nondeterministic unless
``randomness=dict(deterministic=True)``.
"""
import random
from typing import Optional

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS, LOOPS
from mmengine.runner import EpochBasedTrainLoop

# Checkpoint key of the random states; plain tensors, lists and numbers, so torch's safe loader reads them.
RANDOM_STATES_KEY = 'random_states'


def get_random_states() -> dict:
    """Snapshot python's, numpy's and torch's global generators (CUDA's too, when available).

    Returns:
        dict: Only tensors, lists and numbers (loadable with ``torch.load(weights_only=True)``).
    """
    np_state = np.random.get_state(legacy=False)
    version, py_state, gauss = random.getstate()
    states = dict(
        python=dict(version=version, state=list(py_state), gauss=gauss),
        numpy=dict(key=np_state['state']['key'].tolist(), pos=int(np_state['state']['pos']),
                   has_gauss=int(np_state['has_gauss']), gauss=float(np_state['gauss'])),
        torch=torch.get_rng_state())
    if torch.cuda.is_available():
        states['cuda'] = torch.cuda.get_rng_state_all()
    return states


def set_random_states(states: dict) -> None:
    """Restore a snapshot taken by :func:`get_random_states`."""
    py = states['python']
    random.setstate((py['version'], tuple(py['state']), py['gauss']))
    np_state = states['numpy']
    np.random.set_state(('MT19937', np.asarray(np_state['key'], dtype=np.uint32), np_state['pos'],
                         np_state['has_gauss'], np_state['gauss']))
    torch.set_rng_state(states['torch'])
    if 'cuda' in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states['cuda'])


@LOOPS.register_module()
class ResumableEpochBasedTrainLoop(EpochBasedTrainLoop):
    """``EpochBasedTrainLoop`` that resumes a mid-epoch checkpoint at the next batch, with the saved random states.

    Same arguments as mmengine's ``EpochBasedTrainLoop``. :class:`RandomStateHook` sets
    :attr:`resume_random_states` on ``--resume``; without it (or from a checkpoint written without the hook) the
    loop still resumes at the right batch, with the generators as the runner's seed left them.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        #: Random states saved with the resumed checkpoint, applied (once) where that checkpoint was written.
        self.resume_random_states: Optional[dict] = None

    def _restore_random_states(self) -> None:
        if self.resume_random_states is not None:
            set_random_states(self.resume_random_states)
            self.resume_random_states = None

    def run_epoch(self) -> None:
        """Iterate one epoch, skipping the batches a mid-epoch checkpoint has already trained."""
        # Non-zero only in the first epoch after resuming from a checkpoint saved by iteration.
        done = self._iter - self._epoch * len(self.dataloader)
        if done == 0:
            # Resumed from an epoch-end checkpoint: it was written at the end of the previous epoch, and the
            # validation after it ran on a copy of the random states (RandomStateHook), so they apply here.
            self._restore_random_states()
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        batches = iter(self.dataloader)
        if done > 0:
            print_log(f'Skipping the {done} batches of epoch {self._epoch + 1} trained before the checkpoint.',
                      logger='current')
            # Loading them (not just advancing the sampler) replays the dataloader workers' random draws too.
            for _ in range(done):
                next(batches)
            self._restore_random_states()
        for idx, data_batch in enumerate(batches, start=done):
            self.run_iter(idx, data_batch)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Save the global random states in each checkpoint and restore them on resume.

    The states are taken in ``before_save_checkpoint``, i.e. exactly where the checkpoint is written, and
    restored where :class:`ResumableEpochBasedTrainLoop` reaches that point again (other loops: when training
    starts, which is exact only if nothing draws random numbers between that point and the first batch). A
    checkpoint loaded with ``load_from`` (not resumed) leaves the generators alone. Validation runs on a copy of
    the training randomness, so how often a run validates does not change how it trains.
    """

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self._loaded: Optional[dict] = None  # from the checkpoint being resumed
        self._before_val: Optional[dict] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        states = get_random_states()
        states['iter'] = checkpoint['meta']['iter']  # tells a resumed run from a load_from
        checkpoint[RANDOM_STATES_KEY] = states

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._loaded = checkpoint.get(RANDOM_STATES_KEY)

    def before_train(self, runner) -> None:
        states, self._loaded = self._loaded, None
        if states is None or runner.iter != states.pop('iter'):
            if runner.iter > 0:
                print_log('The resumed checkpoint holds no random states (saved without RandomStateHook): the run '
                          'goes on with other random draws than an uninterrupted one.', logger='current',
                          level='WARNING')
            return
        if isinstance(runner.train_loop, ResumableEpochBasedTrainLoop):
            runner.train_loop.resume_random_states = states
        else:
            set_random_states(states)

    def before_val(self, runner) -> None:
        self._before_val = get_random_states()

    def after_val(self, runner) -> None:
        set_random_states(self._before_val)


def enable_exact_resume(cfg) -> None:
    """Switch a training config to :class:`ResumableEpochBasedTrainLoop` and add :class:`RandomStateHook`.

    Only mmengine's plain epoch-based loop is replaced (``type='EpochBasedTrainLoop'`` or ``by_epoch=True``); a
    config with its own loop type keeps it and gets the hook only.

    Args:
        cfg (mmengine.Config): The config, changed in place.
    """
    train_cfg = cfg.get('train_cfg')
    if train_cfg is not None:
        if train_cfg.get('type') == 'EpochBasedTrainLoop':
            train_cfg.type = 'ResumableEpochBasedTrainLoop'
        elif 'type' not in train_cfg and train_cfg.get('by_epoch', False):
            train_cfg.pop('by_epoch')
            train_cfg.type = 'ResumableEpochBasedTrainLoop'
    hooks = list(cfg.get('custom_hooks', None) or [])
    if not any(h.get('type') in ('RandomStateHook', RandomStateHook) for h in hooks):
        cfg.custom_hooks = hooks + [dict(type='RandomStateHook')]
