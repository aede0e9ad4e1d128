# Two commands do all the set-up on a fresh machine:
#   make run   -> the main job on the embedded default (creates/reuses .venv, installs what is missing)
#   make test  -> the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.foglearn-installed
TORCH := torch==2.13.0

.PHONY: run test bench lint reproduce clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev,flower]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/foglearn run --passes 40 --lr 0.05 --out runs/default

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

lint: $(STAMP)
	$(BIN)/python -m ruff check .

bench: $(STAMP)
	$(BIN)/python bench/planner.py
	$(BIN)/python bench/trainer.py

reproduce: $(STAMP)
	$(BIN)/foglearn reproduce all --out runs/reproduce

clean:
	rm -rf $(VENV) runs .pytest_cache
