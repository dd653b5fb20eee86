"""SAE training throughput: our TopK step vs a bare PyTorch loop of the same matrix work; the store loader's rate.

    python benchmarks/sae_train.py [--device cpu|cuda] [--steps 3] [--batch 4096] [--d 2048] [--expansion 16] [--k 32]

Rows ("activations") per second of
- `sae step`: one `SAETrainer.step` of a TopK SAE (d_in 2048, d_sae 32768, k 32): encode matmul, top-k,
  decode matmul, backward, the decoder-gradient projection, Adam, row renormalisation, dead-latent
  counters and the logged statistics;
- `bare loop`: the same encode matmul, top-k, scatter, decode matmul, MSE, backward and Adam step with
  nothing else (the ceiling the issue measures against: target >= 90%);
- `loader`: `ActivationBuffer` (prefetch thread on) reading a synthetic run of float16 rows written with
  the real `EpisodeWriter` (zstd, 64-step chunks) through its shuffle buffer, consumed as fast as possible,
  yielding float32 batches on CPU, float16 ones converted on the GPU (what `vptlens sae train` does), and the
  other variant for comparison;
- `fed sae step`: the SAE step taking its batches from that loader (the loader must not starve it);
  `loader wait` is the share of that time spent waiting for the loader's next batch (not its copy to the device).
Step times are medians over `--steps` interleaved timed steps after one warm-up step each. The loader
needs zarr; where it is missing (a bare GPU image) the loader rows are skipped and say so.
"""

import argparse
import json
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vptlens.probes.sae import SAE, SAEConfig, SAETrainer


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def make_bare(d: int, d_sae: int, k: int, device: str):
    g = torch.Generator().manual_seed(0)
    W_dec = torch.randn(d_sae, d, generator=g)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    params = [
        torch.nn.Parameter(W_dec.T.contiguous().to(device)),
        torch.nn.Parameter(torch.zeros(d_sae, device=device)),
        torch.nn.Parameter(W_dec.to(device)),
        torch.nn.Parameter(torch.zeros(d, device=device)),
    ]
    opt = torch.optim.Adam(params, lr=1e-4)

    def step(x: torch.Tensor) -> None:
        W_enc, b_enc, W_dec, b_dec = params
        pre = (x - b_dec) @ W_enc + b_enc
        values, index = pre.topk(k, dim=-1, sorted=False)
        z = torch.zeros_like(pre).scatter_(-1, index, torch.relu(values))
        loss = (z @ W_dec + b_dec - x).pow(2).sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def time_steps(fns: dict, x: torch.Tensor, n_steps: int, device: str) -> dict[str, float]:
    """Median seconds per step of each function, interleaved so that drifts in machine load hit all alike."""
    for fn in fns.values():  # warm-up
        fn(x)
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(n_steps):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn(x)
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def write_run(root: Path, d: int, n_rows: int, n_episodes: int, hook: str) -> list:
    from vptlens.recordings.schema import activation_array
    from vptlens.recordings.store import Episode
    from vptlens.recordings.writer import ArraySpec, EpisodeWriter

    rng = np.random.default_rng(0)
    specs = {activation_array(hook): ArraySpec((d,), "float16")}
    paths = []
    for i in range(n_episodes):
        path = root / f"episode_{i:06d}.zarr"
        rows = rng.normal(size=(n_rows // n_episodes, d)).astype(np.float16)
        with EpisodeWriter(path, specs) as w:
            for row in rows:
                w.append({activation_array(hook): row})
            w.close("complete")
        paths.append(path)
    return [Episode(p) for p in paths]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=3, help="timed steps of each (after one warm-up)")
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--expansion", type=int, default=16)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--loader-rows", type=int, default=32768, help="rows of the synthetic run (x d x 2 bytes)")
    parser.add_argument("--buffer-rows", type=int, default=16384)
    parser.add_argument("--fed-steps", type=int, default=3, help="SAE steps fed by the loader")
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/sae_train_<device>.json")
    args = parser.parse_args()
    device, hook = args.device, "blocks.0.hook_resid_post"
    on_gpu = not device.startswith("cpu")  # the trainer then takes float16 batches and converts on the device
    d_sae = args.d * args.expansion
    torch.manual_seed(0)
    cfg = SAEConfig(d_in=args.d, d_sae=d_sae, architecture="topk", k=args.k, l1_coefficient=None, hook_name=hook)
    sae = SAE(cfg, generator=torch.Generator().manual_seed(0)).to(device)
    trainer = SAETrainer(sae, lr=1e-4, n_steps=10**6)
    x = torch.randn(args.batch, args.d, device=device)  # mean norm ~ sqrt(d), as the trainer scales to
    step_s = time_steps({"sae": trainer.step, "bare": make_bare(args.d, d_sae, args.k, device)}, x, args.steps, device)
    row = {
        "device": device,
        "device_name": torch.cuda.get_device_name() if device.startswith("cuda") else cpu_name(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "d_in": args.d,
        "d_sae": d_sae,
        "k": args.k,
        "batch": args.batch,
        "timed_steps": args.steps,
        "sae_step_s": step_s["sae"],
        "bare_step_s": step_s["bare"],
        "sae_rows_per_s": args.batch / step_s["sae"],
        "bare_rows_per_s": args.batch / step_s["bare"],
        "sae_vs_bare": step_s["bare"] / step_s["sae"],
    }
    try:
        from vptlens.probes.sae.buffer import ActivationBuffer
    except ImportError as e:
        row["loader"] = f"skipped: {e}"
    else:
        tmp = Path(tempfile.mkdtemp(prefix="vptlens-sae-bench-"))
        try:
            t0 = time.perf_counter()
            episodes = write_run(tmp, args.d, args.loader_rows, 4, hook)
            row["run_write_s"] = time.perf_counter() - t0
            row["run_disk_mb"] = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file()) / 1e6
            row["loader_rows"] = args.loader_rows
            for key, f16 in (("loader_rows_per_s", on_gpu), ("loader_other_dtype_rows_per_s", not on_gpu)):
                buf = ActivationBuffer(episodes, hook, args.batch, args.buffer_rows, 0, 2, 4096, 4, float16=f16)
                t0, n = time.perf_counter(), 0
                for batch in buf:
                    n += batch.shape[0]
                    batch.to(device).float()
                sync(device)
                row[key] = n / (time.perf_counter() - t0)
            buf = ActivationBuffer(episodes, hook, args.batch, args.buffer_rows, 0, None, 4096, 4, float16=on_gpu)
            batches = iter(buf)
            trainer.step(next(batches).to(device).float())  # warm-up, and the prefetch thread fills its queue
            sync(device)
            wait, t0 = 0.0, time.perf_counter()
            for _ in range(args.fed_steps):
                w0 = time.perf_counter()
                batch = next(batches)  # only the wait for the loader: the copy below also waits for the GPU's queue
                wait += time.perf_counter() - w0
                trainer.step(batch.to(device).float())
            sync(device)
            elapsed = time.perf_counter() - t0
            batches.close()
            row["fed_sae_rows_per_s"] = args.fed_steps * args.batch / elapsed
            row["fed_loader_wait_fraction"] = wait / elapsed
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'what':<34}{'rows/s':>14}")
    for name, key in (
        ("bare loop (matrix work only)", "bare_rows_per_s"),
        ("sae step (SAETrainer.step)", "sae_rows_per_s"),
        ("loader (store -> shuffled batch)", "loader_rows_per_s"),
        ("loader, float16 if cpu / 32 if gpu", "loader_other_dtype_rows_per_s"),
        ("sae step fed by the loader", "fed_sae_rows_per_s"),
    ):
        if key in row:
            print(f"{name:<34}{row[key]:>14,.0f}")
    print(f"sae step / bare loop: {row['sae_vs_bare']:.1%}", end="")
    if "loader_rows_per_s" in row:
        print(
            f"; loader / sae step: {row['loader_rows_per_s'] / row['sae_rows_per_s']:.1f}x;"
            f" loader wait while training: {row['fed_loader_wait_fraction']:.1%}"
        )
    else:
        print(f"; {row['loader']}")
    out = args.out or Path(f"benchmarks/results/sae_train_{device.split(':')[0]}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": {"platform": platform.platform()}, "rows": [row]}, indent=2))


if __name__ == "__main__":
    main()
