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

# The main job: record two BlockWorld episodes of the misgeneralization scene, replay one with attention.
demo: setup
	$(BIN)/vptlens info $(FIXTURE)/agent.model $(FIXTURE)/agent.weights --no-hooks
	rm -rf runs/demo
	$(BIN)/vptlens record --model $(FIXTURE)/agent.model --weights $(FIXTURE)/agent.weights --out runs/demo \
		--scene villager_under_leaves --n-episodes 2 --n-envs 2 --n-steps 200 --full-frames
	$(BIN)/vptlens replay runs/demo/episode_000000.zarr --out runs/demo/replay.mp4
	$(BIN)/vptlens summary runs/demo/episode_000000.zarr --out runs/demo/summary.png

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
