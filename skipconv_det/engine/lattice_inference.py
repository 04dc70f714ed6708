# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""Testing with SkipConv features in the lattice domain (``skipconv_det.optimize_for_inference``), the way mmdet
2.x's ``tools/test.py --fuse-conv-bn`` folded BatchNorm: on the model as loaded from its checkpoint, before the test
loop runs. ``tools/test.py --optimize-for-inference`` adds this hook."""
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from ..inference import optimize_for_inference
from .checks import add_custom_import


@HOOKS.register_module()
class LatticeInferenceHook(Hook):
    """Apply :func:`skipconv_det.optimize_for_inference` to the model before testing (its checkpoint is loaded by
    then). For test runs: afterwards the model cannot train (BatchNorm is folded).

    ``custom_hooks = [dict(type='LatticeInferenceHook')]``.
    """
    priority = 'VERY_LOW'

    def before_test(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        optimize_for_inference(model)
        print_log(f'optimize_for_inference: {", ".join(model.lattice_regions) or "nothing"} in the lattice domain',
                  logger='current')


def enable_lattice_inference(cfg: Config) -> None:
    """Add :class:`LatticeInferenceHook` to a config (and the import that registers it)."""
    hooks = cfg.get('custom_hooks') or []
    if not any(h.get('type') == 'LatticeInferenceHook' for h in hooks):
        cfg.custom_hooks = list(hooks) + [dict(type='LatticeInferenceHook')]
    add_custom_import(cfg, 'skipconv_det')
