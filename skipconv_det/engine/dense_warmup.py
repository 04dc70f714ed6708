# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""Dense warm-up: train a SkipConv model's convolutions as plain convolutions for its first epochs, then as SkipConv.

Weights are the same in both modes (a SkipConv2d is an ``nn.Conv2d`` with a lattice), so switching needs no
conversion and leaves the optimizer's state alone; only each layer's ``skip_pattern`` changes, between epochs.
"""
from typing import Dict

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from ..ops.skip_conv import SkipConv2d


@HOOKS.register_module()
class DenseWarmupHook(Hook):
    """Run every :class:`~skipconv_det.ops.SkipConv2d` of the model with ``skip_pattern='none'`` (a plain
    convolution) for the first ``epochs`` training epochs, and with its own pattern from then on. Validation
    during the warm-up sees the dense model; training after it, validation after it and testing see SkipConv.

    The warm-up epochs cost dense FLOPs: over ``E`` epochs the training FLOPs are ``(epochs + (E - epochs) * r)
    / E`` of dense for a model at ``r`` times dense. Resuming works: the mode follows the epoch being trained.

    ``custom_hooks = [dict(type='DenseWarmupHook', epochs=6)]``

    Args:
        epochs (int): Number of epochs trained dense, from the first.
    """
    priority = 'NORMAL'

    def __init__(self, epochs: int) -> None:
        if not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f'DenseWarmupHook: epochs must be a non-negative int, got {epochs!r}')
        self.epochs = epochs
        self._patterns: Dict[str, str] = {}

    def _skip_convs(self, runner) -> Dict[str, SkipConv2d]:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        return {name: m for name, m in model.named_modules() if isinstance(m, SkipConv2d)}

    def before_train(self, runner) -> None:
        # The patterns as built: the hook is the only thing that changes them during training.
        self._patterns = {name: m.skip_pattern for name, m in self._skip_convs(runner).items()}
        if not self._patterns:
            print_log('DenseWarmupHook: the model has no SkipConv layer; nothing to warm up', logger='current')

    def _set_dense(self, runner, dense: bool) -> None:
        for name, m in self._skip_convs(runner).items():
            m.skip_pattern = 'none' if dense else self._patterns[name]

    def before_train_epoch(self, runner) -> None:
        dense = runner.epoch < self.epochs
        self._set_dense(runner, dense)
        if self._patterns and runner.epoch in (0, self.epochs):
            print_log(f'DenseWarmupHook: epoch {runner.epoch + 1} trains {len(self._patterns)} SkipConv layers '
                      f'{"as dense convolutions" if dense else "with their own patterns"}', logger='current')

    def after_train(self, runner) -> None:
        # A warm-up as long as the schedule must still leave the model it was configured as.
        self._set_dense(runner, False)
