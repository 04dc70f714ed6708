# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""Test (and evaluate) a checkpoint, as MMDetection's tools/test.py does; ``--skipconv`` turns the config's model
into a SkipConv one. See ``python tools/test.py -h``."""
from skipconv_det.cli.test import run_test

if __name__ == '__main__':
    run_test()
