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

.PHONY: help setup test test-all lint bench gpu-check demo clean

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

gpu-check: setup  ## Prove every GPU path (<= 8 min on a CUDA machine; CPU parts only elsewhere); report in gpu-check/
	$(PY) benchmarks/gpu_check.py --out gpu-check

demo: setup  ## The whole toolkit end to end on generated data (outputs in demo-out/)
	$(VENV)/bin/videoprep demo --out demo-out

clean:  ## Remove build and demo outputs (keeps .venv)
	rm -rf demo-out bench-out gpu-check .pytest_cache .ruff_cache *.egg-info
