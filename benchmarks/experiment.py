"""What the experiment runner costs: episodes per minute with 1 and 2 workers, against bare recordings.

    python benchmarks/experiment.py [--seeds 4] [--steps 100] [--size 128] [--out benchmarks/results/experiment.json]

The experiment is the built-in villager study (six scenes, no activation edit) with the tiny fixture
policy at --size x --size pixels. The baseline records the same cells with `vptlens record`'s
Recorder one after another in this process (same seeds, same envs, same policy); the runner
with 1 worker does the same work plus its checks (spec, every edit against the agent), the scene
files and the manifest; with 2 workers cells run in two spawned processes. The analysis (metrics,
statistics, report) is timed apart.
"""

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

from vptlens.agents import load_policy
from vptlens.envs.blockworld import BlockWorldConfig
from vptlens.interventions import analyse, load_spec, run_experiment, spec_from_dict
from vptlens.recordings.recorder import RecordConfig, Recorder

ROOT = Path(__file__).resolve().parents[1]
MODEL, WEIGHTS = (ROOT / "tests" / "fixtures" / "vpt_tiny" / f"agent.{ext}" for ext in ("model", "weights"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "experiment.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    raw = dict(load_spec("villager_study").raw)
    raw.update(
        agents=[{"name": "tiny", "model": str(MODEL), "weights": str(WEIGHTS)}],
        env={"kind": "blockworld", "height": args.size, "width": args.size},
        seeds={"start": 0, "count": args.seeds},
        n_steps=args.steps,
    )
    spec = spec_from_dict(raw, ROOT)
    n_episodes = len(spec.cells()) * args.seeds
    results = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
               "cells": len(spec.cells()), "episodes": n_episodes, "steps": args.steps, "size": args.size}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        policy = load_policy(MODEL, WEIGHTS)
        for cell in spec.cells():
            cfg = RecordConfig(model=MODEL, weights=WEIGHTS, out=tmp / "bare" / cell.dir_name, scene=cell.scene.scene,
                               env=BlockWorldConfig(height=args.size, width=args.size), n_episodes=args.seeds,
                               n_steps=args.steps, n_envs=spec.n_envs, hooks=())  # fmt: skip
            Recorder(cfg, policy).run()
        results["bare_record_s"] = time.perf_counter() - start
        for workers in (1, 2):
            start = time.perf_counter()
            run_experiment(spec, tmp / f"runner{workers}", workers=workers)
            results[f"runner_{workers}_workers_s"] = time.perf_counter() - start
        start = time.perf_counter()
        analyse(tmp / "runner1")
        results["analysis_s"] = time.perf_counter() - start
        shutil.rmtree(tmp / "bare")
    for key in ("bare_record_s", "runner_1_workers_s", "runner_2_workers_s"):
        results[key.replace("_s", "_episodes_per_min")] = 60 * n_episodes / results[key]
    results["runner_overhead_1_worker"] = results["runner_1_workers_s"] / results["bare_record_s"] - 1
    results["speedup_2_workers"] = results["runner_1_workers_s"] / results["runner_2_workers_s"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
