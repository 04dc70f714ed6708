# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""The classification demo's configs: the CIFAR ResNets of ``configs/classification/`` on a generated CIFAR-10.

Shared by ``tools/cls_learning_demo.py`` and the accuracy study (``tools/ablation.py``). A demo config is the
variant's own config (model, optimizer, data pipeline) with only the data root, the depth, the batch and the number
of epochs changed; the lr steps keep their place in the schedule.
"""
import os.path as osp

from mmengine.config import Config

from ..datasets.synthetic_cls import use_generated_data

# In the clone, where the tools run (as the detection demo's configs): configs are not installed with the package.
CONFIG_DIR = osp.join('configs', 'classification')
CLS_DEMO_CONFIGS = {
    'dense': 'resnet56_8xb16_cifar10.py',
    'checkerboard': 'resnet56-skipconv_8xb16_cifar10.py',
    'grid+shift_channels': 'resnet56-skipconv-grid_8xb16_cifar10.py',
}


def cls_demo_config(variant: str, data_root: str, work_dir: str, depth: int = 20, epochs: int = 12,
                    batch_size: int = 64, seed: int = 0, channels_last: bool = True) -> Config:
    """The config of a :data:`CLS_DEMO_CONFIGS` variant, shrunk to the demo's schedule.

    Args:
        variant (str): A key of :data:`CLS_DEMO_CONFIGS`.
        data_root (str): Where :func:`~skipconv_det.datasets.synthetic_cls.write_cifar` wrote the set.
        work_dir (str): Logs and checkpoints.
        depth (int): CIFAR ResNet depth (6n + 2). Default: 20.
        epochs (int): Training epochs; the lr milestones are scaled to them. Default: 12.
        batch_size (int): Batch size (the configs train with 8 x 16 = 128). Default: 64.
        seed (int): Training seed. Default: 0.
        channels_last (bool): Train and test channels_last (:class:`~skipconv_det.engine.ChannelsLastHook`),
            which on CPU is faster for dense and SkipConv alike at these small maps. Default: True.

    Returns:
        Config: The config, validating once after the last epoch.
    """
    cfg = Config.fromfile(osp.join(CONFIG_DIR, CLS_DEMO_CONFIGS[variant]))
    cfg.model.backbone.depth = depth
    use_generated_data(cfg, data_root, batch_size=batch_size)
    scale = epochs / cfg.train_cfg.max_epochs
    cfg.param_scheduler.milestones = [max(1, round(m * scale)) for m in cfg.param_scheduler.milestones]
    cfg.train_cfg = dict(by_epoch=True, max_epochs=epochs, val_interval=epochs)
    cfg.default_hooks.checkpoint.interval = epochs
    cfg.default_hooks.logger.interval = 10
    cfg.randomness = dict(seed=seed)
    if channels_last:
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [dict(type='ChannelsLastHook')]
    cfg.work_dir = work_dir
    return cfg
