"""`vptlens record`: run an agent in BlockWorld or MineRL and store everything a researcher will want.

B environments step in lockstep with one batched policy step per tick (with env workers and
`--pipeline`, in two halves that take turns: one half steps while the policy acts for the
other). One env pool serves every wave of a run. Each episode is a
zarr group (layout: recordings/PROTOCOL.md) written in chunk-aligned blocks by one
background thread (`BlockWriter`), so the stepping loop never waits for the disk unless the
writer falls two blocks per env behind; the run directory holds a `run.json` manifest. A
killed recorder loses at most each episode's unflushed tail; `--resume` skips complete
episodes and records the others again.

Longer than ~500 lines on purpose: the config, the stepping loop, the manifest and the resume
rules are one state machine (what is on disk after any kill), easier to check read together.
What an episode stores is in `episode_arrays.py`, the agent's files and goal in `run_agent.py`.
"""

import contextlib
import json
import logging
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import tyro
from tqdm import tqdm

import vptlens
from vptlens.agents import load_policy
from vptlens.agents.actions import factored_to_minerl, minerl_to_factored
from vptlens.agents.agent import preprocess_frames
from vptlens.agents.distributions import entropy, log_prob, sample_actions, sample_actions_per_row
from vptlens.agents.goals import Goal, make_goal
from vptlens.agents.policy import PolicyOutput, VPTPolicy
from vptlens.envs import EnvConfig, get_env_id, get_env_settings
from vptlens.envs.blockworld import BlockWorldConfig
from vptlens.envs.scenes import as_scene
from vptlens.envs.vector import EnvPool
from vptlens.minerl_spec import MINERL_BUTTONS
from vptlens.recordings import schema as S
from vptlens.recordings.allocator import keep_freed_memory
from vptlens.recordings.episode_arrays import episode_specs, frame_shape, nearest_log_array
from vptlens.recordings.run_agent import Actor, agent_files, check_goal, keep_agent_in_run
from vptlens.recordings.schema import (
    AgentRecord,
    EnvRecord,
    EpisodeMeta,
    RunManifest,
    git_commit,
    now_iso,
    to_jsonable,
)
from vptlens.recordings.store import Episode, committed_length, interrupted_at_creation, is_complete
from vptlens.recordings.writer import BlockWriter, EpisodeWriter

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
    scripted: tyro.conf.Suppress[str | None] = None
    """Set by the caller of `Recorder(..., actor=...)` for a scripted agent (`vptlens train expert-demos`): its
    name. Its actions and the ground truth are stored; there are no policy outputs. Not a command-line option."""
    out: Path = Path("runs/run")
    """Run directory: one zarr group per episode, and run.json."""
    env: EnvConfig = BlockWorldConfig()
    """The env: env:blockworld (default) or env:minerl (README: Real Minecraft), then its --env.* options."""
    scene: str | None = None
    """A built-in scene name or a scene file applied at every reset."""
    n_episodes: int = 2
    """Episodes to record."""
    n_steps: int = 200
    """Steps per episode (an episode also ends when the env terminates it)."""
    n_envs: int = 2
    """Environments stepped in lockstep (one batched policy step per tick)."""
    env_workers: int = 0
    """Worker processes that step the envs in parallel (0: in this process), started once per run. The recorded data
    is the same for every value. Worth it with several envs at 640x360, where rendering dominates
    (benchmarks/env_workers.py)."""
    pipeline: bool = False
    """With --env-workers: step half the envs while the policy acts for the other half, so that the workers and the
    policy (and the recorder's own work) run at the same time instead of taking turns. The policy then runs two
    batches of half the size: a row's float rounding can differ in the last bits from an unpipelined recording's,
    as it can across --n-envs; the data are those of `--n-envs` halved without it at the same torch thread count
    (tests), the same at every run. Torch then gets the cores the workers leave (at least one thread)."""
    seed: int = 0
    """Episode i uses seed + i for the env and for the agent's sampling."""
    full_frames: bool = False
    """Also store the env's full-resolution frames."""
    hooks: tuple[str, ...] = DEFAULT_HOOKS
    """Activations to store (names or wildcards); attention patterns are always stored."""
    deterministic: bool = False
    """Take the most likely action instead of sampling (the released agents sample)."""
    prompt: str | None = None
    """STEVE-1: the goal as text, e.g. 'chop a tree' (MineCLIP's text encoder, then STEVE-1's prior); needs the
    zoo's mineclip-attn and steve1-prior files in --checkpoint-dir, or --mineclip and --prior."""
    goal_video: Path | None = None
    """STEVE-1: the goal as a 20 fps Minecraft clip, its last 16 frames embedded by MineCLIP (needs mineclip-attn)."""
    goal: Path | None = None
    """STEVE-1: the goal as a .npy file with a 512-d MineCLIP embedding computed elsewhere."""
    goal_seed: int = 0
    """STEVE-1 with --prompt: the seed of the prior's latent (a prompt and a seed always give the same goal)."""
    mineclip: Path | None = None
    """MineCLIP's checkpoint for --prompt or --goal-video (default: attn.pth in --checkpoint-dir)."""
    prior: Path | None = None
    """STEVE-1's prior for --prompt (default: steve1_prior.pt in --checkpoint-dir)."""
    cond_scale: float | None = None
    """STEVE-1: classifier-free guidance scale (STEVE-1 uses 6 with text goals, 7 with video goals)."""
    device: str = "cpu"
    """Torch device of the policy."""
    resume: bool = False
    """Keep complete episodes of an existing run and record the rest."""
    overwrite: bool = False
    """Delete an existing run in --out and record afresh."""
    flush_steps: int = 64
    """Steps buffered per episode between flushes (a multiple of 64)."""

    def __post_init__(self):
        given = [self.zoo is not None, self.model is not None or self.weights is not None, self.scripted is not None]
        if sum(given) != 1 or (given[1] and (self.model is None or self.weights is None)):
            raise ValueError("give the agent as --model and --weights, or as --zoo NAME (not both)")
        get_env_id(self.env)  # a TypeError for anything but an env config
        if self.resume and self.overwrite:
            raise ValueError("--resume keeps the existing run and --overwrite deletes it: pass one of them")
        if min(self.n_episodes, self.n_steps, self.n_envs) < 1:
            raise ValueError("n_episodes, n_steps and n_envs must be at least 1")
        if self.env_workers < 0:
            raise ValueError(f"--env-workers {self.env_workers}: give 0 (envs in this process) or a positive number")
        if self.env_workers and self.scripted is not None:
            raise ValueError("a scripted agent reads its env's state in this process: record it with --env-workers 0")
        if self.flush_steps < 64 or self.flush_steps % 64:
            raise ValueError(f"--flush-steps {self.flush_steps}: give a positive multiple of 64 (the chunk length)")
        if sum(x is not None for x in (self.prompt, self.goal_video, self.goal)) > 1:
            raise ValueError("give one STEVE-1 goal: --prompt, --goal-video or --goal (not several)")


class Recorder:
    """Records a run; `main(cfg)` is the command, this is the machinery (usable from Python)."""

    def __init__(
        self,
        cfg: RecordConfig,
        policy: VPTPolicy | None = None,
        *,
        fwd_hooks: list | tuple = (),
        intervention: dict | None = None,
        actor: Callable[[int], "Actor"] | None = None,
    ):
        """`fwd_hooks`: activation edits applied at every step (an intervention, `vptlens.interventions`), described
        by `intervention` (JSON-able) in every episode's metadata; a recording with edits replays only with them.
        `actor`: for a scripted agent (`cfg.scripted` names it), builds one `Actor` per episode from its seed."""
        if bool(fwd_hooks) != (intervention is not None):
            raise ValueError("pass fwd_hooks together with the intervention that describes them (or neither)")
        if (actor is None) != (cfg.scripted is None):
            raise ValueError("a scripted agent is recorded with Recorder(cfg with scripted=NAME, actor=factory)")
        self.cfg = cfg
        self.fwd_hooks = list(fwd_hooks)
        self.intervention = intervention
        # every check of the user's input comes before anything is written: the scene parsed once, for every env
        self.scene = None if cfg.scene is None else as_scene(cfg.scene)
        if hasattr(cfg.env, "command"):  # MineRL: its interpreter must exist before a run is started
            python = cfg.env.command()[0]
            if shutil.which(python) is None and not Path(python).is_file():
                raise FileNotFoundError(
                    f"the MineRL interpreter {python!r} does not exist; pass --env.python PATH "
                    "(`vptlens doctor minerl` checks the setup)"
                )
        self.actor = actor
        self.goal: Goal | None = None
        if any(x is not None for x in (cfg.prompt, cfg.goal_video, cfg.goal)):
            self.goal = make_goal(
                prompt=cfg.prompt,
                video=cfg.goal_video,
                embedding=cfg.goal,
                checkpoint_dir=cfg.checkpoint_dir,
                mineclip_path=cfg.mineclip,
                prior_path=cfg.prior,
                seed=cfg.goal_seed,
                device=cfg.device,
            )
        if actor is not None:
            self.policy, self.patterns, self.hooks = None, [], []
            self.agent_record = AgentRecord(scripted=cfg.scripted)
        else:
            # `policy` lets benchmarks pass one built in memory; it must carry `provenance`
            self.policy = policy if policy is not None else load_policy(*self.agent_files(), device=cfg.device)
            self.patterns = self.policy.select_hooks("blocks.*.attn.hook_pattern")
            self.hooks = [h for h in self.policy.select_hooks(list(cfg.hooks)) if h not in self.patterns]
            check_goal(self.policy, self.goal)
            self.agent_record = AgentRecord.from_dict(self.policy.provenance, "the policy's provenance")
        self.specs = episode_specs(self.policy, cfg, self.hooks)
        self.run_dir = Path(cfg.out)
        self.manifest_path = self.run_dir / "run.json"
        self.interrupted = False
        self.manifest: RunManifest | None = None
        self._writer: BlockWriter | None = None

    def agent_files(self) -> tuple[Path, Path]:
        return agent_files(self.cfg)

    # -------------------------------------------------------------- the run manifest

    def _load_or_start_manifest(self) -> RunManifest:
        cfg = self.cfg
        if self.manifest_path.exists():
            if not cfg.resume:
                raise FileExistsError(f"{self.run_dir} holds a run already; pass --resume to finish it, or a new --out")
            manifest = RunManifest.load(self.run_dir)
            self._check_resumable(manifest)
            self.agent_record = keep_agent_in_run(self.run_dir, self.agent_record)
            return manifest
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.agent_record = keep_agent_in_run(self.run_dir, self.agent_record)
        manifest = RunManifest(
            config=to_jsonable(cfg),
            agent=self.agent_record,
            package_version=vptlens.__version__,
            git_commit=git_commit(),
            created=now_iso(),
        )
        manifest.dump(self.run_dir)
        return manifest

    def _remove_existing_run(self) -> None:
        if not self.run_dir.exists():
            return
        if not self.run_dir.is_dir() or not (self.manifest_path.exists() or not any(self.run_dir.iterdir())):
            raise FileExistsError(
                f"{self.run_dir} exists and is not a vptlens run (no run.json): --overwrite deletes only runs; "
                "remove it yourself or pick another --out"
            )
        logger.info("--overwrite: removing the run in %s", self.run_dir)
        shutil.rmtree(self.run_dir)

    def episode_path(self, index: int) -> Path:
        return self.run_dir / f"episode_{index:06d}.zarr"

    def _check_resumable(self, manifest: RunManifest) -> None:
        """--resume adds episodes to a run only if they would be recorded exactly as its others were: the same agent
        files (sha256), env, scene, hooks, steps, seeds and sampling. Every difference is listed at once."""
        ignored = {"out", "resume", "overwrite", "device", "n_envs", "env_workers", "pipeline", "flush_steps"}
        ignored |= {"model", "weights", "zoo", "checkpoint_dir"}  # the agent is compared by its files' sha256 instead
        now = to_jsonable(self.cfg)
        problems = [
            f"{key}: the run has {manifest.config.get(key)!r}, now {now[key]!r}"
            for key in now
            if key not in ignored and manifest.config.get(key) != now[key]
        ]
        for kind in ("model", "weights"):
            before, after = getattr(manifest.agent, f"{kind}_sha256"), getattr(self.agent_record, f"{kind}_sha256")
            if before != after:
                problems.append(f"the {kind} file differs (sha256 {str(before)[:12]}... vs {str(after)[:12]}...)")
        if self.scene is not None or manifest.config.get("scene") is not None:
            recorded = next((e for e in self._episodes_on_disk() if e.status == "complete"), None)
            scene_now = None if self.scene is None else self.scene.to_dict()
            if recorded is not None and recorded.meta.scene != scene_now:
                problems.append("the scene's content differs from the one the run's episodes were recorded in")
        if problems:
            raise ValueError(
                f"--resume would mix two different recordings in {self.run_dir}: "
                + "; ".join(problems)
                + ". Resume with the run's own settings (see its run.json), or record into a new --out"
            )

    def _quarantine(self, path: Path, reason: str) -> None:
        """Move an episode this vpt-lens cannot read out of the run, with a note saying why (never delete it)."""
        quarantine = self.run_dir / "quarantine"
        quarantine.mkdir(exist_ok=True)
        target = quarantine / path.name
        n = 1
        while target.exists():
            target, n = quarantine / f"{path.name}.{n}", n + 1
        path.rename(target)
        target.with_name(target.name + ".why.txt").write_text(
            f"{path} could not be read by vpt-lens {vptlens.__version__} when the run was resumed ({now_iso()}):\n"
            f"{reason}\nIt was moved here untouched and the episode was recorded again from its seed.\n"
        )
        logger.warning("%s cannot be read (%s): moved to %s and recorded again", path.name, reason, target)

    def _episodes_on_disk(self) -> list[Episode]:
        episodes = []
        for path in sorted(self.run_dir.glob("episode_*.zarr")):
            try:
                episodes.append(Episode(path))
            except (ValueError, FileNotFoundError, KeyError):
                continue
        return episodes

    def _pending(self) -> list[int]:
        """The episodes still to record; the manifest repaired to what is on disk. An episode this vpt-lens cannot
        read (another schema version, damage) is never deleted: it is moved to `RUN/quarantine/` with the reason,
        and recorded again."""
        pending, redo, unreadable = [], [], []
        for i in range(self.cfg.n_episodes):
            path = self.episode_path(i)
            if not path.exists():
                pending.append(i)
                continue
            try:
                episode = Episode(path)
            except (ValueError, FileNotFoundError, KeyError) as e:
                if interrupted_at_creation(path):
                    redo.append(path)
                    pending.append(i)
                else:
                    unreadable.append((i, path, f"{type(e).__name__}: {e}"))
                continue
            if episode.status == "complete":
                entry = self.manifest.episodes.get(i)
                if entry is None or entry.status != "complete" or entry.length != len(episode):
                    # the manifest fell behind (killed between closing the episode and rewriting run.json)
                    self._set_episode(i, path=path.name, seed=episode.meta.seed, status="complete", length=len(episode))
                continue
            redo.append(path)  # partial or still "recording" (killed): record it again from its seed
            pending.append(i)
        for i, path, reason in unreadable:
            self._quarantine(path, reason)
            pending.append(i)
        pending.sort()
        for path in redo:
            shutil.rmtree(path)
        self.manifest.dump(self.run_dir)
        return pending

    # -------------------------------------------------------------- recording

    def run(self) -> dict:
        keep_freed_memory()  # the policy's temporaries stay paged in between steps (allocator.py)
        if self.cfg.overwrite:
            self._remove_existing_run()
        self.manifest = self._load_or_start_manifest()
        pending = self._pending()
        cfg = self.cfg
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        total = len(pending) * cfg.n_steps
        bar = tqdm(total=total, unit="step", desc="recording", disable=total == 0)
        start = time.perf_counter()
        # one background thread writes every episode's blocks, in order; at most two blocks per env queued
        self._writer = BlockWriter(max_pending=2 * cfg.n_envs + 4)
        envs = None
        threads = torch.get_num_threads()
        try:
            if pending:  # one pool for every wave: workers start once, each env is reset with its episode's seed
                envs = EnvPool(cfg.env, min(cfg.n_envs, len(pending)), cfg.env_workers, scene=self.scene)
            if cfg.pipeline and cfg.env_workers:
                # the policy now runs while the workers step: torch's threads on the cores they leave, not competing
                # with them (2 cores, 2 workers: 1 thread recorded 48-53 steps/s, 2 threads 39-42; RESULTS.md)
                torch.set_num_threads(max(1, min(threads, (os.cpu_count() or 1) - cfg.env_workers)))
            for wave in range(0, len(pending), cfg.n_envs):
                self._record_wave(pending[wave : wave + cfg.n_envs], envs, bar)
                if self.interrupted:
                    break
        finally:
            bar.close()
            try:
                self._writer.close()  # waits for everything handed over; raises WriterError if a write failed
            finally:
                signal.signal(signal.SIGTERM, previous)
                torch.set_num_threads(threads)
                if envs is not None:
                    envs.close()
        seconds = time.perf_counter() - start
        summary = self._summary(seconds)
        logger.info(summary["text"])
        return summary

    def _on_sigterm(self, signum, frame):
        raise KeyboardInterrupt

    def _set_episode(self, index: int, **changes) -> None:
        self.manifest = self.manifest.with_episode(index, **changes)

    def _save_manifest(self) -> None:
        """Rewrite run.json after the episode writes handed over so far (so it never runs ahead of them)."""
        snapshot = self.manifest  # frozen: later changes make a new one

        async def save() -> None:
            snapshot.dump(self.run_dir)

        self._writer.submit(save)

    def _record_wave(self, indices: list[int], envs: EnvPool, bar) -> None:
        """Record episodes `indices` on the pool's first envs. The envs are stepped in groups (`_groups`): a group's
        step is sent, then the other group's results are stored and its next actions decided while it runs."""
        cfg = self.cfg
        frame_size = frame_shape(self.policy)[:2]
        reason = "interrupted"
        n = len(indices)
        writers: list[EpisodeWriter | None] = []
        try:
            obs_list, infos = envs.reset([cfg.seed + index for index in indices], range(n))
            for info, index in zip(infos, indices):
                writers.append(
                    EpisodeWriter(
                        self.episode_path(index),
                        self.specs,
                        self._episode_attrs(index, info),
                        flush_steps=cfg.flush_steps,
                        writer=self._writer,
                        expected_steps=cfg.n_steps,
                    )
                )
                self._set_episode(index, path=self.episode_path(index).name, seed=cfg.seed + index, status="recording")
            self._save_manifest()
            groups = self._groups(n, envs)
            deciders = [
                self._policy_decider([indices[b] for b in group])
                if self.actor is None
                else self._scripted_decider([indices[b] for b in group], [envs.envs[b] for b in group])
                for group in groups
            ]
            events = [[] for _ in indices]

            def launch(g: int) -> tuple | None:
                """Decide group g's actions on its current frames and send the open envs' step."""
                group = groups[g]
                open_envs = [local for local, b in enumerate(group) if not writers[b].closed]
                if not open_envs:
                    return None
                frames = np.stack([preprocess_frames(obs_list[b]["pov"], frame_size) for b in group])
                actions, batch = deciders[g](frames, [infos[b] for b in group])
                sent = envs.step_async([actions[local] for local in open_envs], [group[local] for local in open_envs])
                return frames, actions, batch, open_envs, sent

            in_flight = [launch(g) for g in range(len(groups))]
            while any(in_flight):
                for g, flight in enumerate(in_flight):
                    if flight is None:
                        continue
                    frames, actions, batch, open_envs, sent = flight
                    for local, result in zip(open_envs, envs.wait(sent)):
                        b = groups[g][local]
                        self._store_step(writers[b], indices[b], local, frames, obs_list[b], infos[b], events[b],
                                         actions[local], batch, result)  # fmt: skip
                        bar.update(1)
                        obs_list[b], infos[b], events[b] = result[0], result[4], result[4].get("events", [])
                    in_flight[g] = launch(g)
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
            self._close_partial(writers, indices, reason=reason)

    def _groups(self, n: int, envs: EnvPool) -> list[list[int]]:
        """The wave's envs in the groups that take turns: with workers and --pipeline, the first and the second half
        (the pool deals envs to workers in turn, so each worker holds envs of both halves and has a step queued
        while the policy acts); otherwise one group (in this process nothing would overlap)."""
        if self.cfg.pipeline and envs.n_workers and n >= 2:
            return [list(range(n // 2)), list(range(n // 2, n))]
        return [list(range(n))]

    def _store_step(self, writer, index, local, frames, obs, info, events, action, batch, result) -> None:
        """Append one env's step (row `local` of its group's frames and batch) and close a finished episode."""
        _, reward, terminated, truncated, _ = result
        truncated = truncated or len(writer) + 1 >= self.cfg.n_steps
        step = self._step_values(local, frames, obs, info, events, action, batch)
        step.update(reward=np.float32(reward), terminated=np.bool_(terminated), truncated=np.bool_(truncated))
        writer.append(step)
        if terminated or truncated:
            writer.close("complete", n_steps=len(writer))
            self._set_episode(index, status="complete", length=len(writer))
            self._save_manifest()

    def _policy_decider(self, indices: list[int]) -> Callable:
        """`decide(frames, infos) -> (MineRL actions, stored values)` for a wave: one batched policy step a call,
        the memory kept inside."""
        cfg, policy, n = self.cfg, self.policy, len(indices)
        # one sampling stream per episode, so an episode's actions do not depend on its batch-mates; sampled on
        # the CPU from float32 heads, so the same seed gives the same actions whatever device the policy is on
        generators = [torch.Generator().manual_seed(cfg.seed + i) for i in indices]
        state = policy.initial_state(n, guided=cfg.cond_scale is not None)
        first = torch.ones(n, dtype=torch.bool)
        goal = None if self.goal is None else torch.from_numpy(np.tile(self.goal.embedding, (n, 1)))

        def decide(frames: np.ndarray, infos: list[dict]) -> tuple[list[dict], dict]:
            nonlocal state
            with policy.hooks(self.fwd_hooks) if self.fwd_hooks else contextlib.nullcontext():  # an intervention
                out, state, cache = policy.run_with_cache(
                    torch.from_numpy(frames), first, state, names=self.patterns + self.hooks, goal=goal,
                    cond_scale=cfg.cond_scale,
                )  # fmt: skip
            first[:] = False
            out = PolicyOutput(*(x.float().cpu() for x in vars(out).values()))  # one copy of the heads
            if cfg.deterministic:
                buttons, camera = sample_actions(out, deterministic=True)
            else:
                buttons, camera = sample_actions_per_row(out, generators)
            batch = self._batch_values(out, buttons, camera, cache)
            return factored_to_minerl(batch[S.action_array("buttons")], batch[S.action_array("camera")]), batch

        return decide

    def _scripted_decider(self, indices: list[int], envs: list) -> Callable:
        """`decide(frames, infos)` for a scripted agent: one actor per episode (seeded by it), acting on each env's
        state; its actions are stored with their classes in VPT's action space."""
        actors = [self.actor(self.cfg.seed + i) for i in indices]

        def decide(frames: np.ndarray, infos: list[dict]) -> tuple[list[dict], dict]:
            actions = [actor.act(env.unwrapped, info) for actor, env, info in zip(actors, envs, infos)]
            classes = [minerl_to_factored(a) for a in actions]
            return actions, {
                S.action_array("buttons"): np.concatenate([c[0] for c in classes]).astype(np.int32),
                S.action_array("camera"): np.concatenate([c[1] for c in classes]).astype(np.int32),
            }

        return decide

    def _close_partial(self, writers, indices, reason: str) -> None:
        """Hand over every open episode's tail and mark it partial (all written before run() returns)."""
        for writer, index in zip(writers, indices):
            if writer is not None and not writer.closed:
                self._set_episode(index, status="partial", length=len(writer))
                if self._writer.failed:
                    writer.abandon(reason="the episode writer failed (see the run's error)")
                else:
                    writer.close("partial", interrupted_by=reason, n_steps=len(writer))
        if self._writer.failed:
            # nothing more reaches the episodes; the manifest must not claim more than they hold
            for index in indices:
                if index in self.manifest.episodes and not is_complete(self.episode_path(index)):
                    self._set_episode(index, status="partial", length=committed_length(self.episode_path(index)))
            try:
                self.manifest.dump(self.run_dir)
            except OSError as e:  # the disk is full: run.json keeps its last state, which --resume repairs
                logger.warning("could not rewrite %s (%s)", self.manifest_path, e)
            self._writer.check()
        self._save_manifest()

    def _batch_values(self, out: PolicyOutput, buttons, camera, cache: dict) -> dict[str, np.ndarray]:
        """Everything the episodes store from the policy, as numpy (B, ...): `out` is on the CPU already, the cached
        activations come over in one device-to-host copy."""
        B = buttons.shape[0]
        h_buttons, h_camera = entropy(out)
        batch = {
            S.action_array("buttons"): buttons.numpy().astype(np.int32),
            S.action_array("camera"): camera.numpy().astype(np.int32),
            S.LOG_PROB: log_prob(out, buttons, camera).numpy(),
            S.entropy_array("buttons"): h_buttons.numpy(),
            S.entropy_array("camera"): h_camera.numpy(),
            S.VALUE: out.value.numpy(),
        }
        names = [S.attention_array(layer) for layer in range(len(self.patterns))]
        names += [S.activation_array(h) for h in self.hooks]
        # a guided (classifier-free) step caches 2B rows, conditional first: the episodes keep those
        tensors = [cache[n][:B] for n in self.patterns + self.hooks]
        flat = torch.cat([t.reshape(B, -1).to(torch.float16) for t in tensors], dim=1).cpu().numpy()
        offset = 0
        for name, t in zip(names, tensors):
            size = t[0].numel()
            batch[name] = flat[:, offset : offset + size].reshape(t.shape)
            offset += size
        return batch

    def _episode_attrs(self, index: int, info: dict) -> dict:
        cfg = self.cfg
        scene = None if self.scene is None else self.scene.to_dict()
        meta = EpisodeMeta(
            episode_index=index,
            seed=cfg.seed + index,
            agent=self.agent_record,
            policy_config={} if self.policy is None else self.policy.cfg.to_dict(),
            env=EnvRecord(id=get_env_id(cfg.env), settings=to_jsonable(get_env_settings(cfg.env))),
            env_reset_info=to_jsonable({k: v for k, v in info.items() if k != "events"}),
            scene=scene,
            record_config=to_jsonable(cfg),
            hooks=tuple(self.hooks),
            package_version=vptlens.__version__,
            git_commit=git_commit(),
            sampling=_sampling(cfg),
            goal=None if self.goal is None else tuple(float(x) for x in self.goal.embedding),
            goal_source=None if self.goal is None else self.goal.provenance,
            cond_scale=cfg.cond_scale,
            intervention=self.intervention,
        )
        return meta.to_dict()

    def _step_values(self, b: int, frames, obs: dict, info: dict, events: list, action: dict, batch: dict) -> dict:
        """Row b's values of one step (reward and the end flags are added by the caller)."""
        pose = info.get("pose", {})
        step = {name: values[b] for name, values in batch.items()}
        step.update(
            {
                S.FRAMES: frames[b],
                S.minerl_action_array("camera"): np.asarray(action["camera"], np.float32),
                S.ground_truth_array("pose"): np.array(
                    [pose.get(k, np.nan) for k in ("x", "y", "z", "pitch", "yaw")], np.float32
                ),
                S.ground_truth_array("crosshair"): json.dumps(info.get("crosshair")),
                S.ground_truth_array("nearest_log"): nearest_log_array(info.get("nearest_log")),
                S.ground_truth_array("visible_entities"): json.dumps(info.get("visible_entities", [])),
                S.ground_truth_array("events"): json.dumps(events),
            }
        )
        for key in MINERL_BUTTONS:
            step[S.minerl_action_array(key)] = np.uint8(action.get(key, 0))
        if self.cfg.full_frames:
            step[S.FRAMES_FULL] = obs["pov"]
        return step

    def _summary(self, seconds: float) -> dict:
        episodes = self.manifest.episodes.values()
        complete = sum(e.status == "complete" for e in episodes)
        steps = sum(e.length or 0 for e in episodes)
        disk = sum(f.stat().st_size for f in self.run_dir.rglob("*") if f.is_file())
        text = (
            f"{self.run_dir}: {complete}/{self.cfg.n_episodes} episodes complete, {steps} steps, "
            f"{disk / 1e6:.1f} MB on disk ({disk / max(steps, 1) / 1e3:.1f} kB/step), {seconds:.1f} s"
        )
        return {"complete": complete, "steps": steps, "disk_bytes": disk, "seconds": seconds, "text": text}


def _sampling(cfg: RecordConfig) -> str:
    if cfg.scripted is not None:
        return f"scripted ({cfg.scripted})"
    return "argmax" if cfg.deterministic else "sampled, temperature in logits"


def _caused_by_interrupt(e: BaseException) -> bool:
    """Whether a KeyboardInterrupt is in the exception's chain of causes."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def main(cfg: RecordConfig) -> dict:
    if cfg.scripted is not None:
        raise ValueError("--scripted is set by `vptlens train expert-demos`, which records the scripted expert")
    recorder = Recorder(cfg)
    summary = recorder.run()
    print(summary["text"])
    if recorder.interrupted:
        raise SystemExit(130)
    return summary
