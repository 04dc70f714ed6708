# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""Show on a CPU that SkipConv networks learn: dense vs SkipConv CIFAR ResNets, side by side.

Writes a learnable generated set in the CIFAR-10 format (class-conditional shapes, see
``skipconv_det.datasets.synthetic_cls``), then trains each variant's config from ``configs/classification/``
(ResNet-56 there, depth 20 here by default) through mmpretrain's Runner with the config's own model, optimizer and
data pipeline; only the data root, the batch and the number of epochs change (the lr steps keep their place in the
schedule, see ``skipconv_det.apis.cls_demo``). Prints a markdown table of top-1 accuracy and training time; count
the FLOPs of the same networks with ``tools/get_flops.py CONFIG --shape 32 32 --cfg-options
model.backbone.depth=20``. Several seeds and more variants: ``tools/ablation.py --tasks cls``.

Example:
    nice -n 10 python tools/cls_learning_demo.py --work-dir work_dirs/cls_learning_demo
"""
import argparse
import os.path as osp
import time
from typing import List, Optional, Tuple

from mmengine.runner import Runner

from ..apis.cls_demo import CLS_DEMO_CONFIGS, CONFIG_DIR, cls_demo_config
from ..datasets.synthetic_cls import write_cifar
from ..engine import enable_amp


def parse_cls_demo_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Arguments of ``tools/cls_learning_demo.py``."""
    parser = argparse.ArgumentParser(description='Train dense and SkipConv CIFAR ResNets on a generated set')
    parser.add_argument('--work-dir', default='work_dirs/cls_learning_demo', help='data, logs and checkpoints')
    parser.add_argument('--variants', nargs='+', default=list(CLS_DEMO_CONFIGS), choices=list(CLS_DEMO_CONFIGS))
    parser.add_argument('--depth', type=int, default=20, help='CIFAR ResNet depth (6n + 2)')
    parser.add_argument('--epochs', type=int, default=12)
    parser.add_argument('--num-train', type=int, default=3000, help='generated training images')
    parser.add_argument('--num-test', type=int, default=500, help='generated test images')
    parser.add_argument('--batch-size', type=int, default=64, help='(the configs train with 8 x 16 = 128)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--amp', action='store_true',
                        help='train in mixed precision, as tools/train.py --amp (bfloat16 on the CPU, float16 on CUDA)')
    return parser.parse_args(argv)


def run_cls_demo(argv: Optional[List[str]] = None) -> List[Tuple[str, str, float, float]]:
    """Run ``tools/cls_learning_demo.py`` with the given command-line arguments (default: ``sys.argv``); print the
    table and return its rows: (variant, config, top-1 %, train time s)."""
    args = parse_cls_demo_args(argv)
    data_root = write_cifar(osp.join(args.work_dir, 'data'), args.num_train, args.num_test, seed=args.seed)
    rows = []
    for variant in args.variants:
        cfg = cls_demo_config(osp.join(CONFIG_DIR, CLS_DEMO_CONFIGS[variant]), data_root,
                              osp.join(args.work_dir, variant), args.seed, args.epochs, args.batch_size,
                              model=dict(backbone=dict(depth=args.depth)))
        if args.amp:
            enable_amp(cfg)
        runner = Runner.from_cfg(cfg)
        start = time.perf_counter()
        runner.train()  # validates after the last epoch
        train_time = time.perf_counter() - start
        top1 = runner.message_hub.get_scalar('val/accuracy/top1').current()
        rows.append((variant, CLS_DEMO_CONFIGS[variant], top1, train_time))

    print(f'\nResNet-{args.depth}, {args.num_train} generated CIFAR-10-format train images, {args.num_test} test, '
          f'{args.epochs} epochs, batch {args.batch_size}, seed {args.seed}\n')
    print('| convs | config (depth overridden) | top-1 (%) | train time (s) |')
    print('|---|---|---|---|')
    for variant, config, top1, train_time in rows:
        print(f'| {variant} | {config} | {top1:.1f} | {train_time:.0f} |')
    return rows
