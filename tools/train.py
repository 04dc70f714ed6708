# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""Train any OpenMMLab config, as MMDetection's tools/train.py does; ``--skipconv`` turns its model into a SkipConv
one. See ``python tools/train.py -h``."""
from skipconv_det.cli.train import run_train

if __name__ == '__main__':
    run_train()
