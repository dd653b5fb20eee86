"""Frames per second of `VPTPolicy.step`, hooks off vs caching every attention pattern and residual stream.

    python benchmarks/policy_step.py                       # CPU: tiny fixture and random 2x, batch 1 and 8
    python benchmarks/policy_step.py --device cuda --dtypes float32 bfloat16 --batches 1 16 64 --sizes 2x

Prints a table and writes it as JSON (with the machine's description) to --out.
"""

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from vptlens.agents import PolicyConfig, load_policy, make_random_policy

FIXTURE_DIR = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "vpt_tiny"
CACHED = [
    "blocks.*.attn.hook_pattern",
    "blocks.*.hook_resid_pre",
    "blocks.*.hook_resid_mid",
    "blocks.*.hook_resid_post",
]


def make_policy(size: str, device: str, dtype: torch.dtype):
    if size == "tiny":
        return load_policy(FIXTURE_DIR / "agent.model", FIXTURE_DIR / "agent.weights", device=device, dtype=dtype)
    if size == "2x":  # the released 2x hyperparameters are PolicyConfig's defaults
        return make_random_policy(PolicyConfig()).to(device=device, dtype=dtype)
    raise ValueError(f"unknown size {size!r}; use tiny or 2x")


def time_steps(policy, batch: int, n_steps: int, cache: bool, device: str) -> float:
    """Frames per second (batch * steps / seconds) after warm-up steps that fill the memory a little."""
    gen = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (n_steps + 3, batch, 128, 128, 3), dtype=torch.uint8, generator=gen).to(device)
    first = torch.zeros(batch, dtype=torch.bool, device=device)
    state = policy.initial_state(batch)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for i in range(3):
        _, state = policy.step(frames[i], first | (i == 0), state)
    sync()
    start = time.perf_counter()
    for i in range(3, n_steps + 3):
        if cache:
            _, state, _ = policy.run_with_cache(frames[i], first, state, names=CACHED)
        else:
            _, state = policy.step(frames[i], first, state)
    sync()
    return batch * n_steps / (time.perf_counter() - start)


def idle_hook_overhead(policy, batch: int, device: str) -> float:
    """Seconds per step spent in hook points with nothing attached (each is called once per step)."""
    x = torch.zeros(batch, 1, policy.cfg.hidsize, device=device)
    hook = policy._hook_points["hook_latent"]
    n_calls = 20000
    start = time.perf_counter()
    for _ in range(n_calls):
        hook(x)
    return (time.perf_counter() - start) / n_calls * len(policy.hook_names)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", nargs="+", default=["tiny", "2x"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--dtypes", nargs="+", default=["float32"])
    parser.add_argument("--steps", type=int, default=0, help="timed steps per row (default: by size)")
    parser.add_argument("--repeats", type=int, default=3, help="alternate off/cache runs; report the best of each")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/policy_step.json"))
    args = parser.parse_args()

    machine = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
    }
    rows = []
    print(f"machine: {machine}")
    header = ("size", "dtype", "batch", "fps hooks off", "fps caching", "cost", "idle hooks")
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, (5, 9, 5, 14, 12, 7, 11))))
    for size in args.sizes:
        for dtype_name in args.dtypes:
            policy = make_policy(size, args.device, getattr(torch, dtype_name))
            for batch in args.batches:
                n_steps = args.steps or (60 if size == "tiny" else max(4, 24 // batch))
                off, on = [], []
                for _ in range(args.repeats):  # interleave so drift hits both alike
                    off.append(time_steps(policy, batch, n_steps, cache=False, device=args.device))
                    on.append(time_steps(policy, batch, n_steps, cache=True, device=args.device))
                row = {
                    "size": size,
                    "dtype": dtype_name,
                    "batch": batch,
                    "params": policy.n_params(),
                    "fps_hooks_off": max(off),
                    "fps_caching": max(on),
                    "caching_cost": 1 - max(on) / max(off),
                    "idle_hooks_share_of_step": idle_hook_overhead(policy, batch, args.device) * max(off) / batch,
                }
                rows.append(row)
                print(
                    f"{size:>5} {dtype_name:>9} {batch:>5} {row['fps_hooks_off']:>14.1f} "
                    f"{row['fps_caching']:>12.1f} {row['caching_cost']:>7.1%} {row['idle_hooks_share_of_step']:>11.4%}",
                    flush=True,
                )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
