# videoprep: `make help` lists the targets.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=
TESTS  ?= tests
STAMP  := $(VENV)/.setup-stamp
# Whether FFmpeg's shared libraries are here (torchcodec loads them): checked on every run and rewritten only
# when the answer changes, so `apt-get install ffmpeg` then `make setup` installs torchcodec.
FFLIBS := $(VENV)/.ffmpeg-libs
BOOTSTRAP_PYTHON ?= python3

.PHONY: help setup test test-all lint bench gpu-check wheelhouse demo clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 12

setup: $(STAMP)  ## Create .venv and install everything the project needs

$(FFLIBS): FORCE
	@mkdir -p $(VENV)
	@found=$$(python3 -c "import ctypes.util; print(ctypes.util.find_library('avcodec') or 'none')"); \
	if [ "$$(cat $@ 2>/dev/null)" != "libavcodec: $$found" ]; then echo "libavcodec: $$found" > $@; fi

FORCE:

$(STAMP): pyproject.toml Makefile $(FFLIBS)
	$(BOOTSTRAP_PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	# The local CPU wheel; a bare `torch` would pull several GB of CUDA packages.
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e '.[all]'
	@if $(PY) -c "import ctypes.util, sys; sys.exit(not ctypes.util.find_library('avcodec'))"; then \
		$(PY) -m pip install -e '.[torchcodec]'; \
	else echo "torchcodec backend not installed: FFmpeg's shared libraries not found (apt-get install ffmpeg, then make setup)"; fi
	touch $(STAMP)

test: setup  ## Run the default test suite (TESTS=path to pick a subset)
	$(PY) -m pytest $(TESTS) -m "not slow and not gpu" $(PYTEST_ARGS)

test-all: setup  ## Run every test, slow ones included
	$(PY) -m pytest $(TESTS) -m "not gpu" $(PYTEST_ARGS)

lint: setup  ## Ruff over the whole tree
	$(VENV)/bin/ruff check .

bench: setup  ## Run the benchmarks under benchmarks/ (figures go to bench-out/)
	$(PY) benchmarks/run_all.py --out bench-out

# GPU node without a network: `make wheelhouse PYVER=3.12` on a networked machine, copy the folder over, then
# `make gpu-check PYTHON=python3 WHEELHOUSE=DIR` there (a venv over PYTHON, which holds the node's CUDA torch).
PYTHON     ?= python3
PYVER      ?= $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
WH_GROUPS  ?= core torchcodec dali
GPU_VENV   ?= .venv-gpu
GPU_OUT    ?= gpu-check
# torch minor -> the torchcodec release built for it (torchcodec's compatibility table).
TORCHCODEC_FOR_TORCH ?= 2.10=0.10.0 2.11=0.11.1 2.12=0.12.0 2.13=0.13.0
# PyPI's torchcodec decodes on CPU only; for torchcodec on CUDA: https://download.pytorch.org/whl/cu130
TORCHCODEC_INDEX ?=

wheelhouse: setup  ## Wheels minus torch + FFmpeg libs for a GPU node without a network (PYVER=3.12; in WHEELHOUSE or wheelhouse/)
	$(PY) -m tools.wheelhouse build --out $(or $(WHEELHOUSE),wheelhouse) --python-version $(PYVER) \
		--groups $(WH_GROUPS) --torchcodec-table "$(TORCHCODEC_FOR_TORCH)" \
		$(if $(TORCHCODEC_INDEX),--torchcodec-index $(TORCHCODEC_INDEX))

ifneq ($(WHEELHOUSE),)
gpu-check:
	$(PYTHON) -m tools.wheelhouse install --wheelhouse $(WHEELHOUSE) --venv $(GPU_VENV) \
		--torchcodec-table "$(TORCHCODEC_FOR_TORCH)"
	LD_LIBRARY_PATH="$(abspath $(GPU_VENV))/ffmpeg-libs$${LD_LIBRARY_PATH:+:$$LD_LIBRARY_PATH}" \
		$(GPU_VENV)/bin/python benchmarks/gpu_check.py --out $(GPU_OUT) --install-record $(GPU_VENV)/install.json
else
gpu-check: setup  ## Prove every GPU path (<= 8 min on a CUDA machine; CPU parts only elsewhere); offline: PYTHON=python3 WHEELHOUSE=DIR
	$(PY) benchmarks/gpu_check.py --out $(GPU_OUT)
endif

demo: setup  ## The whole toolkit end to end on generated data (outputs in demo-out/)
	$(VENV)/bin/videoprep demo --out demo-out

clean:  ## Remove build and demo outputs (keeps .venv)
	rm -rf demo-out bench-out gpu-check .venv-gpu .pytest_cache .ruff_cache *.egg-info
