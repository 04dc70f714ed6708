# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""FLOPs and params of a config's model, dense vs SkipConv, per component. See ``python tools/get_flops.py -h``."""
from skipconv_det.cli.get_flops import run_get_flops

if __name__ == '__main__':
    run_get_flops()
