# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""``make demo``: generate a synthetic COCO dataset, train a dense and a SkipConv Faster R-CNN on it from scratch,
and print FLOPs, latency and bbox mAP side by side. See ``python tools/demo.py -h``."""
import os

# Idle OpenMP threads sleep instead of spinning. On a CPU shared with other work, threads spinning at every op's
# barrier while they wait for a descheduled sibling slow training down many times over. Read when torch loads its
# OpenMP runtime, so it is set before the import; a user's own setting wins.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

from skipconv_det.cli.demo import run_demo  # noqa: E402

if __name__ == '__main__':
    run_demo()
