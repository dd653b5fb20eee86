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
	$(BIN)/pip install -q --no-deps "open-clip-torch>=2.20"  # CLIP's BPE vocabulary, for STEVE-1 prompts
	touch $@

setup: $(VENV)/.installed

# The main job: record BlockWorld episodes of the misgeneralization scene, replay one with attention,
# then look inside: attention over time, linear probes, an SAE with its evaluation and feature dashboards;
# then the villager study at a small size (six scenes x three seeds, statistics against the villager in the open).
SAE := runs/demo/sae/topk-k_8
demo: setup
	$(BIN)/vptlens info $(FIXTURE)/agent.model $(FIXTURE)/agent.weights --no-hooks
	rm -rf runs/demo
	$(BIN)/vptlens record --model $(FIXTURE)/agent.model --weights $(FIXTURE)/agent.weights --out runs/demo \
		--scene villager_under_leaves --n-episodes 4 --n-envs 2 --n-steps 200 --full-frames
	$(BIN)/vptlens replay runs/demo/episode_000000.zarr --out runs/demo/replay.mp4
	$(BIN)/vptlens summary runs/demo/episode_000000.zarr --out runs/demo/summary.png
	$(BIN)/vptlens attention runs/demo --out runs/demo/attention
	$(BIN)/vptlens probe runs/demo --out runs/demo/probe --hooks 'blocks.*.hook_resid_post'
	$(BIN)/vptlens sae train runs/demo --hook blocks.1.hook_resid_post --out runs/demo/sae \
		--architectures topk:k=8 batchtopk:k=8 relu:l1=0.5 jumprelu:l0=2 --expansion-factor 4 --batch-size 256 \
		--buffer-rows 4096 --total-activations 200000 --warmup-steps 50 --val-fraction 0.25 --dead-window 20000
	$(BIN)/vptlens sae eval $(SAE)
	$(BIN)/vptlens sae dashboard $(SAE) runs/demo --out runs/demo/dashboard --n-latents 16
	$(BIN)/vptlens experiment run villager_study --model $(FIXTURE)/agent.model --weights $(FIXTURE)/agent.weights \
		--n-seeds 3 --n-steps 80 --workers 2 --out runs/demo/villager_study
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
