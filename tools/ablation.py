# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""The accuracy study: SkipConv variants (pattern, fill, shift_channels, where SkipConv sits) and their dense twin,
trained for several seeds on the detection and classification demo sets; prints mean ± std of bbox mAP / top-1 with
GFLOPs and latency ratios, and writes JSON and an accuracy-vs-FLOPs plot. See ``python tools/ablation.py -h``.

Example (the README's table):
    python tools/ablation.py --tasks det --seeds 0 1 2 --work-dir work_dirs/ablation
"""
import os

# As in tools/demo.py: idle OpenMP threads sleep instead of spinning (set before torch loads).
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

from skipconv_det.cli.ablation import run_ablation  # noqa: E402

if __name__ == '__main__':
    run_ablation()
