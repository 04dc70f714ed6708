# `make demo` and `make test` do all set-up themselves on a fresh machine (through `make install`).
# `make install` installs the exact stack of requirements/tested.txt; setup.py itself only declares ranges.
PYTHON_BOOT ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TESTED := requirements/tested.txt

.PHONY: install test test-fast demo clean-venv
install: $(STAMP)

$(STAMP): setup.py $(TESTED) tools/install_mmcv.sh
	@echo "== [1/5] virtual environment $(VENV) (Python 3.11)"
	test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	@echo "== [2/5] torch + torchvision ($(TESTED))"
	$(PY) -m pip install --progress-bar off -c $(TESTED) torch torchvision wheel ninja
	@echo "== [3/5] mmcv with compiled ops ($(TESTED); cached wheel, or an ~18 min build)"
	bash tools/install_mmcv.sh $(PY)
	@echo "== [4/5] mmengine, mmdet, mmpretrain, pycocotools, pytest and skipconv_det (editable)"
	$(PY) -m pip install --progress-bar off -c $(TESTED) -e '.[mmpretrain,tests]'
	@echo "== [5/5] SkipConv's CPU kernels (built once into torch's extension cache)"
	$(PY) -c "from skipconv_det.ops._extension import load; assert load(), 'build failed'"
	$(PY) -c "from skipconv_det.inference.write import build_kernel; assert build_kernel(), 'build failed'"
	touch $(STAMP)

# The full suite (what CI runs), and the edit loop's tier: everything but end-to-end runs, subprocesses, benchmark
# runs and the rest of the reduced matrices (markers e2e and full, setup.cfg). Both run on TEST_WORKERS processes
# (pytest-xdist), each with its share of the cores (tests/conftest.py); TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 2
test: install
	$(PY) -m pytest tests -n $(TEST_WORKERS)

test-fast: install
	$(PY) -m pytest tests -n $(TEST_WORKERS) -m "not e2e and not full"

demo: install
	$(PY) tools/demo.py

clean-venv:
	rm -rf $(VENV)
