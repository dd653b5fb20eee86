"""What env worker processes buy at VPT's 640x360: env steps/s and recording steps/s, in process vs in workers.

    NUMBA_NUM_THREADS=2 python benchmarks/env_workers.py [--part env|record|all] [--env-steps 200]
        [--record-steps 128] [--repeats 3] [--out benchmarks/results/env_workers.json]

`env`: `EnvPool.step` of BlockWorld at 640x360 with a fixed, seeded action sequence (walk, turn,
jump, attack): one env in process, with 1 numba thread and with all the threads this process
was started with (NUMBA_NUM_THREADS; BlockWorld's renderer splits a frame's rows over them),
then 8 envs over 1 and 2 worker processes (one numba thread each). Timed after the reset and
a few warm-up steps, so worker start-up is not counted. `record`: `vptlens record` with the
tiny fixture policy at 640x360 (`RECORD_CONFIGS`: 1 env in process; 8 envs in process, in 2 workers, and in
2 and 4 workers with `--pipeline`), `--repeats` interleaved runs each, timed as a user sees it (start-up of the
workers, the writer and all included). `--part` lets each part run on its
own, e.g. while other jobs on the machine are paused for a short while.
"""

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numba
import numpy as np

from vptlens.envs.blockworld import BlockWorldConfig
from vptlens.envs.vector import EnvPool
from vptlens.recordings import recorder

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "vpt_tiny"
VPT = BlockWorldConfig(height=360, width=640)
WARM_UP = 5


def fixed_actions(n_steps: int, seed: int = 0) -> list[dict]:
    """The same walk / turn / jump / attack sequence for every env and every run."""
    rng = np.random.default_rng(seed)
    actions = []
    for _ in range(n_steps):
        action = {
            k: int(rng.random() < p) for k, p in (("forward", 0.7), ("jump", 0.1), ("attack", 0.3), ("left", 0.1))
        }
        action["camera"] = np.array([rng.normal(0, 2), rng.normal(0, 5)], np.float32)
        actions.append(action)
    return actions


def env_rate(n_envs: int, n_workers: int, n_steps: int, numba_threads: int) -> dict:
    """Env steps per second (all envs together) of `EnvPool.step` after reset and warm-up."""
    numba.set_num_threads(numba_threads)  # the in-process renderer's threads; workers always have one
    actions = fixed_actions(WARM_UP + n_steps)
    with EnvPool(VPT, n_envs, n_workers) as pool:
        pool.reset(list(range(n_envs)))
        for action in actions[:WARM_UP]:
            pool.step([action] * n_envs)
        start = time.perf_counter()
        for action in actions[WARM_UP:]:
            pool.step([action] * n_envs)
        seconds = time.perf_counter() - start
    return {
        "kind": "env.step",
        "envs": n_envs,
        "workers": n_workers,
        "numba_threads_in_process": numba_threads,
        "steps_per_env": n_steps,
        "steps_per_s": n_envs * n_steps / seconds,
    }


def record_rate(n_envs: int, env_workers: int, pipeline: bool, n_steps: int, numba_threads: int, out: Path) -> float:
    """Recorded env steps per second of one wave of `n_envs` episodes, everything included."""
    numba.set_num_threads(numba_threads)
    cfg = recorder.RecordConfig(
        model=FIXTURE / "agent.model",
        weights=FIXTURE / "agent.weights",
        out=out,
        env=VPT,
        n_episodes=n_envs,
        n_envs=n_envs,
        n_steps=n_steps,
        env_workers=env_workers,
        pipeline=pipeline,
    )
    summary = recorder.Recorder(cfg).run()
    return summary["steps"] / summary["seconds"]


RECORD_CONFIGS = [(1, 0, False), (8, 0, False), (8, 2, False), (8, 2, True), (8, 4, True)]
"""(envs, workers, pipeline): one env in process (the baseline of the issue's 1.7x), then 8 envs in process, in 2
workers taking turns with the policy, and in 2 and 4 workers pipelined (`--pipeline`)."""


def env_rows(n_steps: int, threads: int) -> list[dict]:
    single = [env_rate(1, 0, n_steps, t) for t in sorted({1, threads})]
    per_env = max(n_steps // 4, 10)  # twice the single env's env steps
    rows = single + [env_rate(8, 1, per_env, 1), env_rate(8, 2, per_env, 1)]
    for row in rows:
        row["speedup_vs_1env_1thread"] = row["steps_per_s"] / single[0]["steps_per_s"]
        row["speedup_vs_1env_all_threads"] = row["steps_per_s"] / single[-1]["steps_per_s"]
    return rows


def record_rows(n_steps: int, threads: int, repeats: int) -> list[dict]:
    """`RECORD_CONFIGS` run `repeats` times, interleaved (this VM's speed drifts from minute to minute: two blocks of
    runs would compare two machines); the median and every run per config."""
    tmp = Path(tempfile.mkdtemp(prefix="vptlens-bench-"))
    runs: dict[tuple, list[float]] = {config: [] for config in RECORD_CONFIGS}
    try:
        record_rate(1, 0, False, 4, threads, tmp / "warm-up")  # numba's cache, torch, zarr
        for r in range(repeats):
            for config in RECORD_CONFIGS:
                runs[config].append(
                    record_rate(*config, n_steps, threads, tmp / f"run_{r}_{'_'.join(map(str, config))}")
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    single = float(np.median(runs[RECORD_CONFIGS[0]]))
    rows = []
    for (n_envs, workers, pipeline), rates in runs.items():
        rows.append({
            "kind": "record",
            "envs": n_envs,
            "workers": workers,
            "pipeline": pipeline,
            "numba_threads_in_process": threads,
            "steps_per_env": n_steps,
            "steps_per_s": float(np.median(rates)),
            "runs_steps_per_s": rates,
            "vs_1env_in_process": float(np.median(rates)) / single,
        })  # fmt: skip
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", default="all", choices=["env", "record", "all"])
    parser.add_argument("--env-steps", type=int, default=200, help="steps of the single env (8 envs: a quarter each)")
    parser.add_argument("--record-steps", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of each recording config")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/env_workers.json"))
    args = parser.parse_args()
    threads = numba.config.NUMBA_NUM_THREADS
    rows = []
    if args.part in ("env", "all"):
        rows += env_rows(args.env_steps, threads)
    if args.part in ("record", "all"):
        rows += record_rows(args.record_steps, threads, args.repeats)
    for row in rows:
        print(json.dumps(row))
    machine = {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "numba_threads": threads,
        "load_average_at_end": os.getloadavg(),
    }
    previous = json.loads(args.out.read_text()) if args.out.exists() else {"parts": {}}
    previous["parts"][args.part] = {"machine": machine, "rows": rows, "measured": time.strftime("%Y-%m-%d %H:%M")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(previous, indent=2))


if __name__ == "__main__":
    main()
