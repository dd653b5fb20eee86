"""The scripted tree-chopper (`vptlens.training.expert.ChopperExpert`): how well it chops, and what it costs.

    python benchmarks/expert.py [--steps 3000] [--seeds 1000-1007] [--out benchmarks/results/expert.json]

Measured, at 128x128 (what the agent sees):

- hills: logs broken per 1,000 steps on held-out world seeds, one episode of `--steps` each;
- tree_at_spot: success (a log broken within 600 steps), steps to the first log, steps to the
  whole four-log trunk;
- the villager scenes: `entity_attacked` events (there must be none, here and in the runs above);
- the fraction of steps whose action is "attack only" (attack, no movement, no camera), and the
  expert's own steps per second (time inside `act`, the env's step excluded).
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from vptlens.envs.blockworld import BlockWorldEnv
from vptlens.training.expert import ChopperExpert

MOVES = ("forward", "back", "left", "right", "jump", "sneak", "sprint", "use")
VILLAGER_SCENES = ("villager_under_leaves", "villager_in_open", "villager_other_clothes_under_leaves",
                   "villager_walking_under_leaves")  # fmt: skip


def rollout(seed: int, n_steps: int, scene: str | None = None, stop_after_logs: int | None = None) -> dict:
    """One episode of the expert; counts of what happened and when."""
    env = BlockWorldEnv(height=128, width=128)
    _, info = env.reset(seed=seed, options={"scene": scene} if scene else None)
    expert = ChopperExpert(seed)
    log_steps, n_attacked, n_attack_only, act_s = [], 0, 0, 0.0
    for step in range(1, n_steps + 1):
        start = time.perf_counter()
        action = expert.act(env, info)
        act_s += time.perf_counter() - start
        n_attack_only += bool(action["attack"] and not any(action[k] for k in MOVES) and not action["camera"].any())
        _, _, terminated, truncated, info = env.step(action)
        for event in info["events"]:
            if event["type"] == "block_broken" and event["block"].endswith("_log"):
                log_steps.append(step)
            n_attacked += event["type"] == "entity_attacked"
        if terminated or truncated or (stop_after_logs is not None and len(log_steps) >= stop_after_logs):
            break
    return {"seed": seed, "scene": scene, "steps": step, "log_steps": log_steps, "entity_attacked": n_attacked,
            "attack_only": n_attack_only, "act_s": act_s}  # fmt: skip


def hills(seeds: list[int], n_steps: int) -> dict:
    """One episode per world seed, `n_steps` long: the rate that demonstrations will have."""
    runs = [rollout(seed, n_steps) for seed in seeds]
    per_1000 = [1000 * len(run["log_steps"]) / run["steps"] for run in runs]
    for run, rate in zip(runs, per_1000):
        print(f"hills seed {run['seed']}: {len(run['log_steps'])} logs in {run['steps']} steps ({rate:.1f} per 1000)")
    return {"runs": runs, "logs_per_1000": per_1000, "mean_logs_per_1000": float(np.mean(per_1000))}


def tree_at_spot(seeds: list[int]) -> dict:
    """The probe scenes' positive control: the trunk 4 blocks ahead, two of its logs inside a canopy."""
    runs = [rollout(seed, 600, scene="tree_at_spot", stop_after_logs=4) for seed in seeds]
    first = [run["log_steps"][0] for run in runs if run["log_steps"]]
    trunk = [run["log_steps"][3] for run in runs if len(run["log_steps"]) >= 4]
    print(f"tree_at_spot: {len(first)}/{len(runs)} broke a log within 600 steps, after {first} steps; "
          f"{len(trunk)} felled the whole trunk, after {trunk}")  # fmt: skip
    return {"runs": runs, "success": len(first) / len(runs), "first_log_steps": first, "trunk_steps": trunk}


def villagers(seeds: list[int], n_steps: int) -> dict:
    """The probe scenes with a villager ahead (the expert chops the world's trees around it)."""
    runs = [rollout(seed, n_steps, scene=scene) for scene in VILLAGER_SCENES for seed in seeds]
    print(f"villager scenes: {sum(run['entity_attacked'] for run in runs)} entity_attacked in {len(runs)} episodes")
    return {"runs": runs}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000, help="steps per hills episode")
    parser.add_argument("--seeds", default="1000-1007", help="hills world seeds, FIRST-LAST")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/expert.json"))
    args = parser.parse_args()
    first, last = (int(v) for v in args.seeds.split("-"))
    result = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
        },  # fmt: skip
        "hills": hills(list(range(first, last + 1)), args.steps),
        "tree_at_spot": tree_at_spot(list(range(8))),
        "villagers": villagers(list(range(4)), 1000),
    }
    runs = [run for part in ("hills", "tree_at_spot", "villagers") for run in result[part]["runs"]]
    n_steps = sum(run["steps"] for run in runs)
    result["entity_attacked"] = sum(run["entity_attacked"] for run in runs)
    result["attack_only_fraction"] = sum(run["attack_only"] for run in result["hills"]["runs"]) / sum(
        run["steps"] for run in result["hills"]["runs"]
    )
    result["expert_steps_per_s"] = n_steps / sum(run["act_s"] for run in runs)
    print(f"hills: {result['hills']['mean_logs_per_1000']:.1f} logs per 1000 steps (mean over seeds); "
          f"attack-only steps {100 * result['attack_only_fraction']:.0f}%")  # fmt: skip
    print(f"entity_attacked over all {len(runs)} episodes: {result['entity_attacked']}")
    print(f"expert: {result['expert_steps_per_s']:.0f} steps/s (its own time, env excluded)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
