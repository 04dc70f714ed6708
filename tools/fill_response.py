# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""How much of a striped texture each SkipConv setting keeps at its skipped positions. See
``python tools/fill_response.py -h``."""
from skipconv_det.cli.fill_response import run_fill_response

if __name__ == '__main__':
    run_fill_response()
