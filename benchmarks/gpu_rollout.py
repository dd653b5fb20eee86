"""The batched rollout of the 2x VPT policy on a GPU (issue 16): frames/s, share of the GPU's peak, exactness.

    python benchmarks/gpu_rollout.py                                  # H100/H200/A100: every default variant
    python benchmarks/gpu_rollout.py --record                         # and recording vs the bare rollout
    python benchmarks/gpu_rollout.py --device cpu --size tiny --batches 1 2 --steps 3   # CPU smoke run

For each variant and batch size (random 2x weights, `make_random_policy(PolicyConfig())`):
- `cnn`: the ImpalaCNN forward on a batch of frames (`policy.net.img_process.cnn`), alone;
- `step`: the whole `policy.step` (CNN, 4 transformer blocks over the memory, heads), hooks off;
both as frames/s (best of --repeats), and as TFLOP/s and a share of the peak: FLOPs per frame are
measured once with `torch.utils.flop_counter.FlopCounterMode` (convolutions and matmuls; norms and
pointwise ops are not counted) on one frame of the fp32 model. The issue's goal: the CNN at 30% of
the bf16 peak at batch 64. fp32 variants are compared with the fp32 peak without TF32 (TF32 is off
here, so they meet the 1e-4 tolerance); bf16 variants with the dense bf16 peak.

Variants: `fp32` (eager, the baseline); `bf16` (the whole model `.to(torch.bfloat16)`, as
`load_policy(..., dtype=)` and policy_step.py do; attention softmax and heads stay float32);
`channels_last` (every conv weight converted with `memory_format=torch.channels_last`; the frames
need no conversion: `ImgProcess` permutes uint8 (b, h, w, c) frames to (b, c, h, w), which is
channels-last in memory already); `compile` (`torch.compile` of the ImpalaCNN, in place);
`compile_step` (`torch.compile` of the whole `policy.step`; with the hooks off dynamo traces it as
one graph, no breaks, on the tiny policy); and their bf16 combinations. A compiled variant that
fails is reported with its error. On the CPU compiled variants run only when named in --variants
(inductor compiles slowly there; `--compile-backend eager` checks the tracing in seconds). cuDNN's
autotuner (`cudnn.benchmark`) is on for every variant. CUDA graphs were not attempted.

Exactness, on the same random frames over --check-steps steps at the smallest batch: the max abs
difference of the log-probability logits (both heads) against a separate fp32 eager model, and
for every variant the KL(fp32 || variant) of both heads' action distributions, mean and max over
rows and steps. Tolerances: fp32 1e-4 (tests/test_policy_numerics.py's TOL); bf16 a KL of 1e-2
per row, the bound tests/test_gpu.py and tests/test_policy_numerics.py assert for the tiny policy
(README.md and RESULTS.md document no bf16 KL bound).

`--record`: N BlockWorld envs at 640x360 (`EnvPool`, --env-workers processes) stepped by the bare
batched rollout (policy step, batched sampling on the device, env step) against `vptlens record`
of the same N envs (`Recorder(cfg, policy=...)`, as benchmarks/record.py calls it; the envs in the same
workers, taking turns with the policy and then `--pipeline`d: half the envs step while the policy acts for
the other half),
both timed with making the envs and (recording) waiting for the writer; goal: recording at >= 70%
of the bare rate. Writes a table to stdout and JSON (with the machine) to --out.
"""

import argparse
import gc
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from vptlens.agents import PolicyConfig, load_policy, make_random_policy, preprocess_frames, sample_actions
from vptlens.agents.actions import factored_to_minerl
from vptlens.envs.blockworld import BlockWorldConfig
from vptlens.envs.vector import EnvPool
from vptlens.probes.sae.splice import kl_divergence
from vptlens.recordings import recorder

FIXTURE_DIR = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "vpt_tiny"
FP32_TOL = 1e-4
"""Max abs logit difference allowed for fp32 variants: tests/test_policy_numerics.py's TOL."""
BF16_KL_BOUND = 1e-2
"""Max KL per row for bf16 variants: what tests/test_gpu.py and tests/test_policy_numerics.py assert."""
WARM_UP = 3


@dataclass(frozen=True)
class Variant:
    name: str
    dtype: torch.dtype
    channels_last: bool = False
    compile: str | None = None
    """None, "cnn" (the ImpalaCNN) or "step" (the whole `policy.step`)."""


F32, B16 = torch.float32, torch.bfloat16
VARIANTS = {
    v.name: v
    for v in (
        Variant("fp32", F32),
        Variant("channels_last", F32, channels_last=True),
        Variant("compile", F32, compile="cnn"),
        Variant("compile_step", F32, compile="step"),
        Variant("bf16", B16),
        Variant("bf16_channels_last", B16, channels_last=True),
        Variant("bf16_compile", B16, compile="cnn"),
        Variant("bf16_channels_last_compile", B16, channels_last=True, compile="cnn"),
        Variant("bf16_compile_step", B16, compile="step"),
        Variant("bf16_channels_last_compile_step", B16, channels_last=True, compile="step"),
    )
}
DEFAULT_VARIANTS = {
    "cuda": ["fp32", "channels_last", "compile", "bf16", "bf16_channels_last", "bf16_compile",
             "bf16_channels_last_compile", "bf16_compile_step"],
    "cpu": ["fp32", "channels_last", "bf16"],
}  # fmt: skip


def get_peak_tflops(device_name: str) -> dict | None:
    """Dense peak TFLOP/s by device name (vendor datasheets): bf16, and fp32 without TF32; None if unknown."""
    name = device_name.upper()
    if "H200" in name or ("H100" in name and "PCIE" not in name and "NVL" not in name):  # SXM
        return {"bf16": 989.0, "fp32": 67.0}
    if "A100" in name:
        return {"bf16": 312.0, "fp32": 19.5}
    return None


def make_policy(size: str, device: torch.device, variant: Variant, backend: str):
    """The policy in the variant's form, and the step function to time (compiled or not)."""
    if size == "tiny":
        policy = load_policy(FIXTURE_DIR / "agent.model", FIXTURE_DIR / "agent.weights", device=device)
    else:  # the released 2x hyperparameters are PolicyConfig's defaults
        policy = make_random_policy(PolicyConfig()).to(device)
    policy = policy.to(dtype=variant.dtype)
    if variant.channels_last:
        policy = policy.to(memory_format=torch.channels_last)  # only the 4-d conv weights change
    if variant.compile == "cnn":
        policy.net.img_process.cnn.compile(backend=backend, dynamic=False)
    step = policy.step
    if variant.compile == "step":
        step = torch.compile(policy.step, backend=backend, dynamic=False)
    return policy, step


def random_frames(n: int, batch: int, policy, device: torch.device, seed: int = 0) -> torch.Tensor:
    """(n, b, h, w, c) uint8 frames at the agent's resolution."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, batch, *policy.cfg.img_shape), dtype=torch.uint8, generator=gen).to(device)


def cnn_input(frames_bhwc: torch.Tensor, policy) -> torch.Tensor:
    # what ImgProcess feeds the CNN: (b, c, h, w), channels-last in memory, scaled to 0..1
    return frames_bhwc.permute(0, 3, 1, 2).to(policy.dtype) / 255.0


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_step(policy, step, batch: int, n_steps: int, device: torch.device) -> float:
    """Frames/s of the step function after warm-up steps (which compile, autotune and fill the memory a little)."""
    frames = random_frames(WARM_UP + n_steps, batch, policy, device)
    first = torch.zeros(batch, dtype=torch.bool, device=device)
    state = policy.initial_state(batch)
    for i in range(WARM_UP):
        _, state = step(frames[i], first | (i == 0), state)
    sync(device)
    start = time.perf_counter()
    for i in range(WARM_UP, WARM_UP + n_steps):
        _, state = step(frames[i], first, state)
    sync(device)
    return batch * n_steps / (time.perf_counter() - start)


@torch.no_grad()
def time_cnn(policy, batch: int, n_steps: int, device: torch.device) -> float:
    """Frames/s of the ImpalaCNN forward alone on one batch of frames."""
    cnn, x = policy.net.img_process.cnn, cnn_input(random_frames(1, batch, policy, device)[0], policy)
    for _ in range(WARM_UP):
        cnn(x)
    sync(device)
    start = time.perf_counter()
    for _ in range(n_steps):
        cnn(x)
    sync(device)
    return batch * n_steps / (time.perf_counter() - start)


@torch.no_grad()
def count_flops(policy, device: torch.device) -> dict:
    """FLOPs per frame of the CNN and of a whole step (batch 1, full memory), by FlopCounterMode."""
    frames = random_frames(1, 1, policy, device)[0]
    with FlopCounterMode(display=False) as counter:
        policy.net.img_process.cnn(cnn_input(frames, policy))
    cnn = counter.get_total_flops()
    first = torch.ones(1, dtype=torch.bool, device=device)
    with FlopCounterMode(display=False) as counter:
        policy.step(frames, first, policy.initial_state(1))
    return {"cnn": cnn, "step": counter.get_total_flops()}


def run_logits(policy, step, frames_nbhwc: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(buttons, camera) log-probabilities, float32 on the CPU, of each of n steps (the first starts episodes)."""
    batch = frames_nbhwc.shape[1]
    state = policy.initial_state(batch)
    outs = []
    for i, frames in enumerate(frames_nbhwc):
        first = torch.full((batch,), i == 0, dtype=torch.bool, device=frames.device)
        out, state = step(frames, first, state)
        outs.append((out.buttons_logits.float().cpu(), out.camera_logits.float().cpu()))
    return outs


def compare(reference: list, outs: list, variant: Variant) -> dict:
    """Max abs logit difference and KL(reference || variant) of both heads, against the variant's tolerance."""
    diff = max(float((a - b).abs().max()) for ref, out in zip(reference, outs) for a, b in zip(ref, out))
    kl_b = torch.stack([kl_divergence(ref[0], out[0]) for ref, out in zip(reference, outs)])
    kl_c = torch.stack([kl_divergence(ref[1], out[1]) for ref, out in zip(reference, outs)])
    row = {
        "max_abs_logit_diff": diff,
        "kl_buttons_mean": float(kl_b.mean()),
        "kl_buttons_max": float(kl_b.max()),
        "kl_camera_mean": float(kl_c.mean()),
        "kl_camera_max": float(kl_c.max()),
    }
    if variant.dtype == torch.float32:
        row.update(tolerance=f"max abs logit diff <= {FP32_TOL}", within_tolerance=diff <= FP32_TOL)
    else:
        worst = max(row["kl_buttons_max"], row["kl_camera_max"])
        row.update(tolerance=f"KL per row <= {BF16_KL_BOUND}", within_tolerance=worst <= BF16_KL_BOUND)
    return row


def bare_rollout(policy, env_cfg: BlockWorldConfig, n_envs: int, n_workers: int, n_steps: int) -> float:
    """Env steps/s of the batched rollout without recording, making and resetting the envs included."""
    start = time.perf_counter()
    with EnvPool(env_cfg, n_envs, n_workers) as pool:
        obs, _ = pool.reset(list(range(n_envs)))
        state = policy.initial_state(n_envs)
        first = torch.ones(n_envs, dtype=torch.bool, device=policy.device)
        gen = torch.Generator(device=policy.device).manual_seed(0)
        for _ in range(n_steps):
            frames = torch.from_numpy(np.stack([preprocess_frames(o["pov"]) for o in obs])).to(policy.device)
            out, state = policy.step(frames, first, state)
            first[:] = False
            actions = factored_to_minerl(*(x.cpu().numpy() for x in sample_actions(out, generator=gen)))
            obs = [result[0] for result in pool.step(actions)]
    return n_envs * n_steps / (time.perf_counter() - start)


def recorded_rollout(
    policy, env_cfg, n_envs: int, n_workers: int, n_steps: int, out_dir: Path, pipeline: bool = False
) -> float:
    """Recorded env steps/s of `vptlens record` with the same envs, everything up to the last write included."""
    cfg = recorder.RecordConfig(
        model=FIXTURE_DIR / "agent.model",  # required by the config; the policy passed in is what runs
        weights=FIXTURE_DIR / "agent.weights",
        out=out_dir,
        env=env_cfg,
        n_episodes=n_envs,
        n_envs=n_envs,
        n_steps=n_steps,
        env_workers=n_workers,
        pipeline=pipeline,
        device=str(policy.device),
    )
    start = time.perf_counter()
    summary = recorder.Recorder(cfg, policy=policy).run()
    return summary["steps"] / (time.perf_counter() - start)


def record_comparison(args, device: torch.device) -> dict:
    height, width = args.record_resolution
    env_cfg = BlockWorldConfig(height=height, width=width)
    n_workers = args.env_workers if args.env_workers is not None else min(args.record_envs, (os.cpu_count() or 2) - 1)
    policy, _ = make_policy(args.size, device, VARIANTS[args.record_variant], args.compile_backend)
    tmp = Path(tempfile.mkdtemp(prefix="vptlens-gpu-rollout-"))
    try:
        bare_rollout(policy, env_cfg, args.record_envs, n_workers, 2)  # warm-up: numba, workers, torch
        recorded_rollout(policy, env_cfg, args.record_envs, n_workers, 2, tmp / "warm-up")
        bare = bare_rollout(policy, env_cfg, args.record_envs, n_workers, args.record_steps)
        recorded = recorded_rollout(policy, env_cfg, args.record_envs, n_workers, args.record_steps, tmp / "run")
        pipelined = recorded_rollout(
            policy, env_cfg, args.record_envs, n_workers, args.record_steps, tmp / "pipelined", pipeline=True
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "variant": args.record_variant,
        "resolution": f"{width}x{height}",
        "envs": args.record_envs,
        "env_workers": n_workers,
        "steps_per_env": args.record_steps,
        "bare_steps_per_s": bare,
        "recorded_steps_per_s": recorded,
        "recorded_share_of_bare": recorded / bare,
        "pipelined_steps_per_s": pipelined,
        "pipelined_share_of_bare": pipelined / bare,
        "goal_share": 0.7,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", default="2x", choices=["2x", "tiny"], help="tiny: the test fixture (smoke runs)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="default: by device (see above)")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32, 64])
    parser.add_argument("--steps", type=int, default=50, help="timed steps (and CNN forwards) per row")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row; the best is reported")
    parser.add_argument("--check-steps", type=int, default=4, help="steps of the exactness check")
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend ('eager' checks tracing)")
    parser.add_argument(
        "--peak-tflops", nargs=2, type=float, metavar=("BF16", "FP32"), help="dense peaks (default: by device name)"
    )
    parser.add_argument("--record", action="store_true", help="also compare `vptlens record` with the bare rollout")
    parser.add_argument("--record-envs", type=int, default=32)
    parser.add_argument("--record-steps", type=int, default=128, help="steps per env")
    parser.add_argument("--record-resolution", nargs=2, type=int, default=[360, 640], metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--record-variant", default="fp32", choices=list(VARIANTS))
    parser.add_argument(
        "--env-workers", type=int, help="env worker processes (default: CPUs - 1, at most --record-envs)"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu_rollout.json"))
    args = parser.parse_args(argv)
    if min(args.batches) < 1 or min(args.steps, args.repeats, args.check_steps, args.record_envs) < 1:
        parser.error("--batches, --steps, --repeats, --check-steps and --record-envs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit(
            "gpu_rollout.py: no GPU found (torch.cuda.is_available() is False). For the CPU smoke run: "
            "python benchmarks/gpu_rollout.py --device cpu --size tiny --batches 1 2 --steps 3"
        )
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("highest")  # no TF32: fp32 means fp32 (peak and tolerance)
        torch.backends.cudnn.allow_tf32 = False
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    machine = {
        "device": device_name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "measured": time.strftime("%Y-%m-%d %H:%M"),
    }
    peak = dict(zip(("bf16", "fp32"), args.peak_tflops)) if args.peak_tflops else get_peak_tflops(device_name)
    print(f"machine: {machine}")
    if peak is None:
        print(f"peak TFLOP/s of {device_name!r} unknown: pass --peak-tflops BF16 FP32 for the share of the peak")

    baseline, _ = make_policy(args.size, device, VARIANTS["fp32"], args.compile_backend)
    flops = count_flops(baseline, device)
    print(f"FLOPs per frame (FlopCounterMode): CNN {flops['cnn'] / 1e9:.3f} G, whole step {flops['step'] / 1e9:.3f} G")
    check_frames = random_frames(args.check_steps, min(args.batches), baseline, device, seed=1)
    reference = run_logits(baseline, baseline.step, check_frames)
    del baseline

    names = args.variants or DEFAULT_VARIANTS["cuda" if device.type == "cuda" else "cpu"]
    rows, exactness = [], []
    header = ("variant", "batch", "cnn fps", "cnn TFLOP/s", "cnn %peak", "step fps", "step TFLOP/s", "step %peak")
    widths = (32, 5, 10, 11, 9, 10, 12, 10)
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, widths)))
    for name in names:
        variant = VARIANTS[name]
        dtype_key = "bf16" if variant.dtype == torch.bfloat16 else "fp32"
        try:
            policy, step = make_policy(args.size, device, variant, args.compile_backend)
            check = {"variant": name, **compare(reference, run_logits(policy, step, check_frames), variant)}
            for batch in sorted(args.batches):
                cnn = max(time_cnn(policy, batch, args.steps, device) for _ in range(args.repeats))
                full = max(time_step(policy, step, batch, args.steps, device) for _ in range(args.repeats))
                row = {"variant": name, "dtype": dtype_key, "batch": batch, "cnn_fps": cnn, "step_fps": full}
                for part, fps in (("cnn", cnn), ("step", full)):
                    tflops = flops[part] * fps / 1e12
                    row[f"{part}_tflops"] = tflops
                    row[f"{part}_share_of_peak"] = tflops / peak[dtype_key] if peak else None
                rows.append(row)
                shares = [f"{row[k]:>{w}.1%}" if row[k] is not None else f"{'-':>{w}}" for k, w in
                          (("cnn_share_of_peak", 9), ("step_share_of_peak", 10))]  # fmt: skip
                print(
                    f"{name:>32} {batch:>5} {cnn:>10.1f} {row['cnn_tflops']:>11.3f} {shares[0]} "
                    f"{full:>10.1f} {row['step_tflops']:>12.3f} {shares[1]}",
                    flush=True,
                )
        except Exception as e:
            if variant.compile is None:
                raise
            check = {"variant": name, "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
            print(f"{name:>32} failed: {check['error']}", flush=True)
        exactness.append(check)
        policy = step = None
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()

    print(f"exactness vs fp32 eager, batch {min(args.batches)}, {args.check_steps} steps:")
    for check in exactness:
        if "error" in check:
            continue
        print(
            f"{check['variant']:>32} max|dlogit| {check['max_abs_logit_diff']:.2e}  KL buttons mean/max "
            f"{check['kl_buttons_mean']:.2e}/{check['kl_buttons_max']:.2e}  camera "
            f"{check['kl_camera_mean']:.2e}/{check['kl_camera_max']:.2e}  ({check['tolerance']}: "
            f"{'ok' if check['within_tolerance'] else 'NOT MET'})"
        )

    record = record_comparison(args, device) if args.record else None
    if record:
        print(
            f"record, {record['envs']} envs at {record['resolution']}, {record['env_workers']} workers: bare "
            f"{record['bare_steps_per_s']:.1f} steps/s, recorded {record['recorded_steps_per_s']:.1f} steps/s = "
            f"{record['recorded_share_of_bare']:.1%} of bare, pipelined "
            f"{record['pipelined_steps_per_s']:.1f} steps/s = {record['pipelined_share_of_bare']:.1%} (goal >= 70%)"
        )
    result = {
        "machine": machine,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "flops_per_frame": flops,
        "peak_tflops": peak,
        "peak_tflops_source": "--peak-tflops" if args.peak_tflops else ("device name" if peak else None),
        "rows": rows,
        "exactness": exactness,
        "record": record,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
