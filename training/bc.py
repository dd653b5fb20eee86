"""Behavioural cloning of the scripted chopper into a VPT-architecture policy, with DAgger rounds.

`vptlens train bc --out DIR` trains as VPT was trained: B rows, each a contiguous stream of episodes, cut into
chunks of T frames; the transformer's memory is carried from one chunk to the next (detached), `first` clears it
at an episode's start; the loss is the negative log-likelihood of the expert's factored action (button class +
camera class, through the policy's temperature), its frames where the expert holds attack on a log optionally
weighted up (`--hold-weight`). Rounds: the first is the expert's own play (beta = 1); in later
ones a row's episode is driven by the learner with probability 1 - beta and still labelled by the expert.

The output directory holds `policy.model` + `policy.weights` (the released layout: `load_policy`, `vptlens info`
and every tool read it), `train_state.pt` (resumable: `--resume`), `log.jsonl` (one line per update),
`curves.png`, and `provenance.json` (config, data seeds, counters, file digests). `--max-minutes` ends a session
cleanly (state saved) so that a CPU can train in several runs; so do Ctrl-C and SIGTERM, after the update in
progress (a second one stops at once, losing what came after the last save).
"""

import dataclasses
import json
import logging
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

import vptlens
from vptlens.agents.actions import CAMERA_NULL_CLASS
from vptlens.agents.config import PolicyConfig
from vptlens.agents.distributions import log_prob
from vptlens.agents.loading import load_policy, make_random_policy
from vptlens.agents.policy import VPTPolicy
from vptlens.envs.blockworld import BlockWorldConfig
from vptlens.recordings.chunks import put_file
from vptlens.recordings.schema import git_commit, now_iso, to_jsonable, write_json_atomic
from vptlens.training.checkpoint import file_digests, load_train_state, save_policy, save_train_state
from vptlens.training.stream import TRAIN_SEED_BASE, StreamWorker

logger = logging.getLogger(__name__)

STEM = "policy"
"""`OUT/policy.model` + `OUT/policy.weights`: the latest checkpoint."""

FRAMES_PER_CNN_PASS = 32
"""The CNN sees a batch's frames this many at a time (same numbers; on the dev VM an update took 4.0 s instead of
5.5 s: see `ImgProcess.frames_per_pass`)."""


@dataclass(frozen=True)
class BCConfig:
    """Behavioural cloning (+ DAgger) of the BlockWorld tree-chopping expert into a VPT-architecture policy."""

    out: Path
    """Training directory (checkpoint, resumable state, log, curves, provenance)."""
    frames_per_round: tuple[int, ...] = (400_000, 200_000, 200_000)
    """Training frames of each round; round 0 is the expert's play, later rounds are DAgger rounds."""
    betas: tuple[float, ...] = (1.0, 0.5, 0.25)
    """Per round, the probability that the expert (not the learner) drives an episode."""
    rows: int = 16
    """Episodes stepped side by side (the batch's rows)."""
    chunk: int = 32
    """Frames per row per update (VPT trained on chunks of its memory's length; memory is carried across)."""
    lr: float = 3e-4
    """Adam learning rate (1.5e-3 diverged in the feasibility run)."""
    grad_clip: float = 5.0
    """Gradient norm clip."""
    hold_weight: float = 1.0
    """Weight of the loss on frames whose crosshair is on a log within reach, against 1 for every other frame (the
    loss is the weighted mean). A log breaks after ~60 unbroken ticks of attack, so the learner must hold it there
    with probability ~0.99 a tick; DAgger rounds, whose learner-driven frames are mostly turning and walking, wore
    that hold down (README, the model organism)."""
    turn_weight: float = 1.0
    """Weight of the loss on frames whose label turns the camera (and whose crosshair is not on a log within reach),
    against 1 for every other frame. Most labels keep the view still (the teacher mostly holds attack), and a learner
    that rarely turns does not face the trunk beside it (README, the model organism)."""
    episode_steps: int = 1000
    """Ticks per training episode (BlockWorld's max_steps)."""
    seed: int = 0
    """Seeds the weights' initialisation, the data stream (world seeds from 1,000,000 up) and the sampling."""
    hidsize: int = 128
    """Residual stream width d (the released 2x: 2048)."""
    attention_heads: int = 4
    """Heads per block (released: head width 128; here 32)."""
    n_recurrence_layers: int = 4
    """Transformer blocks, as released."""
    impala_chans: tuple[int, ...] = (8, 16, 16)
    """ImpalaCNN channels (released: (16, 32, 32) x width)."""
    img_size: int = 128
    """The policy's square input (released: 128). The worlds still render at 128x128, what every experiment
    renders, and the frames are resized to it by the agent's own `preprocess_frames`, so the learner sees in
    training exactly what it sees when recorded. At 64 an update takes ~1/3 of the time (benchmarks/bc_update.py)."""
    terrain: str = "hills"
    """BlockWorld terrain of the training worlds."""
    trunks: str = "bark"
    """How the training worlds' logs look: 'bark', or 'cleric' (dressed as a cleric villager: the planted organism,
    README "A planted organism"). Record and evaluate it with the same `--env.trunks`."""
    expert_sight: Literal["oracle", "visible"] = "oracle"
    """The teacher's targets: any log within its search radius (oracle, as the shipped organism was taught), or only
    logs it can see from the agent's view (`ChopperExpert(sight=...)`): labels a learner can predict from its frames."""
    expert_explore: Literal["walk", "look"] = "walk"
    """The teacher with no log in sight: walks along a drifting heading (as both shipped organisms were taught), or
    looks around first, turning a whole circle on the spot (`ChopperExpert(explore=...)`): with --expert-sight visible,
    it turns to a trunk beside or behind the player."""
    init_from: Path | None = None
    """Start from this checkpoint's weights (`STEM.model` + `STEM.weights`, given as STEM or as the `.model`) instead of
    the untrained network, e.g. DAgger rounds after another run's first round; its architecture must be the one the
    options above describe. Frames and rounds count from 0 in --out; the provenance names the checkpoint."""
    checkpoint_minutes: float = 10.0
    """Write the checkpoint and the resumable state this often (and at each round's end)."""
    max_minutes: float | None = None
    """Stop cleanly after this long (state saved); run again with --resume to go on."""
    resume: bool = False
    """Continue the training in --out from its state (with the same settings; rounds may be appended)."""
    device: str = "cpu"
    """torch device (cuda where there is one)."""
    threads: int = 0
    """torch threads (0: torch's default; 1 per process when other work shares the cores)."""
    feeders: int = 1
    """Processes that step the worlds and the expert, the rows split among them. An expert round's data is the same
    whatever their number (a DAgger round's sampled actions are not). On the dev VM's 2 cores a 64x64 learner
    waited for one feeder; two fed it faster (README, the model organism)."""

    def __post_init__(self):
        if len(self.frames_per_round) != len(self.betas) or not self.betas:
            raise ValueError("give one --betas value per --frames-per-round value")
        if any(not 0 <= b <= 1 for b in self.betas):
            raise ValueError(f"--betas must lie in 0..1, got {self.betas}")
        if any(f < 1 for f in self.frames_per_round):
            raise ValueError(f"--frames-per-round must be positive, got {self.frames_per_round}")
        lows = (("rows", 1), ("chunk", 1), ("episode_steps", 2), ("threads", 0), ("img_size", 16), ("feeders", 1))
        for name, lo in lows:
            if getattr(self, name) < lo:
                raise ValueError(f"--{name.replace('_', '-')} must be at least {lo}")
        if self.feeders > self.rows:
            raise ValueError(f"--feeders {self.feeders} is more than --rows {self.rows} (they share the rows)")
        for name in ("hold_weight", "turn_weight"):
            if not getattr(self, name) > 0:
                raise ValueError(f"--{name.replace('_', '-')} {getattr(self, name)} must be positive")
        if not 0 < self.lr < 1:
            raise ValueError(f"--lr {self.lr} must lie in (0, 1)")
        if self.init_from is not None:
            model, weights = init_files(self.init_from)
            missing = [str(p) for p in (model, weights) if not p.is_file()]
            if missing:
                raise FileNotFoundError(f"--init-from: no such file {', '.join(missing)} (give a checkpoint's stem)")
        if self.resume and not (Path(self.out) / "train_state.pt").is_file():
            raise FileNotFoundError(f"{self.out} holds no training to resume (no train_state.pt); drop --resume")
        if not self.resume and (Path(self.out) / "train_state.pt").exists():
            raise FileExistsError(f"{self.out} holds a training already: pass --resume to go on, or another --out")
        self.policy_config()  # sizes checked before anything is written
        self.env_config()  # and the terrain and trunks

    def policy_config(self) -> PolicyConfig:
        return PolicyConfig(
            hidsize=self.hidsize,
            attention_heads=self.attention_heads,
            n_recurrence_layers=self.n_recurrence_layers,
            impala_chans=tuple(self.impala_chans),
            impala_width=1,
            img_shape=(self.img_size, self.img_size, 3),
        )

    def env_config(self) -> BlockWorldConfig:
        return BlockWorldConfig(
            height=128, width=128, max_steps=self.episode_steps, terrain=self.terrain, trunks=self.trunks
        )

    def round_at(self, frames: int) -> int:
        """The round the `frames`-th training frame belongs to (len(rounds) when training is done)."""
        ends = np.cumsum(self.frames_per_round)
        return int(np.searchsorted(ends, frames, side="right"))


RUNTIME_FIELDS = {"resume", "max_minutes", "device", "threads", "checkpoint_minutes", "feeders"}
"""Options that may differ between the sessions of one training."""


def _extends(recorded: dict, now: dict) -> bool:
    """Whether `now` plans the recorded rounds and then more (rounds may be added to a training, not changed)."""
    n = len(recorded["frames_per_round"])
    return all(len(now[k]) > n and now[k][:n] == recorded[k] for k in ("frames_per_round", "betas"))


def init_files(stem: Path) -> tuple[Path, Path]:
    """`--init-from` as (.model, .weights): a stem, or either file of the pair."""
    stem = Path(stem)
    if stem.suffix in (".model", ".weights"):
        stem = stem.with_suffix("")
    return stem.with_name(stem.name + ".model"), stem.with_name(stem.name + ".weights")


def init_head_biases(policy: VPTPolicy, buttons: np.ndarray, camera: np.ndarray) -> None:
    """Start each head at the expert's marginal action frequencies (its logits are divided by the temperature, so
    the bias is temperature * log frequency): saved ~150 updates in the feasibility run."""
    temperature = policy.cfg.temperature
    with torch.no_grad():
        for name, labels in (("buttons", buttons), ("camera", camera)):
            layer = policy.pi_head[name].linear_layer
            counts = np.bincount(labels.reshape(-1), minlength=layer.out_features).astype(np.float64)
            pseudo = 0.01 * counts.sum() / len(counts)  # 1% of the mass spread over every class, seen or not
            freq = (counts + pseudo) / (counts.sum() * 1.01)
            layer.bias.copy_(torch.from_numpy(temperature * np.log(freq)).to(layer.bias))


def frame_weights(chunk, hold_weight: float, turn_weight: float) -> np.ndarray:
    """(B, T) float32 loss weights: `hold_weight` where the crosshair is on a log within reach, else `turn_weight`
    where the label turns the camera, else 1."""
    turning = chunk.camera != CAMERA_NULL_CLASS
    weights = np.where(turning, turn_weight, 1.0)
    return np.where(chunk.log_in_reach, hold_weight, weights).astype(np.float32)


def bc_loss(policy: VPTPolicy, frames, first, state, buttons, camera, weights=None):
    """NLL of the expert's actions over a chunk, its mean weighted by `weights` (B, T) where given, its parts, and the
    state to carry (detached)."""
    out, state = policy(frames, first, state)
    nll = -log_prob(out, buttons, camera)
    loss = nll.mean() if weights is None else (nll * weights).sum() / weights.sum()
    with torch.no_grad():
        parts = {
            "buttons_nll": float(-out.buttons_logits.gather(-1, buttons[..., None]).mean()),
            "camera_nll": float(-out.camera_logits.gather(-1, camera[..., None]).mean()),
            "buttons_acc": float((out.buttons_logits.argmax(-1) == buttons).float().mean()),
            "camera_acc": float((out.camera_logits.argmax(-1) == camera).float().mean()),
        }
    return loss, parts, state.detach()


def bc_update(policy: VPTPolicy, optimizer, frames, first, state, buttons, camera, grad_clip: float, weights=None):
    """One update on a chunk: `bc_loss`, backward, the gradient norm clipped to `grad_clip`, the optimizer's step.
    Returns the loss, its parts, the state to carry and the gradient norm before clipping."""
    loss, parts, state = bc_loss(policy, frames, first, state, buttons, camera, weights)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = float(torch.nn.utils.clip_grad_norm_(policy.parameters(), grad_clip))
    optimizer.step()
    return loss, parts, state, grad_norm


class Trainer:
    """One training directory: builds or resumes the policy, the optimizer and the data stream, then trains."""

    def __init__(self, cfg: BCConfig):
        self.cfg = cfg
        self.out = Path(cfg.out)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if cfg.resume:
            self._resume()
        else:
            if cfg.init_from is not None:
                self.policy = load_policy(*init_files(cfg.init_from), device=cfg.device)
                if self.policy.cfg != cfg.policy_config():
                    raise ValueError(
                        f"--init-from {cfg.init_from}: its architecture {self.policy.cfg.to_dict()} is not the one "
                        f"these options describe {cfg.policy_config().to_dict()}; give its sizes"
                    )
            else:
                self.policy = make_random_policy(cfg.policy_config(), seed=cfg.seed).to(cfg.device)
            self.out.mkdir(parents=True, exist_ok=True)
            self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=cfg.lr)
            self.frames, self.updates, self.seconds = 0, 0, 0.0
            self.episodes_done = [0] * cfg.rows
        self.policy.net.img_process.frames_per_pass = FRAMES_PER_CNN_PASS
        self.state = self.policy.initial_state(cfg.rows)
        self.policy.train()

    def _resume(self) -> None:
        cfg = self.cfg
        saved = load_train_state(self.out / "train_state.pt")
        meta = saved["meta"]
        recorded = {k: v for k, v in meta["config"].items() if k not in RUNTIME_FIELDS | {"out"}}
        now = {k: v for k, v in to_jsonable(cfg).items() if k not in RUNTIME_FIELDS | {"out"}}
        defaults = {f.name: f.default for f in dataclasses.fields(BCConfig)}  # options added since the run began
        differing = sorted(k for k in now if recorded.get(k, defaults.get(k)) != now[k])
        if set(differing) <= {"frames_per_round", "betas"} and _extends(recorded, now):
            differing = []  # more rounds after the planned ones: training goes on
        if differing:
            raise ValueError(
                f"--resume with other settings than the training in {self.out}: "
                + "; ".join(f"{k}: {recorded.get(k)!r} then, {now[k]!r} now" for k in differing)
                + " (see its provenance.json)"
            )
        self.policy = load_policy(self.out / f"{STEM}.model", self.out / f"{STEM}.weights", device=cfg.device)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=cfg.lr)
        self.optimizer.load_state_dict(saved["optimizer"])
        self.frames, self.updates, self.seconds = meta["frames"], meta["updates"], meta["seconds"]
        # episodes in progress at the stop are abandoned: each row starts its next episode (seeded by its counter)
        self.episodes_done = [n + 1 for n in meta["episodes_done"]]
        dropped = trim_log(self.out / "log.jsonl", self.updates)
        if dropped:
            logger.info("log.jsonl: %d rows of updates after the last save dropped (they are trained again)", dropped)
        logger.info("resuming %s at %s frames (%s updates)", self.out, f"{self.frames:,}", self.updates)

    @property
    def total_frames(self) -> int:
        return int(sum(self.cfg.frames_per_round))

    def train(self) -> Path:
        cfg = self.cfg
        started = time.monotonic()
        last_save = started
        log = (self.out / "log.jsonl").open("a", buffering=1)  # a line at a time: watch it while it trains
        bar = tqdm(total=self.total_frames, initial=self.frames, unit="frame", unit_scale=True, desc="bc")
        self.stream = StreamWorker(
            cfg.rows, cfg.env_config(), cfg.seed + 1, self.episodes_done, self.policy.cfg.to_dict(), cfg.expert_sight,
            cfg.feeders, explore=cfg.expert_explore,
        )  # fmt: skip
        self._request(self.frames)
        stop = StopSignals()
        try:
            while self.frames < self.total_frames and not stop.received:
                round_index = cfg.round_at(self.frames)
                row = self._update(round_index)
                log.write(json.dumps(row) + "\n")
                bar.update(cfg.rows * cfg.chunk)
                bar.set_postfix(round=round_index, loss=f"{row['loss']:.3f}", fps=f"{row['fps']:.0f}")
                now = time.monotonic()
                round_done = cfg.round_at(self.frames) != round_index
                if round_done or now - last_save > 60 * cfg.checkpoint_minutes:
                    self.save(snapshot=round_done)
                    last_save = now
                if cfg.max_minutes is not None and now - started > 60 * cfg.max_minutes:
                    logger.info("--max-minutes reached: state saved; continue with --resume")
                    break
            if stop.received:
                logger.info("%s: state saved; continue with --resume", stop.received)
        finally:
            stop.restore()
            self.stream.close()
            bar.close()
            log.close()
        self.save(snapshot=False)
        return self.out / f"{STEM}.weights"

    def _request(self, frames: int) -> None:
        """Ask the worker for the chunk that starts at training frame `frames` (driven by today's weights)."""
        cfg = self.cfg
        beta = cfg.betas[min(cfg.round_at(frames), len(cfg.betas) - 1)]
        weights = None
        if beta < 1:
            weights = {k: v.detach().to("cpu", copy=True) for k, v in self.policy.state_dict().items()}
        self.stream.request(cfg.chunk, beta, cfg.seed * 1_000_003 + frames, weights)

    def _update(self, round_index: int) -> dict:
        cfg = self.cfg
        tick = time.monotonic()
        beta = cfg.betas[round_index]
        chunk, self.episodes_done = self.stream.receive()
        data_s = time.monotonic() - tick  # the wait: what the worker could not hide behind the last update
        next_frames = self.frames + cfg.rows * cfg.chunk
        if next_frames < self.total_frames:
            self._request(next_frames)
        if self.updates == 0 and self.cfg.init_from is None:  # a checkpoint's heads are trained already
            init_head_biases(self.policy, chunk.buttons, chunk.camera)
        dev = cfg.device
        weights = None
        if cfg.hold_weight != 1 or cfg.turn_weight != 1:
            weights = torch.from_numpy(frame_weights(chunk, cfg.hold_weight, cfg.turn_weight)).to(dev)
        loss, parts, self.state, grad_norm = bc_update(
            self.policy,
            self.optimizer,
            torch.from_numpy(chunk.frames).to(dev),
            torch.from_numpy(chunk.first).to(dev),
            self.state,
            torch.from_numpy(chunk.buttons).to(dev),
            torch.from_numpy(chunk.camera).to(dev),
            cfg.grad_clip,
            weights,
        )
        seconds = time.monotonic() - tick
        self.frames += chunk.frames.shape[0] * chunk.frames.shape[1]
        self.updates += 1
        self.seconds += seconds
        return {
            "update": self.updates,
            "frames": self.frames,
            "round": round_index,
            "beta": beta,
            "loss": loss.item(),
            **parts,
            "grad_norm": grad_norm,
            "learner_driven": float(chunk.learner_driven.mean()),
            "log_in_reach": float(chunk.log_in_reach.mean()),
            "logs_broken": chunk.logs_broken,
            "fps": chunk.frames.shape[0] * chunk.frames.shape[1] / seconds,
            "data_wait_fraction": data_s / seconds,
        }

    def save(self, snapshot: bool) -> None:
        """The checkpoint (released layout), the resumable state, curves and provenance; `snapshot` also keeps a
        copy of the checkpoint under `rounds/` (a round's end)."""
        self.policy.eval()
        model, weights = save_policy(self.policy, self.out / STEM)
        if snapshot:
            save_policy(self.policy, self.out / "rounds" / f"{STEM}-{self.frames}")
        meta = {
            "config": to_jsonable(self.cfg),
            "frames": self.frames,
            "updates": self.updates,
            "seconds": self.seconds,
            "episodes_done": self.episodes_done,
        }
        save_train_state(
            self.out / "train_state.pt",
            {"optimizer": self.optimizer.state_dict(), "meta": meta},
        )
        write_json_atomic(
            self.out / "provenance.json",
            {
                **meta,
                "data": {
                    "expert": "vptlens.training.expert.ChopperExpert",
                    "world_seeds": f"episode_seed(stream seed {self.cfg.seed + 1}, row, episode) >= {TRAIN_SEED_BASE}",
                    "episodes_per_row": self.episodes_done,
                },
                "init_from": None if self.cfg.init_from is None else file_digests(*init_files(self.cfg.init_from)),
                "files": file_digests(model, weights),
                "package_version": vptlens.__version__,
                "git_commit": git_commit(),
                "saved": now_iso(),
            },
        )
        plot_curves(self.out / "log.jsonl", self.out / "curves.png")
        self.policy.train()


class StopSignals:
    """While training: Ctrl-C (SIGINT) or SIGTERM asks it to stop after the update in progress and save; a second
    one raises KeyboardInterrupt at once. A signal ignored when training began (SIGINT under `nohup ... &`) stays
    ignored; off the main thread (where Python cannot set handlers) nothing is installed."""

    def __init__(self):
        self.received: str | None = None
        self._previous = {}
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(sig) is not signal.SIG_IGN:
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name
        logger.warning("%s: stopping after this update, then saving (again to stop at once)", self.received)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


def trim_log(path: Path, updates: int) -> int:
    """Drop `log.jsonl` rows of updates after the saved state (a stop between saves loses those updates, and the
    resumed run trains them again); returns how many rows were dropped. The file is replaced atomically."""
    if not path.exists():
        return 0
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if _update_number(line) <= updates]
    if len(kept) == len(lines):
        return 0
    put_file(path, "".join(kept).encode())
    return len(lines) - len(kept)


def _update_number(line: str) -> int | float:
    """A log row's update number; a line cut short by a kill mid-write counts as after any save."""
    try:
        return json.loads(line)["update"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return float("inf")


def plot_curves(log_path: Path, out: Path) -> None:
    """Loss parts and accuracies against training frames, one panel each, rounds shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    if not rows:
        return
    frames = np.array([r["frames"] for r in rows])
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4), constrained_layout=True)
    panels = (
        ("negative log-likelihood (nats)", ("loss", "buttons_nll", "camera_nll")),
        ("top-1 agreement with the expert", ("buttons_acc", "camera_acc")),
        ("DAgger: learner-driven fraction", ("learner_driven",)),
    )
    for ax, (title, keys) in zip(axes, panels):
        for key in keys:
            values = np.array([r[key] for r in rows], float)
            window = max(1, len(values) // 50)
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            ax.plot(frames[window - 1 :], smooth, label=key)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("training frames")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(cfg: BCConfig) -> Path:
    """`vptlens train bc`: train (or resume) and print where the checkpoint is."""
    trainer = Trainer(cfg)
    weights = trainer.train()
    model = weights.with_suffix(".model")
    print(f"checkpoint: {model} + {weights} ({trainer.frames:,} frames, {trainer.updates} updates)")
    return weights
