# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""Plan a SkipConv model within a FLOPs budget: measure what skipping each layer costs a briefly trained dense
model, choose a setting per layer (dense, checkerboard, grid+shift) with the least predicted loss, and write a
config that builds with the usual tools. See ``python tools/plan.py -h``.

Example:
    python tools/plan.py configs/demo/faster-rcnn_r18-w16-scratch_fpn_1xb8-6e_synthetic-coco.py --flops-ratio 0.62
"""
import os

# As in tools/demo.py: idle OpenMP threads sleep instead of spinning (set before torch loads).
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

from skipconv_det.cli.plan import run_plan  # noqa: E402

if __name__ == '__main__':
    run_plan()
