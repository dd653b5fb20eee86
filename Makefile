# Two entry points that work on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FIXTURE := tests/fixtures/vpt_tiny

.PHONY: setup demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first: the CPU build of 2.13.0 on this machine's disk, before anything can pull a CUDA build.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev,video]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/vptlens info $(FIXTURE)/agent.model $(FIXTURE)/agent.weights

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

test: setup lint
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/policy_step.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
