# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""Show on a CPU that SkipConv networks learn: dense vs SkipConv CIFAR ResNets trained side by side on a generated
CIFAR-10-format set. See ``python tools/cls_learning_demo.py -h``.

Example:
    nice -n 10 python tools/cls_learning_demo.py --work-dir work_dirs/cls_learning_demo
"""
from skipconv_det.cli.cls_demo import run_cls_demo

if __name__ == '__main__':
    run_cls_demo()
