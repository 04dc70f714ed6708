# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""Speed of SkipConv vs dense convolution, per layer or per model. See ``python tools/benchmark.py -h``."""
from skipconv_det.cli.benchmark import run_benchmark

if __name__ == '__main__':
    run_benchmark()
