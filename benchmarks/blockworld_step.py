"""BlockWorld env steps per second (physics, mobs, rendering, HUD and ground truth all included).

    python benchmarks/blockworld_step.py [--steps 600] [--skip-cold] [--out benchmarks/results/blockworld_step.json]

The agent walks, turns, jumps and attacks at random in the seeded hills world, so frames
show terrain, trees, water, sky and mobs. Also measured, in a fresh process with an empty
numba cache: the first reset and step, which compile every kernel (later processes load
them from `__pycache__` in a fraction of a second).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np

from vptlens.envs.blockworld import BlockWorldEnv

_COLD = """
import time
t0 = time.perf_counter()
from vptlens.envs.blockworld import BlockWorldEnv
env = BlockWorldEnv(height=64, width=64)
t1 = time.perf_counter()
env.reset(seed=0)
env.step({"forward": 1, "attack": 1})
print(time.perf_counter() - t1)
"""


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


def cold_compile_s() -> float:
    """Seconds for a fresh process's first reset and step with an empty numba cache."""
    with tempfile.TemporaryDirectory() as cache:
        done = subprocess.run(
            [sys.executable, "-c", _COLD], env={**os.environ, "NUMBA_CACHE_DIR": cache},
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    return float(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--skip-cold", action="store_true", help="skip the cold-cache compile measurement")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/blockworld_step.json"))
    args = parser.parse_args()
    machine = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "numba_threads": numba.get_num_threads(),
    }
    rows = [run(128, 128, args.steps), run(360, 640, args.steps // 3)]
    for row in rows:
        print(
            f"{row['height']}x{row['width']}: {row['steps_per_s']:.1f} steps/s "
            f"(first reset {row['first_reset_s']:.2f} s)"
        )
    result = {"machine": machine, "rows": rows}
    if not args.skip_cold:
        result["cold_compile_s"] = cold_compile_s()
        print(
            f"first reset and step with an empty numba cache (compiling every kernel): {result['cold_compile_s']:.1f} s"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
