# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""Mixed-precision training on any device: ``--amp``'s switch (:func:`enable_amp`), and for the CPU mmengine's
``AmpOptimWrapper`` with bfloat16 autocast and no loss scaling (:class:`CPUAmpOptimWrapper`).

mmengine's ``AmpOptimWrapper`` (up to 0.10.7, the latest release) asserts a CUDA, NPU, MLU or MUSA device in its
constructor (the error users meet: https://github.com/open-mmlab/mmpretrain/issues/1556), although torch autocasts
on the CPU in bfloat16. :class:`CPUAmpOptimWrapper` can go once mmengine's accepts the CPU.
"""
import functools
import importlib
from contextlib import contextmanager
from typing import Union

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.device import get_device
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS

from .checks import add_custom_import


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(AmpOptimWrapper):
    """``AmpOptimWrapper`` for the CPU: the forward and loss run under ``torch.autocast('cpu', torch.bfloat16)``;
    parameters, gradients and the optimizer stay float32.

    bfloat16 has float32's exponent range, so gradients need no loss scaling: the loss scaler is torch's
    ``GradScaler`` disabled (scaling, unscaling and its state dict are no-ops), and everything else is
    ``AmpOptimWrapper``'s. ``tools/train.py --amp`` chooses it where mmengine finds no accelerator;
    ``optim_wrapper = dict(type='CPUAmpOptimWrapper', optimizer=...)`` in a config. The first one built makes
    mmcv's nms and RoIAlign run in float32 under CPU autocast (see :func:`_run_mmcv_ops_in_float32`).

    Args:
        dtype (str | torch.dtype): The autocast dtype; CPU autocast takes only bfloat16. Default: 'bfloat16'.
        **kwargs: Keyword arguments of ``OptimWrapper`` (``optimizer``, ``accumulative_counts``, ``clip_grad``).
    """

    def __init__(self, dtype: Union[str, torch.dtype] = 'bfloat16', **kwargs) -> None:
        # AmpOptimWrapper.__init__ would assert an accelerator and build a CUDA GradScaler: skip to OptimWrapper's.
        OptimWrapper.__init__(self, **kwargs)
        self._scale_update_param = None
        self.loss_scaler = torch.amp.GradScaler('cpu', enabled=False)
        self.cast_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        if self.cast_dtype != torch.bfloat16:
            raise ValueError(f'CPU autocast runs in bfloat16, not {self.cast_dtype}.')
        _run_mmcv_ops_in_float32()

    @contextmanager
    def optim_context(self, model: nn.Module):
        """OptimWrapper's context (gradient accumulation) with CPU autocast; AmpOptimWrapper's would autocast on
        whatever device mmengine finds."""
        with OptimWrapper.optim_context(self, model), torch.autocast('cpu', dtype=self.cast_dtype):
            yield


def _run_mmcv_ops_in_float32() -> None:
    """Under CPU autocast, run the mmcv ops of mmdet's detectors (nms, RoIAlign) in float32.

    mmcv's CPU kernels of these ops (up to 2.1.0, the newest that mmdet 3.3 accepts) take float32 and float64 only,
    and unlike torchvision's they have no autocast kernel. Each call gets what torchvision's ``roi_align`` and
    ``nms`` do under autocast: float32 inputs, the result in the input's dtype (mmdet writes RoI features into a
    tensor of the feature maps' dtype). Outside CPU autocast, and on CUDA (whose kernels take float16), calls are
    unchanged. Applied once, by the first CPUAmpOptimWrapper.
    """
    # (mmcv.ops.roi_align the attribute is the function, hence import_module)
    nms_module, roi_align_module = (importlib.import_module(f'mmcv.ops.{name}') for name in ('nms', 'roi_align'))
    if not getattr(roi_align_module.roi_align, '_float32_on_cpu', False):
        # RoIAlign.forward calls the module's roi_align; nms calls NMSop.apply.
        roi_align_module.roi_align = _float32_under_cpu_autocast(roi_align_module.roi_align)
        nms_module.NMSop.apply = _float32_under_cpu_autocast(nms_module.NMSop.apply)


def _float32_under_cpu_autocast(fn):

    @functools.wraps(fn)
    def call(*args):
        if not torch.is_autocast_enabled('cpu'):
            return fn(*args)
        dtype = next(a.dtype for a in args if isinstance(a, torch.Tensor))
        with torch.autocast('cpu', enabled=False):
            out = fn(*(a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args))
        return out.to(dtype) if out.is_floating_point() else out

    call._float32_on_cpu = True
    return call


def enable_amp(cfg: Config) -> None:
    """Train ``cfg`` in mixed precision, as mmdet's ``tools/train.py --amp`` does on CUDA: mmengine's
    ``AmpOptimWrapper`` (float16, dynamic loss scale) where mmengine finds an accelerator, else
    :class:`CPUAmpOptimWrapper` (bfloat16, no loss scale). A config that already has either is left as it is."""
    if cfg.optim_wrapper.get('type', 'OptimWrapper') in ('AmpOptimWrapper', 'CPUAmpOptimWrapper'):
        print_log('AMP training is already enabled in your config.', logger='current')
    elif get_device() == 'cpu':
        cfg.optim_wrapper.type = 'CPUAmpOptimWrapper'
        add_custom_import(cfg, 'skipconv_det')  # so that the dumped config builds in a fresh process too
    else:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
