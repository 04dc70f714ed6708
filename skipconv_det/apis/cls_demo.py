# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""The classification demos' configs: CIFAR models of the paper's three families, sized for a CPU, on generated
CIFAR-10-format data.

- ``tools/cls_learning_demo.py`` trains the CIFAR ResNets of ``configs/classification/`` (:data:`CLS_DEMO_CONFIGS`)
  with the depth, the batch and the number of epochs changed.
- The accuracy study (``tools/ablation.py --tasks cls``) trains the ``configs/demo/`` classification models
  (:data:`CLS_STUDY_MODELS`): ResNet-20 and ResNet-56, VGG-16-BN and MobileNetV2 from ``configs/classification/``,
  each narrowed and scheduled in its own config file, which says how.

:func:`cls_demo_config` points either kind at the generated data and a work dir; the lr steps keep their place
in the schedule when the number of epochs changes.
"""
import os.path as osp
from typing import Optional

from mmengine.config import Config

# In the clone, where the tools run (as the detection demo's configs): configs are not installed with the package.
CONFIG_DIR = osp.join('configs', 'classification')
CLS_DEMO_CONFIGS = {
    'dense': 'resnet56_8xb16_cifar10.py',
    'checkerboard': 'resnet56-skipconv_8xb16_cifar10.py',
    'grid+shift_channels': 'resnet56-skipconv-grid_8xb16_cifar10.py',
}
CLS_STUDY_MODELS = {
    'resnet20': 'configs/demo/resnet20_1xb64-24e_synthetic-cifar10.py',
    'resnet56': 'configs/demo/resnet56_1xb64-24e_synthetic-cifar10.py',
    'vgg16bn': 'configs/demo/vgg16bn-w16_1xb64-24e_synthetic-cifar10.py',
    'vgg16bn-48e': 'configs/demo/vgg16bn-w16_1xb64-48e_synthetic-cifar10.py',
    'mobilenetv2': 'configs/demo/mobilenet-v2-w0.5_1xb64-24e_synthetic-cifar10.py',
    'mobilenetv2-48e': 'configs/demo/mobilenet-v2-w0.5_1xb64-48e_synthetic-cifar10.py',
}


def cls_demo_config(config: str,
                    data_root: str,
                    work_dir: str,
                    seed: int = 0,
                    epochs: Optional[int] = None,
                    batch_size: Optional[int] = None,
                    model: Optional[dict] = None,
                    channels_last: bool = True) -> Config:
    """A classification config on a generated CIFAR-format set, validating once after its last epoch.

    Args:
        config (str): A config file, e.g. from :data:`CLS_STUDY_MODELS` or ``configs/classification/``.
        data_root (str): Where :func:`~skipconv_det.datasets.synthetic_cls.write_cifar` wrote the set.
        work_dir (str): Logs and checkpoints.
        seed (int): Training seed. Default: 0.
        epochs (int, optional): Training epochs, for a config with one MultiStepLR schedule, whose milestones are
            scaled to them. None: the config's.
        batch_size (int, optional): Batch size; None: the config's.
        model (dict, optional): Merged into the config's model (e.g. ``dict(backbone=dict(depth=20))``).
        channels_last (bool): Train and test channels_last (:class:`~skipconv_det.engine.ChannelsLastHook`),
            which on CPU is faster for dense and SkipConv alike at these small maps. Default: True.

    Returns:
        Config: The config.
    """
    # mmpretrain (which the generated datasets need) is imported only when a classification config is built.
    from ..datasets.synthetic_cls import use_generated_data

    cfg = Config.fromfile(config)
    if model:
        cfg.merge_from_dict(dict(model=model))
    use_generated_data(cfg, data_root, batch_size=batch_size)
    if epochs is not None and epochs != cfg.train_cfg.max_epochs:
        if 'milestones' not in cfg.param_scheduler:
            raise ValueError(f'{config}: only a single MultiStepLR schedule can be rescaled to {epochs} epochs; '
                             'change max_epochs and the schedule in the config instead.')
        scale = epochs / cfg.train_cfg.max_epochs
        cfg.param_scheduler.milestones = [max(1, round(m * scale)) for m in cfg.param_scheduler.milestones]
    epochs = epochs or cfg.train_cfg.max_epochs
    cfg.train_cfg = dict(by_epoch=True, max_epochs=epochs, val_interval=epochs)
    cfg.default_hooks.checkpoint.interval = epochs
    cfg.default_hooks.logger.interval = 10
    cfg.randomness = dict(seed=seed)
    hooks = list(cfg.get('custom_hooks', []))
    if channels_last and not any(hook['type'] == 'ChannelsLastHook' for hook in hooks):
        cfg.custom_hooks = hooks + [dict(type='ChannelsLastHook')]
    cfg.work_dir = work_dir
    return cfg
