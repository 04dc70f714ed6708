# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""What ``tools/train.py`` and ``tools/test.py`` share: the config from the command line (with ``--skipconv``) and
the Runner built from it."""
import argparse
import contextlib
import os
import os.path as osp

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from ..engine import enable_compile
from ..engine.checks import add_custom_import, check_custom_imports
from ..models import skipconv_model_cfg
from .args import add_cfg_options_arg, add_launcher_args, add_skipconv_args, conversion_kwargs


def add_runner_args(parser: argparse.ArgumentParser) -> None:
    """mmdet's ``--work-dir``, ``--cfg-options``, ``--launcher`` and ``--local-rank``, and the SkipConv group."""
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    add_cfg_options_arg(parser)
    add_launcher_args(parser)
    add_skipconv_args(parser)


def load_config(args: argparse.Namespace) -> Config:
    """The config of ``args.config`` with the command line's overrides, work dir and ``--skipconv`` applied."""
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.skipconv:
        cfg.model = skipconv_model_cfg(cfg.model, **conversion_kwargs(args))
        # The dumped config must rebuild the same model on its own, e.g. with mmdet's own tools/test.py.
        add_custom_import(cfg, 'skipconv_det')
    check_custom_imports(cfg)
    return cfg


def _setup_cpu_distributed(cfg: Config) -> None:
    """Make ``--launcher pytorch`` work without CUDA (e.g. ``torchrun`` on CPU).

    mmengine's pytorch launcher calls ``torch.cuda.set_device`` and wraps the model in DDP with
    ``device_ids=[LOCAL_RANK]``, both of which fail without a GPU. We start the gloo process group ourselves
    (the Runner then keeps it) and let DDP run on CPU with ``device_ids=None``.
    """
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend='gloo')
    wrapper = cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel')
    cfg.model_wrapper_cfg = dict(wrapper, device_ids=None)


def build_runner(cfg: Config, args: argparse.Namespace) -> Runner:
    """The config's Runner (its own ``runner_type`` if it names one), set up for ``args.launcher``; a ``compile``
    key compiles the backbone and neck (:func:`~skipconv_det.engine.enable_compile`)."""
    enable_compile(cfg)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    if args.launcher == 'pytorch' and not torch.cuda.is_available():
        _setup_cpu_distributed(cfg)
    return Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)


@contextlib.contextmanager
def process_group_teardown():
    """Destroy the process group a launcher started once the run inside has ended.

    Without it, gloo's worker threads are still alive when the interpreter exits and the process aborts
    ("terminate called without an active exception", pytorch/pytorch#190489; torch 2.x registers no exit hook).
    """
    yield
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
