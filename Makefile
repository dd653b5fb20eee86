# Two entry points that work on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first: the CPU build of 2.13.0 on this machine's disk, before anything can pull a CUDA build.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev,video]"
	$(BIN)/pip install -q --no-deps "open-clip-torch>=2.20"  # CLIP's BPE vocabulary, for STEVE-1 prompts
	touch $@

setup: $(VENV)/.installed

# The main job, on the model organism (a tree-chopper with VPT's architecture, trained in BlockWorld and shipped in
# the package): record it in front of a tree, replay it with its attention, then look inside (attention over time,
# linear probes, an SAE sweep with its evaluation and feature dashboards); then the villager study at a small size
# (six scenes x two seeds, its input-blind control, statistics against the villager in the open).
ORGANISM := agents/organism/blockworld-chopper-64
AT_128 := env:blockworld --env.height 128 --env.width 128
SAE := runs/demo/sae/topk-k_8
demo: setup
	$(BIN)/vptlens info $(ORGANISM).model $(ORGANISM).weights --no-hooks
	rm -rf runs/demo
	$(BIN)/vptlens record --zoo $(notdir $(ORGANISM)) --out runs/demo --scene tree_at_spot --n-episodes 6 --n-envs 3 \
		--n-steps 300 $(AT_128)
	$(BIN)/vptlens replay runs/demo/episode_000000.zarr --out runs/demo/replay.mp4
	$(BIN)/vptlens summary runs/demo/episode_000000.zarr --out runs/demo/summary.png
	$(BIN)/vptlens attention runs/demo --out runs/demo/attention
	$(BIN)/vptlens probe runs/demo --out runs/demo/probe --hooks 'blocks.*.hook_resid_post' \
		--labels crosshair_on_log attacking nearest_tree_distance --l2 1
	$(BIN)/vptlens sae train runs/demo --hook blocks.2.hook_resid_post --out runs/demo/sae \
		--architectures topk:k=8 relu:l1=0.5 --expansion-factor 4 --batch-size 256 \
		--buffer-rows 4096 --total-activations 60000 --warmup-steps 50 --val-fraction 0.25 --dead-window 20000
	$(BIN)/vptlens sae eval $(SAE)
	$(BIN)/vptlens sae dashboard $(SAE) runs/demo --out runs/demo/dashboard --n-latents 16
	$(BIN)/vptlens experiment run organism_villager_study --agent organism=$(notdir $(ORGANISM)) --n-seeds 2 \
		--n-steps 100 --workers 2 --out runs/demo/villager_study
	@echo "demo done: open runs/demo/replay.mp4, runs/demo/attention/index.html, runs/demo/dashboard/index.html, runs/demo/villager_study/report.html; or browse it all: $(BIN)/vptlens serve runs/demo"

lint: setup
	$(BIN)/ruff check --no-cache .
	$(BIN)/ruff format --no-cache --check .
	$(BIN)/lint-imports

test: setup lint
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/policy_step.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
