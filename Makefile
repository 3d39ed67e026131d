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
OUT ?= results/gpu_check

.PHONY: help env data book check-book browser test test-fast lint format strip \
	student instructor gpu-check gpu-smoke-cpu clean

# The browser check drives the system's Chromium; root installs it, others via sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
CHROMIUM = $(shell command -v chromium || command -v chromium-browser)

help:
	@echo "make book       set up .venv, build the synthetic data, execute every chapter, render _build/html"
	@echo "make test       set up .venv, lint, run unit tests, every chapter at PROFILE=smoke, a strict book build,"
	@echo "                then check its pages (raw markup, errors, images) and load each in Chromium"
	@echo "make test-fast  unit tests only (no chapters, no slow tests)"
	@echo "make gpu-check  on a CUDA machine: the GPU tests, the bench and every chapter at PROFILE=gpu-smoke"
	@echo "                -> OUT/summary.json, summary.md, bench_gpu.json (OUT=results/gpu_check; < 10 min)"
	@echo "make gpu-smoke-cpu  every chapter at PROFILE=gpu-smoke on the CPU -> OUT (results/gpu_smoke_cpu)"
	@echo "make lint       ruff check + format check;  make format  to fix"
	@echo "make strip      clear outputs from book/*.ipynb before committing"
	@echo "make check-book check _build/html: raw markup, errors, images; every page in Chromium"
	@echo "make student    student notebooks (solutions replaced by stubs) in _build/student"
	@echo "make instructor instructor notebooks (solutions kept) in _build/instructor"

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PINS)
	$(BIN)/python -m pip install --quiet -e ".[book,test]"
	touch $@

data: $(STAMP)
	$(BIN)/python data_scripts/make_synthetic.py --profile $(PROFILE)

# jupyter-cache keys a chapter on its code cells alone: after a change to the library, the
# kept results or the profile, every chapter must run again, so the cache is dropped then.
BOOK_INPUTS = $(shell cat pyproject.toml $$(find slicemri_lite results -type f -not -name '*.pyc' | sort) | sha1sum | cut -c1-16)-$(PROFILE)

book: data
	@if [ "$$(cat _build/.book-inputs 2>/dev/null)" != "$(BOOK_INPUTS)" ]; then \
		echo "library, results or profile changed since the last build: every chapter runs again"; \
		rm -rf _build/.jupyter_cache; mkdir -p _build; echo "$(BOOK_INPUTS)" > _build/.book-inputs; \
	fi
	$(BIN)/python tools/timings.py --write
	rm -rf _build/html
	$(BIN)/jupyter-book build --all .
	$(BIN)/python tools/pin_install.py _build/html/_sources
	$(BIN)/python tools/check_pages.py _build/html
	@echo
	@echo "The book is in _build/html. View it with:"
	@echo "    $(BIN)/python -m http.server -d _build/html 8000   # then open http://localhost:8000"

check-book: $(STAMP) browser
	$(BIN)/python tools/check_pages.py _build/html
	$(BIN)/python tools/check_browser.py _build/html --screenshots _build/screenshots

# Debian's chromium for the browser check (tests/test_browser.py); installed when missing.
browser:
	@if [ -z "$(CHROMIUM)" ]; then \
		echo "installing chromium for the browser check"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; \
	fi
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
		echo "chromium could not be installed; the browser check needs it:"; \
		echo "install Debian's chromium package (apt-get install chromium) and rerun."; \
		exit 1; }

test: $(STAMP) browser lint
	$(BIN)/python -m pytest

test-fast: $(STAMP) browser
	$(BIN)/python -m pytest -m "not notebooks and not slow"

student: $(STAMP)
	$(BIN)/python tools/editions.py student

instructor: $(STAMP)
	$(BIN)/python tools/editions.py instructor

# Before a release, on one CUDA GPU: what the CPU tests cannot reach (bf16 autocast,
# channels_last, torch.compile, pinned non-blocking copies), the 2 mm bench, and every
# chapter at PROFILE=gpu-smoke (the gpu profile's code paths at smoke sizes); the card's
# name and each step's time go to $(OUT)/summary.json and summary.md.
gpu-check: $(STAMP)
	$(BIN)/python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu-check needs a CUDA GPU; none is visible to torch.')"
	$(BIN)/python tools/gpu_check.py --out $(OUT)

# The same chapters at PROFILE=gpu-smoke on the CPU (2 mm, fine-tuning; no bf16), before a
# GPU is lent. Minutes; not part of make test.
gpu-smoke-cpu: $(STAMP)
	$(BIN)/python tools/gpu_check.py --chapters-only --out $(if $(filter command line,$(origin OUT)),$(OUT),results/gpu_smoke_cpu)

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
