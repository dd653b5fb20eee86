"""BlockWorld env steps per second (physics, mobs, rendering, HUD and ground truth all included).

    python benchmarks/blockworld_step.py [--steps 600] [--out benchmarks/results/blockworld_step.json]

The agent walks, turns, jumps and attacks at random in the seeded hills world, so frames
show terrain, trees, water, sky and mobs. The first reset's time includes numba's
compilation (or loading it from the on-disk cache: run once with NUMBA_CACHE_DIR empty to
see the cold cost).
"""

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from vptlens.envs.blockworld import BlockWorldEnv


def run(height: int, width: int, n_steps: int, seed: int = 0) -> dict:
    env = BlockWorldEnv(height=height, width=width)
    start = time.perf_counter()
    env.reset(seed=seed)
    first_reset = time.perf_counter() - start
    rng = np.random.default_rng(seed)
    actions = []
    for _ in range(n_steps):
        action = {
            k: int(rng.random() < p) for k, p in (("forward", 0.7), ("jump", 0.1), ("attack", 0.3), ("left", 0.1))
        }
        action["camera"] = np.array([rng.normal(0, 2), rng.normal(0, 5)], np.float32)
        actions.append(action)
    for action in actions[:10]:  # warm-up
        env.step(action)
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset(seed=seed)
    elapsed = time.perf_counter() - start
    return {"height": height, "width": width, "steps": n_steps, "steps_per_s": n_steps / elapsed,
            "first_reset_s": first_reset}  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/blockworld_step.json"))
    args = parser.parse_args()
    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine()}
    rows = [run(128, 128, args.steps), run(360, 640, args.steps // 3)]
    for row in rows:
        print(
            f"{row['height']}x{row['width']}: {row['steps_per_s']:.1f} steps/s "
            f"(first reset {row['first_reset_s']:.2f} s)"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
