"""What recording costs: steps/s of a recorded rollout vs the same rollout unrecorded; bytes per step; replay fps.

    python benchmarks/record.py [--size 2x|tiny] [--steps 64] [--envs 1] [--device cpu|cuda] [--skip-replay]
        [--out benchmarks/results/record.json]

The unrecorded rollout runs the same envs, policy steps and env steps and samples the whole
batch at once on the policy's device; the recorded one also caches activations, samples each
episode from its own seeded stream on the CPU (so actions do not depend on the device or the
batch-mates) and writes. Both timings include making and resetting the envs, and the
recorded one waits for the background writer to finish. Recording stores attention, `img.hook_out` and every
`blocks.*.hook_resid_post`. BlockWorld renders 128x128 here (what the agent sees), so the
policy and the recording dominate. Replay renders a 640x360 episode with full frames.
"""

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vptlens.agents import PolicyConfig, load_policy, make_random_policy, preprocess_frames, sample_actions
from vptlens.agents.actions import factored_to_minerl
from vptlens.envs.blockworld import BlockWorldConfig, BlockWorldEnv
from vptlens.recordings import recorder, replay
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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="2x", choices=["2x", "tiny"])
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--envs", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-replay", action="store_true", help="skip the replay measurement (needs PyAV)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/record.json"))
    args = parser.parse_args()
    if args.size == "2x":
        policy = make_random_policy(PolicyConfig())
    else:
        policy = load_policy(FIXTURE / "agent.model", FIXTURE / "agent.weights")
    policy = policy.to(args.device)
    tmp = Path(tempfile.mkdtemp(prefix="vptlens-bench-"))
    try:
        unrecorded(policy, args.envs, 4, 0)  # warm-up: numba, torch
        recorded(policy, args.envs, 4, 0, tmp / "warm-up")  # and the hooked policy step, zarr
        bare = unrecorded(policy, args.envs, args.steps, 0)
        rec, bytes_per_step = recorded(policy, args.envs, args.steps, 0, tmp / "run")
        fps = None if args.skip_replay else replay_fps(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    row = {
        "size": args.size,
        "device": str(policy.device),
        "envs": args.envs,
        "steps": args.steps,
        "steps_per_s_unrecorded": bare,
        "steps_per_s_recorded": rec,
        "recording_cost": 1 - rec / bare,
        "bytes_per_step": bytes_per_step,
        "replay_fps_640x360": fps,
    }
    print(json.dumps(row, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"platform": platform.platform(), "threads": torch.get_num_threads()}
    if policy.device.type == "cuda":
        machine["device"] = torch.cuda.get_device_name(policy.device)
    args.out.write_text(json.dumps({"machine": machine, "rows": [row]}, indent=2))


if __name__ == "__main__":
    main()
