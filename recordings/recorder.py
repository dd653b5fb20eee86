"""`vptlens record`: run an agent in BlockWorld or MineRL and store everything a researcher will want.

B environments step in lockstep with one batched policy step per tick. Each episode is a
zarr group (layout: recordings/PROTOCOL.md) written in chunk-aligned blocks by one
background thread (`BlockWriter`), so the stepping loop never waits for the disk unless the
writer falls two blocks per env behind; the run directory holds a `run.json` manifest. A
killed recorder loses at most each episode's unflushed tail; `--resume` skips complete
episodes and records the others again.
"""

import copy
import datetime as dt
import json
import logging
import shutil
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import vptlens
from vptlens.agents import load_policy
from vptlens.agents.actions import MINERL_BUTTONS as MINERL_ACTION_KEYS
from vptlens.agents.actions import factored_to_minerl
from vptlens.agents.agent import preprocess_frames
from vptlens.agents.distributions import entropy, log_prob, sample_actions
from vptlens.agents.policy import PolicyOutput, VPTPolicy
from vptlens.recordings.store import (
    TEXT,
    ArraySpec,
    BlockWriter,
    Episode,
    EpisodeWriter,
    git_commit,
    write_json_atomic,
)

logger = logging.getLogger(__name__)

DEFAULT_HOOKS = ("img.hook_out", "blocks.*.hook_resid_post")


@dataclass(frozen=True)
class RecordConfig:
    """Record episodes of a VPT / STEVE-1 agent."""

    model: Path | None = None
    """The agent's `.model` file (architecture); or give --zoo."""
    weights: Path | None = None
    """The agent's `.weights` (or `.safetensors`) file; or give --zoo."""
    zoo: str | None = None
    """A model zoo name (e.g. foundation-model-2x), its files already in --checkpoint-dir (`vptlens download`)."""
    checkpoint_dir: Path = Path("checkpoints")
    """Where `vptlens download` put the zoo's files."""
    out: Path = Path("runs/run")
    """Run directory: one zarr group per episode, and run.json."""
    env: str = "blockworld"
    """blockworld, or minerl (needs a MineRL interpreter: see README, Real Minecraft)."""
    scene: str | None = None
    """A built-in scene name or a scene file applied at every reset."""
    n_episodes: int = 2
    """Episodes to record."""
    n_steps: int = 200
    """Steps per episode (an episode also ends when the env terminates it)."""
    n_envs: int = 2
    """Environments stepped in lockstep (one batched policy step per tick)."""
    seed: int = 0
    """Episode i uses seed + i for the env and for the agent's sampling."""
    height: int = 360
    """Env frame height (the agent always sees 128x128, resized as VPT does)."""
    width: int = 640
    """Env frame width."""
    terrain: str = "hills"
    """BlockWorld terrain: hills or flat."""
    full_frames: bool = False
    """Also store the env's full-resolution frames."""
    hooks: tuple[str, ...] = DEFAULT_HOOKS
    """Activations to store (names or wildcards); attention patterns are always stored."""
    deterministic: bool = False
    """Take the most likely action instead of sampling (the released agents sample)."""
    goal: Path | None = None
    """STEVE-1: a .npy file with the 512-d MineCLIP goal embedding."""
    cond_scale: float | None = None
    """STEVE-1: classifier-free guidance scale."""
    device: str = "cpu"
    """Torch device of the policy."""
    resume: bool = False
    """Keep complete episodes of an existing run and record the rest."""
    flush_steps: int = 64
    """Steps buffered per episode between flushes (a multiple of 64)."""

    def __post_init__(self):
        if (self.zoo is None) == (self.model is None or self.weights is None):
            raise ValueError("give the agent as --model and --weights, or as --zoo NAME (not both)")
        if self.env not in ("blockworld", "minerl"):
            raise ValueError(f"env {self.env!r} unknown; use blockworld or minerl")
        if min(self.n_episodes, self.n_steps, self.n_envs) < 1:
            raise ValueError("n_episodes, n_steps and n_envs must be at least 1")
        if self.flush_steps % 64:
            raise ValueError("flush_steps must be a multiple of 64 (the frames' chunk length)")


def episode_specs(policy: VPTPolicy, cfg: RecordConfig, hook_names: list[str]) -> dict[str, ArraySpec]:
    """Every per-step array an episode stores (documented in PROTOCOL.md)."""
    pc = policy.cfg
    specs = {
        "frames": ArraySpec((128, 128, 3), "uint8", 64, "the agent-resolution frame the policy saw", "RGB"),
        "action/buttons": ArraySpec((), "int32", 64, "joint button class taken (0..8640)", "class"),
        "action/camera": ArraySpec((), "int32", 64, "camera class taken (0..120) = pitch_bin * 11 + yaw_bin", "class"),
        "action/minerl/camera": ArraySpec((2,), "float32", 64, "camera action sent to the env", "degrees [pitch, yaw]"),
        "log_prob": ArraySpec((), "float32", 64, "log-probability of the action taken (both heads)", "nats"),
        "entropy/buttons": ArraySpec((), "float32", 64, "entropy of the button head", "nats"),
        "entropy/camera": ArraySpec((), "float32", 64, "entropy of the camera head", "nats"),
        "value": ArraySpec((), "float32", 64, "value head output (denormalised)", ""),
        "reward": ArraySpec((), "float32", 64, "env reward after the action", ""),
        "terminated": ArraySpec((), "bool", 64, "the env ended the episode after this step", ""),
        "truncated": ArraySpec((), "bool", 64, "the episode was cut after this step", ""),
        "gt/pose": ArraySpec((5,), "float32", 64, "player pose when the frame was seen", "x, y, z, pitch, yaw"),
        "gt/crosshair": ArraySpec((), TEXT, 64, "what the crosshair was on (JSON)", "env's info['crosshair']"),
        "gt/nearest_log": ArraySpec(
            (4,), "float32", 64, "tree trunk (log block) nearest the eyes; NaN if none or unknown", "x, y, z, distance"
        ),
        "gt/visible_entities": ArraySpec((), TEXT, 64, "mobs on screen with pixel boxes (JSON)", "x0, y0, x1, y1"),
        "gt/events": ArraySpec((), TEXT, 64, "events of the step that produced the frame (JSON)", ""),
    }
    for key in MINERL_ACTION_KEYS:
        specs[f"action/minerl/{key}"] = ArraySpec((), "uint8", 64, f"MineRL '{key}' sent to the env", "0/1")
    T = pc.memory_len + 1
    for layer in range(pc.n_recurrence_layers):
        specs[f"attention/L{layer}"] = ArraySpec(
            (pc.attention_heads, T),
            "float16",
            64,
            f"block {layer}'s attention of the current frame over its memory",
            f"lag: column {T - 1} is the current frame, column {T - 1}-k is k steps back",
        )
    dims = {
        "d": pc.hidsize,
        "f": pc.hidsize * pc.pointwise_ratio,
        "n": pc.attention_heads,
        "k": pc.head_dim,
        "T": T,
        "a": 8641,
        "c": 121,
    }
    for name in hook_names:
        shape = tuple(dims[c] for c in policy.hook_dims(step=True)[name].split() if c != "b")
        specs[f"activations/{name}"] = ArraySpec(shape, "float16", 64, f"hook {name} at each step", "")
    if cfg.full_frames:
        specs["frames_full"] = ArraySpec((cfg.height, cfg.width, 3), "uint8", 16, "the env's full frame", "RGB")
    return specs


def _make_env(cfg: RecordConfig):
    if cfg.env == "blockworld":
        from vptlens.envs.blockworld import BlockWorldEnv

        return BlockWorldEnv(height=cfg.height, width=cfg.width, terrain=cfg.terrain)
    from vptlens.envs.minerl_env import MineRLEnv

    return MineRLEnv()


class Recorder:
    """Records a run; `main(cfg)` is the command, this is the machinery (usable from Python)."""

    def __init__(self, cfg: RecordConfig, policy: VPTPolicy | None = None):
        self.cfg = cfg
        # `policy` lets benchmarks pass one built in memory; it must carry `provenance`
        self.policy = policy if policy is not None else load_policy(*self.agent_files(), device=cfg.device)
        self.patterns = self.policy.select_hooks("blocks.*.attn.hook_pattern")
        self.hooks = [h for h in self.policy.select_hooks(list(cfg.hooks)) if h not in self.patterns]
        self.specs = episode_specs(self.policy, cfg, self.hooks)
        self.goal = None
        if cfg.goal is not None:
            self.goal = np.load(cfg.goal, allow_pickle=False).astype(np.float32).reshape(-1)
        if self.policy.cfg.is_goal_conditioned and self.goal is None:
            raise ValueError("a STEVE-1 policy needs --goal pointing to a .npy MineCLIP embedding (512 floats)")
        self.run_dir = Path(cfg.out)
        self.manifest_path = self.run_dir / "run.json"
        self.interrupted = False
        self._writer: BlockWriter | None = None

    def agent_files(self) -> tuple[Path, Path]:
        cfg = self.cfg
        if cfg.zoo is None:
            return cfg.model, cfg.weights
        from vptlens.agents.zoo import get_zoo_entry

        entry = get_zoo_entry(cfg.zoo)
        paths = cfg.checkpoint_dir / entry.model_file, cfg.checkpoint_dir / entry.weights_file
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path}: not downloaded; run `vptlens download {cfg.zoo} --dir {cfg.checkpoint_dir}`"
                )
        return paths

    # -------------------------------------------------------------- the run manifest

    def _load_or_start_manifest(self) -> dict:
        cfg = self.cfg
        if self.manifest_path.exists():
            if not cfg.resume:
                raise FileExistsError(f"{self.run_dir} holds a run already; pass --resume to finish it, or a new --out")
            manifest = json.loads(self.manifest_path.read_text())
            if manifest["config"]["n_steps"] != cfg.n_steps or manifest["config"]["seed"] != cfg.seed:
                raise ValueError("--resume needs the same n_steps and seed as the run being resumed")
            return manifest
        self.run_dir.mkdir(parents=True, exist_ok=True)
        manifest = {
            "schema": "vptlens.run",
            "schema_version": 1,
            "config": json.loads(json.dumps(asdict(cfg), default=str)),
            "agent": self.policy.provenance,
            "package_version": vptlens.__version__,
            "git_commit": git_commit(),
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "episodes": {},
        }
        write_json_atomic(self.manifest_path, manifest)
        return manifest

    def episode_path(self, index: int) -> Path:
        return self.run_dir / f"episode_{index:06d}.zarr"

    def _pending(self, manifest: dict) -> list[int]:
        pending = []
        for i in range(self.cfg.n_episodes):
            path = self.episode_path(i)
            if path.exists():
                try:
                    if Episode(path).status == "complete":
                        continue
                except (ValueError, FileNotFoundError, KeyError):
                    pass
                shutil.rmtree(path)  # partial or unreadable: record it again from its seed
            pending.append(i)
        return pending

    # -------------------------------------------------------------- recording

    def run(self) -> dict:
        manifest = self._load_or_start_manifest()
        pending = self._pending(manifest)
        cfg = self.cfg
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        total = len(pending) * cfg.n_steps
        bar = tqdm(total=total, unit="step", desc="recording", disable=total == 0)
        start = time.perf_counter()
        # one background thread writes every episode's blocks, in order; at most two blocks per env queued
        self._writer = BlockWriter(max_pending=2 * cfg.n_envs + 4)
        try:
            for wave in range(0, len(pending), cfg.n_envs):
                self._record_wave(pending[wave : wave + cfg.n_envs], manifest, bar)
                if self.interrupted:
                    break
        finally:
            bar.close()
            try:
                self._writer.close()  # waits for everything handed over; raises WriterError if a write failed
            finally:
                signal.signal(signal.SIGTERM, previous)
        seconds = time.perf_counter() - start
        summary = self._summary(manifest, seconds)
        logger.info(summary["text"])
        return summary

    def _on_sigterm(self, signum, frame):
        raise KeyboardInterrupt

    def _save_manifest(self, manifest: dict) -> None:
        """Rewrite run.json after the episode writes handed over so far (so it never runs ahead of them)."""
        snapshot = copy.deepcopy(manifest)

        async def save() -> None:
            write_json_atomic(self.manifest_path, snapshot)

        self._writer.submit(save)

    def _record_wave(self, indices: list[int], manifest: dict, bar) -> None:
        cfg, policy = self.cfg, self.policy
        reason = "interrupted"
        envs = [_make_env(cfg) for _ in indices]
        writers: list[EpisodeWriter | None] = []
        # one sampling stream per episode, so an episode's actions do not depend on its batch-mates; sampled on
        # the CPU from float32 heads, so the same seed gives the same actions whatever device the policy is on
        generators = [torch.Generator().manual_seed(cfg.seed + i) for i in indices]
        obs_list, infos = [], []
        try:
            for env, index in zip(envs, indices):
                seed = cfg.seed + index
                obs, info = env.reset(seed=seed, options={"scene": cfg.scene} if cfg.scene else None)
                obs_list.append(obs)
                infos.append(info)
                writers.append(
                    EpisodeWriter(
                        self.episode_path(index),
                        self.specs,
                        self._episode_attrs(index, env, info),
                        flush_steps=cfg.flush_steps,
                        writer=self._writer,
                    )
                )
                manifest["episodes"][str(index)] = {
                    "path": self.episode_path(index).name,
                    "seed": seed,
                    "status": "recording",
                }
            self._save_manifest(manifest)
            guided = cfg.cond_scale is not None
            state = policy.initial_state(len(envs), guided=guided)
            first = torch.ones(len(envs), dtype=torch.bool)
            goal = None if self.goal is None else torch.from_numpy(np.tile(self.goal, (len(envs), 1)))
            events = [[] for _ in envs]
            for _ in range(cfg.n_steps):
                if all(w is None or w.closed for w in writers):
                    break
                frames = np.stack([preprocess_frames(o["pov"]) for o in obs_list])
                out, state, cache = policy.run_with_cache(
                    torch.from_numpy(frames),
                    first,
                    state,
                    names=self.patterns + self.hooks,
                    goal=goal,
                    cond_scale=cfg.cond_scale,
                )
                first[:] = False
                out = PolicyOutput(*(x.float().cpu() for x in vars(out).values()))  # one copy of the heads
                rows = [PolicyOutput(*(x[b : b + 1] for x in vars(out).values())) for b in range(len(envs))]
                sampled = [sample_actions(row, cfg.deterministic, g) for row, g in zip(rows, generators)]
                buttons = torch.cat([s[0] for s in sampled])
                camera = torch.cat([s[1] for s in sampled])
                batch = self._batch_values(out, buttons, camera, cache)
                actions = factored_to_minerl(batch["action/buttons"], batch["action/camera"])
                for b, (env, writer) in enumerate(zip(envs, writers)):
                    if writer.closed:
                        continue
                    obs_next, reward, terminated, truncated, info = env.step(actions[b])
                    truncated = truncated or len(writer) + 1 >= cfg.n_steps
                    step = self._step_values(b, frames, obs_list[b], infos[b], events[b], actions[b], batch)
                    step.update(
                        reward=np.float32(reward), terminated=np.bool_(terminated), truncated=np.bool_(truncated)
                    )
                    writer.append(step)
                    bar.update(1)
                    obs_list[b], infos[b], events[b] = obs_next, info, info.get("events", [])
                    if terminated or truncated:
                        writer.close("complete", n_steps=len(writer))
                        manifest["episodes"][str(indices[b])].update(status="complete", length=len(writer))
                        self._save_manifest(manifest)
        except KeyboardInterrupt:
            self.interrupted = True
            logger.warning("interrupted: flushing and marking the open episodes partial")
        except Exception as e:
            self.interrupted = True
            if _caused_by_interrupt(e):  # Ctrl-C inside a compiled call (numba) surfaces as a SystemError
                logger.warning("interrupted: flushing and marking the open episodes partial")
            else:
                logger.error("recording failed (%s): marking the open episodes partial", e)
                reason = f"{type(e).__name__}: {e}"
                raise
        finally:
            try:
                self._close_partial(writers, indices, manifest, reason=reason)
            finally:
                for env in envs:
                    env.close()

    def _close_partial(self, writers, indices, manifest, reason: str) -> None:
        """Hand over every open episode's tail and mark it partial (all written before run() returns)."""
        for writer, index in zip(writers, indices):
            if writer is not None and not writer.closed:
                manifest["episodes"][str(index)].update(status="partial", length=len(writer))
                if self._writer.failed:
                    writer.abandon()
                else:
                    writer.close("partial", interrupted_by=reason, n_steps=len(writer))
        if self._writer.failed:
            # nothing more reaches the episodes; the manifest must not claim more than they hold
            for index in indices:
                entry = manifest["episodes"].get(str(index))
                if entry is not None and entry["status"] == "complete" and not _is_complete(self.episode_path(index)):
                    entry.update(status="partial")
            write_json_atomic(self.manifest_path, manifest)
            self._writer.check()
        self._save_manifest(manifest)

    def _batch_values(self, out: PolicyOutput, buttons, camera, cache: dict) -> dict[str, np.ndarray]:
        """Everything the episodes store from the policy, as numpy (B, ...): `out` is on the CPU already, the cached
        activations come over in one device-to-host copy."""
        B = buttons.shape[0]
        h_buttons, h_camera = entropy(out)
        batch = {
            "action/buttons": buttons.numpy().astype(np.int32),
            "action/camera": camera.numpy().astype(np.int32),
            "log_prob": log_prob(out, buttons, camera).numpy(),
            "entropy/buttons": h_buttons.numpy(),
            "entropy/camera": h_camera.numpy(),
            "value": out.value.numpy(),
        }
        names = [f"attention/L{layer}" for layer in range(len(self.patterns))]
        names += [f"activations/{h}" for h in self.hooks]
        # a guided (classifier-free) step caches 2B rows, conditional first: the episodes keep those
        tensors = [cache[n][:B] for n in self.patterns + self.hooks]
        flat = torch.cat([t.reshape(B, -1).to(torch.float16) for t in tensors], dim=1).cpu().numpy()
        offset = 0
        for name, t in zip(names, tensors):
            size = t[0].numel()
            batch[name] = flat[:, offset : offset + size].reshape(t.shape)
            offset += size
        return batch

    def _episode_attrs(self, index: int, env, info: dict) -> dict:
        cfg = self.cfg
        env_config = (
            asdict(env.config) if hasattr(env, "config") and hasattr(env.config, "__dataclass_fields__") else {}
        )
        scene = None
        if cfg.scene:
            from vptlens.envs.scenes import as_scene

            scene = as_scene(cfg.scene).to_dict()
        return {
            "episode_index": index,
            "seed": cfg.seed + index,
            "agent": self.policy.provenance,
            "policy_config": self.policy.cfg.to_dict(),
            "env": {"id": cfg.env, "settings": json.loads(json.dumps(env_config, default=str))},
            "env_reset_info": json.loads(json.dumps({k: v for k, v in info.items() if k != "events"}, default=str)),
            "scene": scene,
            "record_config": json.loads(json.dumps(asdict(cfg), default=str)),
            "hooks": self.hooks,
            "package_version": vptlens.__version__,
            "git_commit": git_commit(),
            "sampling": "argmax" if cfg.deterministic else "sampled, temperature in logits",
        }

    def _step_values(self, b: int, frames, obs: dict, info: dict, events: list, action: dict, batch: dict) -> dict:
        """Row b's values of one step (reward and the end flags are added by the caller)."""
        pose = info.get("pose", {})
        step = {name: values[b] for name, values in batch.items()}
        step.update(
            {
                "frames": frames[b],
                "action/minerl/camera": np.asarray(action["camera"], np.float32),
                "gt/pose": np.array([pose.get(k, np.nan) for k in ("x", "y", "z", "pitch", "yaw")], np.float32),
                "gt/crosshair": json.dumps(info.get("crosshair")),
                "gt/nearest_log": _nearest_log(info.get("nearest_log")),
                "gt/visible_entities": json.dumps(info.get("visible_entities", [])),
                "gt/events": json.dumps(events),
            }
        )
        for key in MINERL_ACTION_KEYS:
            step[f"action/minerl/{key}"] = np.uint8(action.get(key, 0))
        if self.cfg.full_frames:
            step["frames_full"] = obs["pov"]
        return step

    def _summary(self, manifest: dict, seconds: float) -> dict:
        episodes = manifest["episodes"].values()
        complete = sum(e["status"] == "complete" for e in episodes)
        steps = sum(e.get("length", 0) for e in episodes)
        disk = sum(f.stat().st_size for f in self.run_dir.rglob("*") if f.is_file())
        text = (
            f"{self.run_dir}: {complete}/{self.cfg.n_episodes} episodes complete, {steps} steps, "
            f"{disk / 1e6:.1f} MB on disk ({disk / max(steps, 1) / 1e3:.1f} kB/step), {seconds:.1f} s"
        )
        return {"complete": complete, "steps": steps, "disk_bytes": disk, "seconds": seconds, "text": text}


def _nearest_log(log: dict | None) -> np.ndarray:
    """info['nearest_log'] as [x, y, z, distance] (NaN where the env reports none, e.g. MineRL)."""
    if not log:
        return np.full(4, np.nan, np.float32)
    return np.array([*log["pos"], log["distance"]], np.float32)


def _caused_by_interrupt(e: BaseException) -> bool:
    """Whether a KeyboardInterrupt is in the exception's chain of causes."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def _is_complete(path: Path) -> bool:
    try:
        return Episode(path).status == "complete"
    except (ValueError, FileNotFoundError, KeyError):
        return False


def main(cfg: RecordConfig) -> dict:
    recorder = Recorder(cfg)
    summary = recorder.run()
    print(summary["text"])
    if recorder.interrupted:
        raise SystemExit(130)
    return summary
