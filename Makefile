# `make demo` and `make test` do all set-up themselves on a fresh machine (through `make install`).
PYTHON_BOOT ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test demo clean-venv
install: $(STAMP)

$(STAMP): setup.py tools/install_mmcv.sh
	@echo "== [1/4] virtual environment $(VENV) (Python 3.11)"
	test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	@echo "== [2/4] torch 2.14.1 + torchvision 0.29.1"
	$(PY) -m pip install --progress-bar off 'torch==2.14.1' 'torchvision==0.29.1' wheel ninja
	@echo "== [3/4] mmcv 2.1.0 with compiled ops (cached wheel, or an ~18 min build)"
	bash tools/install_mmcv.sh $(PY)
	@echo "== [4/4] mmengine, mmdet, mmpretrain, pycocotools, pytest and skipconv_det (editable)"
	$(PY) -m pip install --progress-bar off -e '.[tests]'
	touch $(STAMP)

test: install
	$(PY) -m pytest tests

demo: install
	$(PY) tools/demo.py

clean-venv:
	rm -rf $(VENV)
