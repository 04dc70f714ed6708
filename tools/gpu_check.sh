#!/usr/bin/env bash
# On a machine with a CUDA GPU: SkipConv's CUDA tests, the layer benchmark and the Faster R-CNN R-50-FPN model
# benchmark (eager; BN folded; optimized for inference), each step under its own time limit and the whole within one
# 10-minute command, so that a GPU session is spent measuring. The log, a summary and each benchmark's JSON go to OUT
# (default work_dirs/gpu_check); the summary is printed last.
#
# Usage: bash tools/gpu_check.sh [PYTHON] [OUT]
#   PYTHON (default: .venv/bin/python if present, else python3) has the stack (`make install`), or is a bare Python
#   3.12 with its own torch: then gpu_bundle/ (tools/gpu_bundle.sh, run where pip reaches PyPI, carried along) is
#   installed into a temporary folder with no network, and tools/gpu_check_mmcv_ext.py stands in for mmcv's compiled
#   ops (NMS and RoIAlign on torchvision's kernels; every other mmcv op raises).
# Without CUDA it is a rehearsal: the same steps on the CPU at a small size, the CUDA tests collected, not run.
# GPU_CHECK_BUDGET_S (default 540 with CUDA, 1800 without) bounds the whole; a step that would pass it is cut short.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${1:-$([ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || echo python3)}
OUT=${2:-${OUT:-work_dirs/gpu_check}}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
cd "$ROOT" || exit 1

CONFIG=configs/faster-rcnn_r50-skipconv_fpn_1x_coco.py
LAYER_PATTERNS=(checkerboard/zero checkerboard/nearest checkerboard/linear grid+shift/linear)
# SkipConv's compiled kernels serve eager CPU only: building them would spend a GPU minute for nothing.
export SKIPCONV_DET_EXTENSION=0 PYTHONUNBUFFERED=1
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
SUMMARY=()

# Install gpu_bundle/ into a temporary folder where PYTHON lacks mmdet; what it installed is said in the log.
use_bundle() {
    "$PYTHON" -c 'import mmdet' 2>/dev/null && return 0
    if ! ls gpu_bundle/*.whl >/dev/null 2>&1; then
        echo "$PYTHON has no mmdet and there is no gpu_bundle/: run tools/gpu_bundle.sh where pip reaches PyPI"
        return 1
    fi
    SITE=$(mktemp -d "${TMPDIR:-/tmp}/skipconv_gpu_site.XXXXXX")
    trap 'rm -rf "$SITE"' EXIT
    local wheels=() wheel
    for wheel in gpu_bundle/*.whl; do
        # The bundle's setuptools only where PYTHON's own lacks pkg_resources (mmengine resolves mmdet:: with it).
        [[ $wheel == */setuptools-* ]] && "$PYTHON" -c 'import pkg_resources' 2>/dev/null && continue
        wheels+=("$wheel")
    done
    echo "== installing ${#wheels[@]} wheels of gpu_bundle/ into $SITE (no network)"
    "$PYTHON" -m pip install --quiet --no-index --no-deps --no-cache-dir --disable-pip-version-check \
        --target "$SITE" "${wheels[@]}" || return 1
    ls "$SITE"/mmcv/_ext*.so >/dev/null 2>&1 || cp tools/gpu_check_mmcv_ext.py "$SITE/mmcv/_ext.py"
    export PYTHONPATH="$SITE:$PYTHONPATH"
}

# step NAME LIMIT_S COMMAND...: run COMMAND under min(LIMIT_S, what the budget leaves; on the CPU only the budget);
# its status goes to SUMMARY.
step() {
    local name=$1 limit=$2 start=$SECONDS status
    shift 2
    local left=$((BUDGET_S - SECONDS - 15))
    if ((left < 30)); then
        skip "$name" "the budget (${BUDGET_S}s) is spent"
        return 1
    fi
    ((limit > left)) || [ "$DEVICE" = cpu ] && limit=$left
    echo "== $name (at most ${limit}s)"
    timeout --kill-after=10 "$limit" "$@"
    local rc=$?
    case $rc in
        0) status=ok ;;
        124 | 137) status="TIMED OUT (${limit}s)" ;;
        *) status="FAILED (exit $rc)" ;;
    esac
    SUMMARY+=("$(printf '%-44s %-20s %5ds' "$name" "$status" $((SECONDS - start)))")
    return $rc
}

skip() {
    echo "== $1: skipped: $2"
    SUMMARY+=("$(printf '%-44s skipped: %s' "$1" "$2")")
}

main() {
    use_bundle || return 1
    "$PYTHON" - <<'PY' || return 1
import sys

import mmcv, mmdet, mmengine, torch
from importlib.machinery import EXTENSION_SUFFIXES

import skipconv_det  # noqa: F401  (the registrations every step needs)
from mmcv import _ext

device = torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA: a rehearsal on the CPU'
print(f'Python {sys.version.split()[0]}, torch {torch.__version__} (CUDA {torch.version.cuda}), {device}')
ops = ('compiled' if _ext.__file__.endswith(tuple(EXTENSION_SUFFIXES)) else
       'not compiled: NMS and RoIAlign on torchvision (tools/gpu_check_mmcv_ext.py), other ops raise')
print(f'mmengine {mmengine.__version__}, mmcv {mmcv.__version__} (ops {ops}), mmdet {mmdet.__version__}')
PY
    DEVICE=cpu
    local shape=(128 192) timing=(--warmup 1 --repeats 1)
    if "$PYTHON" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
        DEVICE=cuda shape=(800 1216) timing=(--warmup 3 --repeats 10)
        nvidia-smi -L 2>/dev/null
    fi
    BUDGET_S=${GPU_CHECK_BUDGET_S:-$([ $DEVICE = cuda ] && echo 540 || echo 1800)}

    local tests=(tests/test_skip_conv.py -k cuda -q -p no:cacheprovider)
    if [ $DEVICE = cuda ]; then
        TORCH_DEVICE=cuda step "CUDA tests (test_skip_conv -k cuda)" 150 "$PYTHON" -m pytest "${tests[@]}"
    else
        TORCH_DEVICE=cuda step "CUDA tests: collected only (no CUDA)" 120 "$PYTHON" -m pytest "${tests[@]}" \
            --collect-only -q
    fi

    local pass
    for pass in forward backward; do
        step "layer benchmark, resnet50-3x3, $pass" 60 "$PYTHON" tools/benchmark.py layer --device $DEVICE \
            --preset resnet50-3x3 "${timing[@]}" $([ $pass = backward ] && echo --backward) \
            --patterns "${LAYER_PATTERNS[@]}" --json "$OUT/layer-$pass.json"
    done

    local model=("$PYTHON" tools/benchmark.py model "$CONFIG" --device $DEVICE --shape "${shape[@]}" "${timing[@]}")
    step "R-50-FPN ${shape[0]}x${shape[1]}, eager" 150 "${model[@]}" --json "$OUT/model.json"
    # Where the lattice-domain rewrite fails on this device, the BN-folded pair is still timed.
    step "R-50-FPN ${shape[0]}x${shape[1]}, BN folded + optimized" 150 "${model[@]}" --fuse-bn \
        --optimize-for-inference --json "$OUT/model-fused.json" ||
        step "R-50-FPN ${shape[0]}x${shape[1]}, BN folded" 120 "${model[@]}" --fuse-bn --json "$OUT/model-fused.json"
    summarize | tee "$OUT/summary.txt"
}

# The steps' statuses, then the ratios in the JSONs the benchmarks wrote (their tables are in the log).
summarize() {
    echo "== summary ($SECONDS s in all; log, JSON and this summary in $OUT)"
    printf '%s\n' "${SUMMARY[@]}"
    "$PYTHON" - "$OUT" <<'PY'
import json, pathlib, sys

for path in sorted(pathlib.Path(sys.argv[1]).glob('*.json')):
    result = json.loads(path.read_text())['result']
    if isinstance(result, list):  # layer rows
        print(f'{path.name}: SkipConv speedup vs best dense (Cin x Cout x H x W)')
        for r in result:
            pattern = f"{r['skip_pattern']}{'+shift' if r['shift_channels'] else ''}/{r['fill']}"
            print(f"    {'x'.join(map(str, r['shape'])):<18} {pattern:<22} {r['speedup']:.2f}x")
    else:  # a model: 'ratio' (SkipConv / dense), 'optimized_ratio' (optimized for inference / dense), ...
        for key, ratios in result.items():
            if key.endswith('ratio') and isinstance(ratios, dict):
                print(f'{path.name} {key}: ' + ', '.join(f'{stage} {r:.2f}' for stage, r in ratios.items()))
PY
}

main 2>&1 | tee "$OUT/log.txt"
