# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""Train and test in the channels_last memory format."""
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class ChannelsLastHook(Hook):
    """Lay the model's parameters out channels_last before the run, so every convolution (dense or SkipConv) and
    the layers between them work channels_last: on CPU, oneDNN's convolutions and SkipConv's lattice assembly are
    faster in that layout. The inputs need no change: a convolution follows its weight's layout.

    ``custom_hooks = [dict(type='ChannelsLastHook')]``
    """
    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        runner.model.to(memory_format=torch.channels_last)
