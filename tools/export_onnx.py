# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""Export a config's model to ONNX and check it in onnxruntime. See ``python tools/export_onnx.py -h``."""
from skipconv_det.cli.export_onnx import run_export

if __name__ == '__main__':
    run_export()
