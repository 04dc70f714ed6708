# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""``make demo``: generate a synthetic COCO dataset, train a dense and a SkipConv Faster R-CNN on it from scratch,
and print FLOPs, latency and bbox mAP side by side. See ``python tools/demo.py -h``."""
from skipconv_det.apis import run_demo

if __name__ == '__main__':
    run_demo()
