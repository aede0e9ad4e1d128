# Two commands do all the set-up on a fresh machine:
#   make run   -> the main job on the embedded default (creates/reuses .venv, installs what is missing)
#   make test  -> the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.foglearn-installed
TORCH := torch==2.13.0
# Where PyTorch comes from. Empty (the default): pip's configured index — on this project's machines a CPU
# build. Elsewhere on Linux the default PyPI wheel is the CUDA build (gigabytes); a CPU-only machine can ask
# for the CPU build:  make test TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# and a GPU machine for a given CUDA:  make test TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
TORCH_INDEX_URL ?=

.PHONY: run test bench lint reproduce clean fuzz

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(TORCH) $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(BIN)/pip install -q -e '.[dev,flower]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/foglearn run --out runs/default

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

# make fuzz -> the property tests explored widely: hypothesis profile `fuzz` (random seeds, the
#   example database .hypothesis/ on, each test's max_examples times FUZZ_FACTOR); `make test` and
#   CI use the deterministic `ci` profile (tests/conftest.py). To keep what fuzz finds: copy the
#   arguments of the "Falsifying example: test_x(a=..., b=...)" it prints into
#   `@example(a=..., b=...)` (from hypothesis import example) above the test's @given, and commit.
FUZZ_FACTOR ?= 10
fuzz: $(STAMP)
	FOGLEARN_FUZZ_FACTOR=$(FUZZ_FACTOR) $(BIN)/python -m pytest -q -n 2 -m hypothesis --hypothesis-profile=fuzz

lint: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m mypy

bench: $(STAMP)
	$(BIN)/python bench/planner.py
	$(BIN)/python bench/trainer.py

reproduce: $(STAMP)
	$(BIN)/foglearn reproduce all --out runs/reproduce

clean:
	rm -rf $(VENV) runs .pytest_cache
