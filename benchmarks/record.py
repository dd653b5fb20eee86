"""What recording costs: steps/s of a recorded rollout vs the same rollout unrecorded; bytes per step; replay fps.

    python benchmarks/record.py [--configs tiny:1 tiny:8 2x:1] [--steps 128] [--repeats 5] [--device cpu|cuda]
        [--replay] [--out benchmarks/results/record.json]

Each config (policy size : envs) runs bare and recorded rollouts in turn, `--repeats` times; the cost
is 1 - recorded/bare per pair, reported per pair and as the median, with the process's CPU time per
env-step (every thread: the writer's work shows up here even when it hides from the wall clock), and where the stepping
thread's wall time went: env steps, policy forward passes and the rest (preparing frames, sampling, the recorder's
bookkeeping, creating the episodes and waiting for the writer), in ms per env-step.

The unrecorded rollout runs the same envs, policy steps and env steps and samples the whole
batch at once on the policy's device; the recorded one also caches activations, samples each
episode from its own seeded stream on the CPU (so actions do not depend on the device or the
batch-mates) and writes. Both timings include making and resetting the envs, and the
recorded one waits for the background writer to finish. Recording stores attention, `img.hook_out` and every
`blocks.*.hook_resid_post`. BlockWorld renders 128x128 here (what the agent sees), so the
policy and the recording dominate. Replay renders a 640x360 episode with full frames.
"""

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vptlens.agents import PolicyConfig, load_policy, make_random_policy, preprocess_frames, sample_actions
from vptlens.agents.actions import factored_to_minerl
from vptlens.agents.policy import VPTPolicy
from vptlens.envs.blockworld import BlockWorldConfig, BlockWorldEnv
from vptlens.recordings import recorder, replay
from vptlens.recordings.allocator import keep_freed_memory
from vptlens.recordings.store import Episode

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "vpt_tiny"


def unrecorded(policy, n_envs: int, n_steps: int, seed: int) -> float:
    start = time.perf_counter()  # like the recorded run's time, this includes making and resetting the envs
    envs = [BlockWorldEnv(height=128, width=128) for _ in range(n_envs)]
    obs = [env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]
    state = policy.initial_state(n_envs)
    first = torch.ones(n_envs, dtype=torch.bool)
    gen = torch.Generator(device=policy.device).manual_seed(seed)
    for _ in range(n_steps):
        frames = torch.from_numpy(np.stack([preprocess_frames(o["pov"]) for o in obs]))
        out, state = policy.step(frames, first, state)
        first[:] = False
        actions = factored_to_minerl(*(x.cpu().numpy() for x in sample_actions(out, generator=gen)))
        obs = [env.step(a)[0] for env, a in zip(envs, actions)]
    return n_envs * n_steps / (time.perf_counter() - start)


def recorded(policy, n_envs: int, n_steps: int, seed: int, out: Path) -> tuple[float, float]:
    cfg = recorder.RecordConfig(
        model=FIXTURE / "agent.model",
        weights=FIXTURE / "agent.weights",
        out=out,
        n_episodes=n_envs,
        n_envs=n_envs,
        n_steps=n_steps,
        env=BlockWorldConfig(height=128, width=128),
        seed=seed,
    )
    rec = recorder.Recorder(cfg, policy=policy)
    start = time.perf_counter()
    summary = rec.run()
    return summary["steps"] / (time.perf_counter() - start), summary["disk_bytes"] / summary["steps"]


def replay_fps(tmp: Path) -> float:
    out = tmp / "replay_run"
    recorder.Recorder(
        recorder.RecordConfig(
            model=FIXTURE / "agent.model",
            weights=FIXTURE / "agent.weights",
            out=out,
            n_episodes=1,
            n_envs=1,
            n_steps=200,
            full_frames=True,
        )
    ).run()
    episode = Episode(out / "episode_000000.zarr")
    composer = replay.FrameComposer(episode, -1, "mean")
    writer = replay.VideoWriter(tmp / "replay.mp4", 20)
    start = time.perf_counter()
    for t in range(len(episode)):
        writer.write(composer.compose(t))
    writer.close()
    return len(episode) / (time.perf_counter() - start)


def _parse_config(text: str) -> tuple[str, int]:
    size, _, envs = text.partition(":")
    if size not in ("2x", "tiny") or not envs.isdigit() or int(envs) < 1:
        raise SystemExit(f"--configs: {text!r} is not SIZE:ENVS with SIZE 2x or tiny (e.g. tiny:8)")
    return size, int(envs)


@contextlib.contextmanager
def phase_timer():
    """Seconds spent inside `BlockWorldEnv.step` and `VPTPolicy.forward` while the block runs (both rollouts call
    them from the stepping thread; env workers are not used here), in a dict filled as it goes."""
    spent = {"env": 0.0, "policy": 0.0}
    originals = {"env": (BlockWorldEnv, BlockWorldEnv.step), "policy": (VPTPolicy, VPTPolicy.forward)}

    def timed(key, fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - start

        return wrapper

    BlockWorldEnv.step = timed("env", BlockWorldEnv.step)
    VPTPolicy.forward = timed("policy", VPTPolicy.forward)
    try:
        yield spent
    finally:
        for cls, fn in originals.values():
            setattr(cls, fn.__name__, fn)


def _phases(spent: dict, seconds: float, n: int) -> dict:
    """ms per env-step of the stepping thread's wall time: env steps, policy forwards, the rest."""
    return {k: v / n * 1e3 for k, v in spent.items()} | {"rest": (seconds - sum(spent.values())) / n * 1e3}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(policy, size: str, n_envs: int, steps: int, repeats: int, tmp: Path) -> dict:
    """Bare and recorded rollouts of the same envs, interleaved `repeats` times (this VM's speed drifts by 10-15%
    from minute to minute, so the two are compared run by run, not in two blocks)."""
    unrecorded(policy, n_envs, 4, 0)  # warm-up: numba, torch
    recorded(policy, n_envs, 4, 0, tmp / "warm-up")  # and the hooked policy step, zarr
    bare, rec, bare_cpu, rec_cpu, costs, bytes_per_step = [], [], [], [], [], 0.0
    phases = {"unrecorded": [], "recorded": []}
    n = n_envs * steps
    for r in range(repeats):
        c = _cpu_seconds()
        with phase_timer() as spent:
            bare.append(unrecorded(policy, n_envs, steps, 0))
        bare_cpu.append(_cpu_seconds() - c)
        phases["unrecorded"].append(_phases(spent, n / bare[-1], n))
        c = _cpu_seconds()
        with phase_timer() as spent:
            rate, bytes_per_step = recorded(policy, n_envs, steps, 0, tmp / f"run{r}")
        rec_cpu.append(_cpu_seconds() - c)
        rec.append(rate)
        phases["recorded"].append(_phases(spent, n / rate, n))
        costs.append(1 - rec[-1] / bare[-1])
        shutil.rmtree(tmp / f"run{r}", ignore_errors=True)
    return {
        "size": size,
        "device": str(policy.device),
        "envs": n_envs,
        "steps": steps,
        "repeats": repeats,
        "steps_per_s_unrecorded": bare,
        "steps_per_s_recorded": rec,
        "recording_cost_per_repeat": costs,
        "recording_cost_median": float(np.median(costs)),
        "cpu_ms_per_env_step_unrecorded": float(np.median(bare_cpu) / n * 1e3),
        "cpu_ms_per_env_step_recorded": float(np.median(rec_cpu) / n * 1e3),
        "bytes_per_step": bytes_per_step,
        "ms_per_env_step_median": {  # the stepping thread's wall time by phase, median over the repeats
            run: {k: float(np.median([p[k] for p in per_repeat])) for k in per_repeat[0]}
            for run, per_repeat in phases.items()
        },
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--configs", nargs="+", default=["tiny:1", "tiny:8", "2x:1"], help="policy size and envs, e.g. tiny:8"
    )
    parser.add_argument("--steps", type=int, default=128, help="steps per env per rollout")
    parser.add_argument("--repeats", type=int, default=5, help="bare/recorded pairs per config (interleaved)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--replay", action="store_true", help="also time replay of a 640x360 episode (needs PyAV)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/record.json"))
    args = parser.parse_args()
    configs = [_parse_config(c) for c in args.configs]
    if args.steps < 1 or args.repeats < 1:
        raise SystemExit("--steps and --repeats must be at least 1")
    allocator = keep_freed_memory()  # as `vptlens record` does, for both rollouts: they compare like with like
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="vptlens-bench-"))
    try:
        for size, n_envs in configs:
            if size == "2x":
                policy = make_random_policy(PolicyConfig())
            else:
                policy = load_policy(FIXTURE / "agent.model", FIXTURE / "agent.weights")
            row = measure(policy.to(args.device), size, n_envs, args.steps, args.repeats, tmp / f"{size}-{n_envs}")
            print(
                f"{size} x{n_envs}: unrecorded {np.median(row['steps_per_s_unrecorded']):.1f} steps/s, "
                f"recorded {np.median(row['steps_per_s_recorded']):.1f}, cost {row['recording_cost_median']:.1%} "
                f"(per repeat {', '.join(f'{c:.0%}' for c in row['recording_cost_per_repeat'])}); ms per env-step "
                + "; ".join(
                    f"{run}: " + ", ".join(f"{k} {v:.2f}" for k, v in ms.items())
                    for run, ms in row["ms_per_env_step_median"].items()
                ),
                flush=True,
            )
            rows.append(row)
        fps = replay_fps(tmp) if args.replay else None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": torch.get_num_threads()}
    machine["keep_freed_memory"] = allocator
    if args.device.startswith("cuda"):
        machine["device"] = torch.cuda.get_device_name(args.device)
    result = {"machine": machine, "rows": rows, "replay_fps_640x360": fps}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
