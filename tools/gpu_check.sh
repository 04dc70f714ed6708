#!/usr/bin/env bash
# On a machine with a CUDA GPU: run the tests that take a device on CUDA, then the layer and model benchmarks, and
# write their tables under OUT (default work_dirs/gpu_check), so that a GPU session is spent measuring.
#
# Usage: bash tools/gpu_check.sh [PYTHON] [OUT]    (expects `make install` done, or PYTHON with the stack)
set -uo pipefail

PYTHON=${1:-.venv/bin/python}
OUT=${2:-${OUT:-work_dirs/gpu_check}}
mkdir -p "$OUT"
"$PYTHON" - <<'PY' | tee "$OUT/device.txt"
import torch
assert torch.cuda.is_available(), 'no CUDA device visible'
print(f'torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}')
PY
[ "${PIPESTATUS[0]}" -eq 0 ] || exit 1

echo "== tests on CUDA (the parametrised device tests, fp16 and bf16 included)"
TORCH_DEVICE=cuda timeout 600 "$PYTHON" -m pytest tests/test_skip_conv.py -k cuda -q \
    -p no:cacheprovider 2>&1 | tail -n 5 | tee "$OUT/tests.txt"

echo "== layer benchmark, forward and forward + backward"
for pass in "" "--backward"; do
    timeout 300 "$PYTHON" tools/benchmark.py layer --device cuda --preset resnet50-3x3 $pass \
        --patterns checkerboard/zero checkerboard/nearest checkerboard/linear grid+shift/linear \
        --json "$OUT/layer${pass:+-backward}.json" | tee "$OUT/layer${pass:+-backward}.md"
done

echo "== model benchmark, Faster R-CNN R-50-FPN @ 800x1216 (eager; then BN folded)"
CONFIG=configs/faster-rcnn_r50-skipconv_fpn_1x_coco.py
timeout 600 "$PYTHON" tools/benchmark.py model "$CONFIG" --device cuda --shape 800 1216 --repeats 10 \
    --json "$OUT/model.json" | tee "$OUT/model.md"
timeout 300 "$PYTHON" tools/benchmark.py model "$CONFIG" --device cuda --shape 800 1216 --repeats 10 --fuse-bn \
    --json "$OUT/model-fused.json" | tee "$OUT/model-fused.md"
echo "== tables in $OUT"
