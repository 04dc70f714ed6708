# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""mmengine's ``compile`` config key (``compile=True``, or a dict of ``torch.compile`` keyword arguments), made to
work for detectors: compile the model's ``extract_feat`` (backbone and neck, where the convolutions are) rather than
mmengine's choice, the whole ``train_step``.

mmengine's Runner (up to 0.10.7, the latest release) wraps ``model.train_step`` in ``torch.compile``: the data
preprocessor, the detector's targets and losses (assigners, samplers, proposals through mmcv's nms), the backward
and the optimizer's step. On mmdet's detectors dynamo then recompiles every iteration (the data preprocessor's
deepcopy of the samples' metainfo guards on the objects' ids, the optimizer's step on the scheduled learning rate)
until it reaches its recompile limit and runs those frames eagerly, after spending far longer compiling than
training. ``extract_feat`` is a pure tensor function of the batch: one graph per mode, compiled once.
"""
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from .checks import add_custom_import


@HOOKS.register_module()
class CompileHook(Hook):
    """``torch.compile`` one method of the model (by default ``extract_feat``, which mmdet's and mmpretrain's
    models call in training, validation and testing alike) for the length of a run.

    ``custom_hooks = [dict(type='CompileHook', backend='inductor')]``; ``tools/train.py`` and ``tools/demo.py``
    turn a config's ``compile`` into this hook (see :func:`enable_compile`).

    Args:
        target (str): The method of the (unwrapped) model to compile. Default: 'extract_feat'.
        **compile_kwargs: Keyword arguments of ``torch.compile`` (``backend``, ``mode``, ``dynamic``, ...).
    """
    priority = 'VERY_LOW'  # after ChannelsLastHook and others that change the model in before_run

    def __init__(self, target: str = 'extract_feat', **compile_kwargs) -> None:
        self.target = target
        self.compile_kwargs = compile_kwargs

    @staticmethod
    def _model(runner):
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    def before_run(self, runner) -> None:
        model = self._model(runner)
        if self.target in vars(model):  # compiled already (a second run of the same model)
            return
        method = getattr(model, self.target, None)
        if not callable(method):
            raise ValueError(f'CompileHook: {type(model).__name__} has no method {self.target!r} to compile; '
                             'name another with CompileHook(target=...).')
        # An instance attribute shadows the method: the model's own calls (loss, predict) take the compiled one,
        # and its state_dict is unchanged.
        setattr(model, self.target, torch.compile(method, **self.compile_kwargs))
        runner.logger.info(f'CompileHook: {type(model).__name__}.{self.target} compiled with torch.compile('
                           f'{self.compile_kwargs}); the first iterations of each mode are slow.')

    def after_run(self, runner) -> None:
        # Eager again, for whatever runs on the model after the Runner (FLOP counting, export).
        vars(self._model(runner)).pop(self.target, None)


def enable_compile(cfg: Config) -> None:
    """Turn ``cfg.compile`` (mmengine's key: True, or a dict of ``torch.compile`` keyword arguments; the tools'
    ``--compile`` sets True) into a :class:`CompileHook` of ``extract_feat``, and take the key out so that
    mmengine compiles no ``train_step`` (see the module docstring). A config without the key, or with
    ``compile=False``, is left as it is."""
    compile_cfg = cfg.get('compile', None)
    if compile_cfg is None or compile_cfg is False:
        return
    if compile_cfg is not True and not isinstance(compile_cfg, dict):
        raise TypeError(f'compile should be a bool or a dict of torch.compile arguments, got {compile_cfg!r}')
    cfg.pop('compile', None)
    hooks = list(cfg.get('custom_hooks', None) or [])
    if not any(hook.get('type') in ('CompileHook', CompileHook) for hook in hooks):
        hooks.append(dict(type='CompileHook', **({} if compile_cfg is True else compile_cfg)))
    cfg.custom_hooks = hooks
    add_custom_import(cfg, 'skipconv_det')  # so that the dumped config builds in a fresh process too
    print_log(f'compile={compile_cfg}: compiling the model\'s extract_feat (backbone and neck) with CompileHook, '
              'not mmengine\'s whole train_step.', logger='current')
