# slicemri-lite: `make book` builds the book, `make test` runs every test.
# Both create .venv on first use and reinstall only when pyproject.toml changes.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Exact versions for these machines only; pyproject.toml keeps open ranges for Colab.
ARCH := $(shell uname -m)
ifeq ($(ARCH),aarch64)
TORCH_PINS ?= torch==2.9.1 torchvision==0.24.1
else
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
endif
PROFILE ?= auto

.PHONY: help env data book test test-fast gpu-check lint format strip clean

help:
	@echo "make book       set up .venv, build the synthetic data, execute every chapter, render _build/html"
	@echo "make test       set up .venv, run unit tests, every chapter at PROFILE=smoke, and a strict book build"
	@echo "make test-fast  unit tests only (no chapters, no slow tests)"
	@echo "make gpu-check  on a CUDA machine: the GPU tests, then the bench -> results/bench_gpu.json (< 5 min)"
	@echo "make lint       ruff check + format check;  make format  to fix"
	@echo "make strip      clear outputs from book/*.ipynb before committing"

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PINS)
	$(BIN)/python -m pip install --quiet -e ".[book,test]"
	touch $@

data: $(STAMP)
	$(BIN)/python data_scripts/make_synthetic.py --profile $(PROFILE)

book: data
	rm -rf _build/html
	$(BIN)/jupyter-book build --all .
	@echo
	@echo "The book is in _build/html. View it with:"
	@echo "    $(BIN)/python -m http.server -d _build/html 8000   # then open http://localhost:8000"

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not notebooks and not slow"

# Before a release, on one CUDA GPU: what the CPU tests cannot reach (bf16 autocast,
# channels_last, torch.compile, pinned non-blocking copies), then the 2 mm bench.
gpu-check: $(STAMP)
	$(BIN)/python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu-check needs a CUDA GPU; none is visible to torch.')"
	$(BIN)/python -m pytest -m gpu -rs -q
	$(BIN)/python -m slicemri_lite.bench --device cuda --resolution 2 --compare paper \
		--batch-size 8 --steps 5 --warmup 2 --out results/bench_gpu.json

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

strip: $(STAMP)
	$(BIN)/python tools/strip_notebooks.py book/*.ipynb

clean:
	rm -rf _build .pytest_cache .ruff_cache
