#!/usr/bin/env bash
# Install mmcv (the version pinned in requirements/tested.txt, 2.1.0) WITH its compiled ops (nms, RoIAlign, ...)
# into the current Python environment.
#
# Why a script: mmcv 2.1.0 is the newest release mmdet 3.3 accepts, and PyPI has no wheel of it for torch 2.14,
# so it must be built from its source distribution. As shipped, that build fails: torch 2.14's headers need
# C++20 while mmcv's setup.py passes -std=c++17. We patch that flag to c++20 and build with CFLAGS=-g0 (debug
# info doubles the compile time). A cold build takes about 18 minutes on 2 cores, so the built wheel is cached
# outside the repo, keyed by the mmcv, torch, Python and CUDA versions: every later install takes seconds.
#
# Usage: tools/install_mmcv.sh [PYTHON]   (default: python; the Makefile passes .venv/bin/python)
set -euo pipefail

PYTHON=$("${1:-python}" -c 'import sys; print(sys.executable)')  # absolute: the build runs in another dir
MMCV_VERSION=$(sed -n 's/^mmcv==//p' "$(dirname "$0")/../requirements/tested.txt")
CACHE_ROOT=${SKIPCONV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/skipconv_det}

say() { printf '[install_mmcv] %s\n' "$*"; }

if "$PYTHON" - <<PY 2>/dev/null
import mmcv, mmcv.ops
from mmcv.ops import nms, RoIAlign
assert mmcv.__version__ == '$MMCV_VERSION'
PY
then
    say "mmcv $MMCV_VERSION with ops is already installed"
    exit 0
fi

read -r TORCH_VERSION PY_TAG CUDA_TAG < <("$PYTHON" - <<'PY'
import sys, torch
cuda = 'cu' + torch.version.cuda.replace('.', '') if torch.cuda.is_available() and torch.version.cuda else 'cpu'
print(torch.__version__.split('+')[0], f'cp{sys.version_info.major}{sys.version_info.minor}', cuda)
PY
)
KEY="mmcv-${MMCV_VERSION}_torch-${TORCH_VERSION}_${PY_TAG}_${CUDA_TAG}"
WHEEL_DIR="$CACHE_ROOT/wheels/$KEY"
say "cache key: $KEY"

if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
    say "no cached wheel in $WHEEL_DIR: building from source (about 18 min on 2 cores)"
    # mmcv's setup.py imports pkg_resources (gone from setuptools >= 70) while torch 2.14 declares
    # setuptools>=77: downgrade for the build only and restore torch's requirement on exit (<81 keeps the
    # pkg_resources that mmengine itself still imports).
    BUILD_DIR=$(mktemp -d)
    trap 'rm -rf "$BUILD_DIR"; "$PYTHON" -m pip install --quiet "setuptools>=77.0.3,<81"' EXIT
    "$PYTHON" -m pip install --quiet 'setuptools<70' wheel ninja
    "$PYTHON" -m pip download --quiet --no-deps --no-build-isolation --no-binary :all: "mmcv==$MMCV_VERSION" \
        -d "$BUILD_DIR"
    tar -xzf "$BUILD_DIR/mmcv-$MMCV_VERSION.tar.gz" -C "$BUILD_DIR"
    SRC="$BUILD_DIR/mmcv-$MMCV_VERSION"
    # torch 2.14's headers use C++20 features; mmcv hard-codes c++17.
    sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
    grep -q -- '-std=c++20' "$SRC/setup.py" || { say "patch failed: no -std flag found in setup.py"; exit 1; }
    if [ "$CUDA_TAG" != cpu ]; then
        say "CUDA device visible: building the CUDA ops too"
        export FORCE_CUDA=1
    fi
    mkdir -p "$WHEEL_DIR"
    LOG="$CACHE_ROOT/build-$KEY.log"
    say "full build log: $LOG (progress below is ninja's [done/total] counter)"
    # -g0: debug info doubles the compile time.
    ( cd "$SRC" && MMCV_WITH_OPS=1 CFLAGS=-g0 CXXFLAGS=-g0 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
        "$PYTHON" -m pip wheel --no-build-isolation --no-deps -v . -w "$WHEEL_DIR.partial" ) >"$LOG" 2>&1 &
    BUILD_PID=$!
    while kill -0 "$BUILD_PID" 2>/dev/null; do
        sleep 30
        say "$(date +%H:%M:%S) $(grep -o '^ *\[[0-9]*/[0-9]*\]' "$LOG" | tail -n 1)"
    done
    wait "$BUILD_PID" || { tail -n 40 "$LOG"; say "build failed, see $LOG"; rm -rf "$WHEEL_DIR.partial"; exit 1; }
    mv "$WHEEL_DIR.partial"/mmcv-*.whl "$WHEEL_DIR"/ && rmdir "$WHEEL_DIR.partial"
    say "cached $(ls "$WHEEL_DIR")"
else
    say "using cached wheel $(ls "$WHEEL_DIR"/mmcv-*.whl)"
fi

"$PYTHON" -m pip install --quiet "$WHEEL_DIR"/mmcv-*.whl
"$PYTHON" -c "from mmcv.ops import nms, RoIAlign; import mmcv; print('[install_mmcv] mmcv', mmcv.__version__, 'ops OK')"
