"""What one BC update of the model organism costs, and what feeds it: the CNN in passes, the demonstration stream.

    python benchmarks/bc_update.py [--repeats 5] [--passes none 64 32 16] [--img-size 128] [--threads 1]
        [--device cpu] [--out benchmarks/results/bc_update.json]

- The learner: one update of `vptlens train bc`'s organism (16 rows x 32 frames at --img-size: forward,
  loss, backward, gradient clip, Adam step: the trainer's own `bc.bc_update`), with the CNN seeing the batch's
  512 frames at once (`none`) or N at a time (`ImgProcess.frames_per_pass`; the trainer uses
  `bc.FRAMES_PER_CNN_PASS`). Settings are interleaved, after one warm-up update each, so that a drift in the
  machine's load reaches them alike.
- The feeder: one 16 x 32-step chunk of `DemoStream` (BlockWorld stepped and rendered, the expert labelling),
  for each teacher sight, with the expert driving (round 0) and with the untrained learner driving half the
  rows (a DAgger round at beta 0.5).
In training the feeder runs in its own process one chunk ahead, so an update takes the longer of the two.
Frames are random pixels for the learner (its cost does not depend on them) and real worlds for the feeder.
"""

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from vptlens.agents.loading import make_random_policy
from vptlens.training import bc
from vptlens.training.expert import SIGHTS
from vptlens.training.stream import DemoStream


def _passes(value: str) -> int | None:
    if value == "none":
        return None
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"a pass is 'none' or a positive number of frames, got {value!r}")
    return int(value)


def learner_updates(passes: list[int | None], repeats: int, device: str, img_size: int) -> dict:
    cfg = bc.BCConfig(out=Path("unused"), frames_per_round=(1,), betas=(1.0,), device=device, img_size=img_size)
    policy = make_random_policy(cfg.policy_config(), seed=0).to(device).train()
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    generator = torch.Generator().manual_seed(0)
    shape = (cfg.rows, cfg.chunk)
    frames = torch.randint(0, 256, (*shape, img_size, img_size, 3), dtype=torch.uint8, generator=generator).to(device)
    first = torch.zeros(shape, dtype=torch.bool, device=device)
    buttons = torch.randint(0, 8641, shape, generator=generator).to(device)
    camera = torch.randint(0, 121, shape, generator=generator).to(device)

    def update(frames_per_pass: int | None) -> float:
        policy.net.img_process.frames_per_pass = frames_per_pass
        tick = time.perf_counter()
        state = policy.initial_state(cfg.rows)
        bc.bc_update(policy, optimizer, frames, first, state, buttons, camera, cfg.grad_clip)  # the trainer's update
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - tick

    for p in passes:
        update(p)  # warm-up
    seconds = {str(p).lower(): [] for p in passes}
    for _ in range(repeats):
        for p in passes:
            seconds[str(p).lower()].append(update(p))
    frames_per_update = cfg.rows * cfg.chunk
    return {
        key: {"seconds": s, "median_s": statistics.median(s), "frames_per_s": frames_per_update / statistics.median(s)}
        for key, s in seconds.items()
    }


def feeder_chunks(repeats: int, img_size: int) -> dict:
    cfg = bc.BCConfig(out=Path("unused"), frames_per_round=(1,), betas=(1.0,), img_size=img_size)
    learner = make_random_policy(cfg.policy_config(), seed=0).eval()
    out = {}
    for sight in SIGHTS:
        for beta in (1.0, 0.5):
            stream = DemoStream(cfg.rows, cfg.env_config(), seed=7, sight=sight, frame_size=(img_size, img_size))
            seconds = []
            for i in range(repeats + 1):  # the first chunk builds the worlds: not counted
                tick = time.perf_counter()
                stream.next_chunk(cfg.chunk, beta, learner if beta < 1 else None, torch.Generator().manual_seed(i))
                seconds.append(time.perf_counter() - tick)
            median = statistics.median(seconds[1:])
            out[f"{sight}, beta {beta}"] = {
                "seconds": seconds[1:],
                "median_s": median,
                "frames_per_s": cfg.rows * cfg.chunk / median,
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--passes", type=_passes, nargs="+", default=[None, 64, 32, 16])
    parser.add_argument("--img-size", type=int, default=128, help="the policy's input (the trainer's --img-size)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the trainer's --threads)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bc_update.json"))
    args = parser.parse_args()
    if args.repeats < 1 or args.threads < 1:
        raise SystemExit("--repeats and --threads must be at least 1")
    if args.img_size < 16:
        raise SystemExit("--img-size must be at least 16")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here; run with --device cpu")
    torch.set_num_threads(args.threads)
    result = {
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": args.threads},
        "device": args.device,
        "img_size": args.img_size,
        "learner": learner_updates(args.passes, args.repeats, args.device, args.img_size),
    }
    for key, row in result["learner"].items():
        print(f"learner, CNN passes of {key} frames: {row['median_s']:.2f} s per update, "
              f"{row['frames_per_s']:.0f} frames/s", flush=True)  # fmt: skip
    result["feeder"] = feeder_chunks(args.repeats, args.img_size)
    for key, row in result["feeder"].items():
        print(f"feeder, {key}: {row['median_s']:.2f} s per chunk, {row['frames_per_s']:.0f} frames/s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
