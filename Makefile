# rmtlib + its Jupyter Book.  Two commands matter:
#   make book   # set up .venv, execute the notebooks (PROFILE=default), build _build/html
#   make test   # set up .venv, run every test (unit, end-to-end, browser)
# Everything runs in .venv, created by `make setup` with plain pip. `make lab` opens JupyterLab.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
PROFILE ?= default
# Dask workers of `make book` (python -m rmtlib.reproduce --workers): one single-threaded process
# per core by default; WORKERS=0 executes sequentially (or on $RMTLIB_SCHEDULER when it is set).
WORKERS ?= $(shell nproc 2>/dev/null || echo 1)
BENCH_WORKERS ?= 2
VENV := .venv
BIN := $(VENV)/bin
# The setup stamp is keyed on the content of the files that define the environment, so a second
# `make setup` is instant and any change to them reinstalls.
SETUP_KEY := $(shell cat requirements.txt pyproject.toml | sha256sum | cut -c1-16)
STAMP := $(VENV)/.setup-$(SETUP_KEY)

# Offline data sets: $RMTLIB_DATA if set, else ../shared/data beside the repository.
ifeq ($(origin RMTLIB_DATA),undefined)
  ifneq ($(wildcard ../shared/data),)
    export RMTLIB_DATA := $(abspath ../shared/data)
  endif
endif

.PHONY: help setup chromium book test test-fast test-gpu bench bench-scaleout lab clean distclean

help:
	@echo "make book [PROFILE=quick|default|paper]  execute the notebooks and build _build/html"
	@echo "          [WORKERS=N]                    on N Dask workers (default: all cores; 0: sequential)"
	@echo "make test                                run all tests (unit, e2e, browser)"
	@echo "make test-fast                           unit tests only (no notebook execution, no browser)"
	@echo "make test-gpu                            the GPU tests (fail, not skip, when CUDA is present)"
	@echo "make bench                               run the benchmarks (python -m rmtlib.benchmarks)"
	@echo "make bench-scaleout [PROFILE=default]    the build sequentially vs BENCH_WORKERS=2 workers"
	@echo "make lab [LAB_ARGS=...]                  JupyterLab on the notebooks (run them by hand)"
	@echo "make setup                               create .venv with the pinned requirements"
	@echo "make clean | distclean                   remove build outputs | also results/ and .venv"

setup: $(STAMP)

$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -r requirements.txt -e '.[book,test,compare]'
	rm -f $(VENV)/.setup-*
	touch $@

# The browser test drives Debian's chromium (never a downloaded browser). Installed here when
# missing and we are root; RMTLIB_ALLOW_SKIP_BROWSER=1 lets the test skip instead.
chromium:
	@command -v chromium >/dev/null || [ "$${RMTLIB_ALLOW_SKIP_BROWSER:-}" = 1 ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium for the browser test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "chromium is missing: run 'sudo apt-get install chromium' (or RMTLIB_ALLOW_SKIP_BROWSER=1 make test)"; \
	    exit 1; \
	  fi; }

book: setup
	$(BIN)/python -m rmtlib.reproduce --profile $(PROFILE) --workers $(WORKERS)
	$(BIN)/jupyter-book build . -W -n --keep-going

test: setup chromium
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not e2e and not browser"

test-gpu: setup
	RMTLIB_REQUIRE_GPU=1 $(BIN)/python -m pytest -m gpu tests/test_gpu.py

bench: setup
	$(BIN)/python -m rmtlib.benchmarks

# Issue 10's measurement: the selected runs (all by default) executed twice from empty results: sequentially,
# then on BENCH_WORKERS local Dask workers; metrics compared, both wall times recorded in
# results/benchmarks/scale_out_$(PROFILE).json. Leaves the parallel build's (identical) results.
bench-scaleout: setup
	$(BIN)/python -m rmtlib.reproduce --profile $(PROFILE) --benchmark --workers $(BENCH_WORKERS)

# JupyterLab from the repository root (so that notebooks find their relative paths and write
# results/manual/), notebooks/ open, on the runner's kernel (the .venv's Python: kernel_name());
# this checkout's rmtlib first on the kernels' path. As root, --allow-root. The URL (with its
# token) is printed by JupyterLab. LAB_ARGS adds options, e.g. LAB_ARGS="--no-browser --port=9999".
LAB_ARGS ?=
lab: setup
	@kernel="$$($(BIN)/python -c 'from rmtlib.reproduce import kernel_name; print(kernel_name())')"; \
	opts="--MultiKernelManager.default_kernel_name=$$kernel"; \
	[ "$$kernel" = python3 ] || opts="$$opts --KernelSpecManager.allowed_kernelspecs=$$kernel"; \
	[ "$$(id -u)" != 0 ] || opts="$$opts --allow-root"; \
	echo "JupyterLab on $(CURDIR)/notebooks, kernel '$$kernel'; open the URL printed below"; \
	PYTHONPATH="$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH}" exec $(BIN)/jupyter lab \
	  --ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/notebooks $$opts $(LAB_ARGS)

clean:
	rm -rf _build book/executed .pytest_cache .hypothesis .benchmarks
	find . -path ./.venv -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf results $(VENV)
