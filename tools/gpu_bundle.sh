#!/usr/bin/env bash
# Pack into gpu_bundle/ (ignored by git) what tools/gpu_check.sh needs on a GPU machine that has Python 3.12 with its
# own torch but neither the OpenMMLab stack nor a package registry: cp312 manylinux x86-64 wheels of
# requirements/gpu_bundle.txt (mmengine, mmdet, pycocotools and the small dependencies that machine lacks) and of
# mmcv-lite, OpenMMLab's build of mmcv without its compiled ops (MMCV_WITH_OPS=0), at requirements/tested.txt's mmcv
# version. tools/gpu_check_mmcv_ext.py stands in for the compiled ops there; where PYTHON has mmcv's compiled ops,
# this script first checks the stand-in against them.
#
# Run it where pip reaches PyPI, then carry gpu_bundle/ with the working tree (the device tool's `carry`).
# Usage: bash tools/gpu_bundle.sh [PYTHON]   (any Python with pip; default .venv/bin/python if present, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${1:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
BUNDLE=gpu_bundle
TARGET_PYTHON=3.12          # the GPU machine's python3
CARRY_LIMIT=$((64 << 20))   # what one run there takes along: the working tree and the carried paths together
MMCV_VERSION=$(sed -n 's/^mmcv==//p' requirements/tested.txt)

say() { printf '[gpu_bundle] %s\n' "$*"; }

if "$PYTHON" -c 'import mmcv.ops' 2>/dev/null; then
    "$PYTHON" tools/gpu_check_mmcv_ext.py
else
    say "$PYTHON has no mmcv with compiled ops: the stand-in (tools/gpu_check_mmcv_ext.py) is not checked"
fi

rm -rf "$BUNDLE"   # one version of each package: pip refuses to install two
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$tag")
done
say "downloading cp${TARGET_PYTHON/./} wheels into $BUNDLE/"
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --implementation cp \
    --python-version "$TARGET_PYTHON" "${platforms[@]}" -d "$BUNDLE" \
    -c requirements/tested.txt -r requirements/gpu_bundle.txt "mmcv-lite==$MMCV_VERSION"

bundle_bytes=$(du -cb "$BUNDLE"/*.whl | tail -n 1 | cut -f 1)
tree_bytes=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | tail -n 1 | cut -f 1)
(cd "$BUNDLE" && ls -l --block-size=K -- *.whl | awk '{print "    " $5 "  " $9}')
say "$(ls "$BUNDLE"/*.whl | wc -l) wheels, $((bundle_bytes >> 10)) KiB; with the working tree" \
    "($((tree_bytes >> 10)) KiB) $(((bundle_bytes + tree_bytes) >> 10)) KiB of the $((CARRY_LIMIT >> 20)) MiB a run carries"
if ((bundle_bytes + tree_bytes > CARRY_LIMIT)); then
    say "too large to carry"
    exit 1
fi
say "on the GPU machine: carry $BUNDLE and run: bash tools/gpu_check.sh python3 \$OUT"
