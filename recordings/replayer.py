"""Replay a recorded episode through the agent that recorded it, with or without edits: the one way to do it.

`EpisodeReplayer(episode)` loads the recording's agent (sha256-checked against the episode's
provenance), its STEVE-1 goal and guidance scale, and feeds it the recorded frames with the
memory carried across blocks. Edits are TransformerLens-style `fwd_hooks`
(`[(hook_name, fn(x, *, hook) -> x | None)]`), so splicing an SAE, removing a latent's decoder
contribution, ablating a head or steering are all hooks passed here. Every replay checks
itself: the clean row must give each recorded action its recorded log-probability (within
`tolerance` nats), or the files, the preprocessing or the goal differ from the recording's and
any number computed from the replay would mean nothing.

Three ways in, by what the caller needs:
- `run(fwd_hooks, rows=R)`: the whole episode in blocks, R batch rows side by side (e.g. a clean
  row 0 and an edited row 1), yielding each block's outputs and cached activations.
- `states(steps)` then `step(t, state, rows=R, fwd_hooks=...)`: the clean memory before chosen
  steps, and one step from R copies of it (e.g. one row per SAE latent removed at that step).
- `step(..., frame=x)` under `torch.enable_grad()`: gradients with respect to the pixels (saliency).

Guided STEVE-1 episodes replay in step mode with classifier-free guidance, as recorded: a hook
then sees 2R rows, the R conditional rows first.
"""

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vptlens.agents import load_policy
from vptlens.agents.loading import sha256_file
from vptlens.agents.policy import PolicyOutput, PolicyState, VPTPolicy
from vptlens.recordings.schema import AGENT_DIR
from vptlens.recordings.store import Episode

logger = logging.getLogger(__name__)

HookFn = Callable[..., Tensor | None]
FwdHooks = Iterable[tuple[str, HookFn]]


class ReplayMismatch(ValueError):
    """The replay does not reproduce the recorded log-probabilities: not the agent, goal or frames of the recording."""


def load_recording_policy(
    episode: Episode, model_path: str | Path | None = None, weights_path: str | Path | None = None, device="cpu"
) -> VPTPolicy:
    """The policy that recorded `episode`, from the files its provenance names (or the ones given), sha256-checked.

    Activations spliced into a different network would give numbers that mean nothing, so a file
    whose sha256 differs from the recording's is refused.
    """
    agent = episode.meta.agent
    given = {"model": model_path, "weights": weights_path}
    paths = {}
    for kind in ("model", "weights"):
        recorded_path, expected = getattr(agent, f"{kind}_path"), getattr(agent, f"{kind}_sha256")
        if given[kind] is not None:
            path = Path(given[kind])
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no such {kind} file; pass the agent's --model and --weights files")
        else:
            path = _path_in_run(episode, recorded_path, kind)
        if expected is None and given[kind] is None:
            raise ValueError(
                f"{episode.path} records no sha256 for its {kind} file, so the file at {str(path)!r} cannot be "
                f"checked; if you know it is the agent that recorded the run, pass it explicitly with --{kind}"
            )
        if expected is None:
            logger.warning("%s records no sha256 for its %s file: %s is used as given", episode.path, kind, path)
        elif sha256_file(path) != expected:
            raise ValueError(
                f"{path}: sha256 differs from the {kind} file {episode.path} was recorded with ({expected[:12]}...); "
                f"pass the exact file the run was recorded with (--{kind})"
            )
        paths[kind] = path
    return load_policy(paths["model"], paths["weights"], device=device)


def _path_in_run(episode: Episode, recorded: str | None, kind: str) -> Path:
    """The agent file a recording names, resolved only inside its run (`RUN/agent/`, where the recorder keeps it):
    an absolute or `../` path in a run's provenance is never followed, so a run from elsewhere cannot make us read
    an arbitrary file."""
    fix = f"pass the agent's {kind} file with --{kind} PATH (its sha256 is checked against the recording's)"
    if recorded is None:
        raise FileNotFoundError(f"{episode.path} was recorded by a policy built in memory (no {kind} file); {fix}")
    run_dir = episode.path.parent.resolve()
    relative = Path(recorded)
    path = (run_dir / relative).resolve()
    if relative.is_absolute() or ".." in relative.parts or not path.is_relative_to(run_dir):
        raise FileNotFoundError(
            f"{episode.path} names its {kind} file {recorded[:200]!r}, outside its run; recorded paths are followed "
            f"only inside the run ({AGENT_DIR}/, where vpt-lens keeps the agent since version 0.1): {fix}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{episode.path}: its {kind} file {recorded[:200]!r} is missing from the run; {fix}")
    return path


def recorded_goal(episode: Episode) -> np.ndarray | None:
    """STEVE-1: the goal embedding the episode was recorded with, float32 (None for VPT)."""
    meta = episode.meta
    if meta.goal is not None:
        return np.asarray(meta.goal, np.float32)
    if (meta.record_config or {}).get("goal") is not None:  # recorded before the goal was stored in the episode
        raise ValueError(
            f"{episode.path} was recorded before episodes stored their STEVE-1 goal, and a recorded path is not "
            "followed outside its run: record it again with this version"
        )
    return None


@dataclass
class ReplayBlock:
    """Steps start..stop-1 of a replay: outputs (rows, t, ...) and the cached activations (rows, t, ...)."""

    start: int
    stop: int
    out: PolicyOutput
    cache: dict[str, Tensor]


class EpisodeReplayer:
    """An episode and the agent that recorded it, ready to be replayed with edits (see the module's docstring)."""

    def __init__(
        self,
        episode: Episode,
        *,
        policy: VPTPolicy | None = None,
        model_path: str | Path | None = None,
        weights_path: str | Path | None = None,
        device: str | torch.device = "cpu",
        tolerance: float | None = 1e-3,
        block_steps: int = 256,
        recorded_hooks: FwdHooks = (),
    ):
        """`policy`: one already loaded (the caller vouches that it is the recording's; the replay check still runs).
        `tolerance`: largest |replayed - recorded| log-probability accepted, nats (None: no check).
        `recorded_hooks`: for an episode recorded with an intervention (`episode.meta.intervention`), the same edits
        (`vptlens.interventions` rebuilds them): they are part of the agent that acted, applied under every replay."""
        if len(episode) == 0:
            raise ValueError(f"{episode.path} has no committed steps to replay")
        self.recorded_hooks = list(recorded_hooks)
        if episode.meta.intervention is not None and not self.recorded_hooks:
            raise ValueError(
                f"{episode.path} was recorded with an intervention ({episode.meta.intervention.get('kind', '?')}); "
                "replay it with the same edits (EpisodeReplayer(..., recorded_hooks=...), built by "
                "vptlens.interventions from the episode's metadata)"
            )
        self.episode = episode
        self.policy = policy if policy is not None else load_recording_policy(episode, model_path, weights_path, device)
        goal = recorded_goal(episode)
        if self.policy.cfg.is_goal_conditioned and goal is None:
            raise ValueError(f"{episode.path}: a STEVE-1 episode without its goal embedding cannot be replayed")
        self.goal = None if goal is None else torch.from_numpy(goal).to(self.policy.device, self.policy.dtype)
        self.cond_scale: float | None = episode.meta.cond_scale
        self.tolerance = tolerance
        self.max_error = 0.0
        """Largest |replayed - recorded| log-probability seen so far, nats."""
        array = episode.frames
        chunk = array.array.chunks[0]
        self._block = max(chunk, block_steps - block_steps % chunk)
        self._frames_at, self._frames = -1, None
        self._recorded = None
        if tolerance is not None and episode.has_policy_outputs:
            self._recorded = tuple(
                np.asarray(a[:]) for a in (episode.action("buttons"), episode.action("camera"), episode.log_prob)
            )

    def __len__(self) -> int:
        return len(self.episode)

    @property
    def guided(self) -> bool:
        return self.cond_scale is not None

    # ------------------------------------------------------------------ inputs

    def frames(self, start: int, stop: int) -> Tensor:
        """Recorded frames start..stop-1, (t, h, w, 3) uint8 (the policy's input size) on the policy's device (read
        a block at a time)."""
        if not 0 <= start <= stop <= len(self):
            raise IndexError(f"steps {start}..{stop} out of range: {self.episode.path} has {len(self)} steps")
        parts = []
        a = start
        while a < stop:
            block_start = a // self._block * self._block
            if block_start != self._frames_at:
                self._frames_at = block_start
                self._frames = np.asarray(self.episode.frames[block_start : block_start + self._block])
            b = min(stop, block_start + self._block)
            parts.append(self._frames[a - block_start : b - block_start])
            a = b
        data = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return torch.from_numpy(np.ascontiguousarray(data)).to(self.policy.device)

    def initial_state(self, rows: int = 1) -> PolicyState:
        return self.policy.initial_state(rows, guided=self.guided)

    def _goal(self, rows: int) -> Tensor | None:
        return None if self.goal is None else self.goal.expand(rows, -1)

    # ------------------------------------------------------------------ the replay check

    def check(self, out: PolicyOutput, start: int, stop: int, row: int = 0) -> float:
        """Compare row `row` of `out` (steps start..stop-1, (rows, t, ...) or (rows, ...) for one step) with the
        recorded log-probabilities; raise `ReplayMismatch` beyond the tolerance. Returns the largest error."""
        if self._recorded is None:
            return 0.0
        buttons, camera, recorded = (r[start:stop] for r in self._recorded)
        b_logits, c_logits = out.buttons_logits[row], out.camera_logits[row]
        if b_logits.ndim == 1:
            b_logits, c_logits = b_logits[None], c_logits[None]
        b_logits, c_logits = b_logits.double().cpu(), c_logits.double().cpu()
        replayed = b_logits.gather(-1, torch.from_numpy(buttons.astype(np.int64))[:, None])[:, 0]
        replayed = replayed + c_logits.gather(-1, torch.from_numpy(camera.astype(np.int64))[:, None])[:, 0]
        error = float((torch.from_numpy(recorded.astype(np.float64)) - replayed).abs().max())
        self.max_error = max(self.max_error, error)
        if error > self.tolerance:
            raise ReplayMismatch(
                f"{self.episode.path} steps {start}..{stop - 1}: replaying the recorded frames gives the recorded "
                f"actions log-probabilities {error:.3g} nats away from the recorded ones; the policy (or goal) is not "
                "the one that recorded the run (pass the exact --model and --weights files it was recorded with)"
            )
        return error

    # ------------------------------------------------------------------ replays

    def run(
        self,
        fwd_hooks: FwdHooks = (),
        *,
        rows: int = 1,
        names: str | list[str] = (),
        stop: int | None = None,
        check_row: int | None = 0,
        row_frames: Callable[[int, int], Tensor] | None = None,
    ) -> Iterator[ReplayBlock]:
        """Replay steps 0..stop-1 in blocks, `rows` batch rows all fed the recorded frames, `fwd_hooks` applied
        throughout (they see every row: edit some, leave the others clean); yields each block's outputs and the
        activations named by `names` (wildcards allowed). Row `check_row` must reproduce the recording (None: no
        row is clean). `row_frames(start, stop)`: other frames per row, (rows, t, h, w, c) uint8 (e.g. row 1 the
        counterfactual frames of the same poses in another scene); not with guidance."""
        if row_frames is not None and self.guided:
            raise ValueError("row_frames is not supported for guided STEVE-1 replays (one frame per step is guided)")
        policy = self.policy
        stop = len(self) if stop is None else min(stop, len(self))
        state = self.initial_state(rows)
        names = list(names) if not isinstance(names, str) else [names]
        with torch.no_grad():
            for start in range(0, stop, self._block):
                end = min(stop, start + self._block)
                frames = self.frames(start, end)
                if not self.guided:
                    frames_bt = frames.unsqueeze(0).expand(rows, *frames.shape)
                    if row_frames is not None:
                        frames_bt = torch.as_tensor(row_frames(start, end), device=policy.device)
                        if frames_bt.shape != (rows, *frames.shape):
                            raise ValueError(f"row_frames gave {tuple(frames_bt.shape)}, not {(rows, *frames.shape)}")
                    first = torch.zeros(frames_bt.shape[:2], dtype=torch.bool, device=policy.device)
                    first[:, 0] = start == 0
                    with policy.hooks([*self.recorded_hooks, *fwd_hooks]):
                        out, state, cache = policy.run_with_cache(frames_bt, first, state, names, self._goal(rows))
                else:
                    steps = []
                    for t in range(start, end):
                        out_t, state, cache_t = self._guided_step(t, frames[t - start], state, rows, fwd_hooks, names)
                        steps.append((out_t, cache_t))
                    out = PolicyOutput(*(torch.stack(parts, 1) for parts in zip(*(vars(o).values() for o, _ in steps))))
                    cache = {n: torch.stack([c[n] for _, c in steps], 1) for n in (steps[0][1] if steps else {})}
                if check_row is not None:
                    self.check(out, start, end, check_row)
                yield ReplayBlock(start, end, out, cache)

    def _guided_step(self, t, frame, state, rows, fwd_hooks, names):
        first = torch.full((rows,), t == 0, dtype=torch.bool, device=self.policy.device)
        frames = frame.unsqueeze(0).expand(rows, *frame.shape)
        with self.policy.hooks([*self.recorded_hooks, *fwd_hooks]):
            return self.policy.run_with_cache(frames, first, state, names, self._goal(rows), self.cond_scale)

    def states(self, steps: Iterable[int]) -> Iterator[tuple[int, PolicyState]]:
        """The clean memory just before each of `steps` (ascending; one row, or the guided pair), replaying only as far
        as needed. The recording is checked on the way."""
        policy = self.policy
        state, pos = self.initial_state(1), 0
        for t in sorted(set(int(s) for s in steps)):
            if not 0 <= t < len(self):
                raise IndexError(f"step {t} out of range: {self.episode.path} has {len(self)} steps")
            with torch.no_grad():
                for a in range(pos, t, self._block):
                    b = min(t, a + self._block)
                    frames = self.frames(a, b)
                    if self.guided:
                        for i in range(a, b):
                            out, state = self.step(i, state)
                            self.check(out, i, i + 1)
                    else:
                        first = torch.zeros((1, b - a), dtype=torch.bool, device=policy.device)
                        first[0, 0] = a == 0
                        with policy.hooks(self.recorded_hooks):
                            out, state = policy.forward(frames[None], first, state, self._goal(1))
                        self.check(out, a, b)
            pos = t
            yield t, state

    def step(
        self,
        t: int,
        state: PolicyState,
        *,
        rows: int = 1,
        fwd_hooks: FwdHooks = (),
        frame: Tensor | None = None,
    ) -> tuple[PolicyOutput, PolicyState]:
        """Step t from `rows` copies of a one-row `state` (as `states()` yields), `fwd_hooks` applied; outputs
        (rows, ...).

        `frame`: the frame to use instead of the recorded one, (h, w, c), float for gradients (then call under
        `torch.enable_grad()`; the memory is used as given, so gradients reach this frame only).
        """
        policy = self.policy
        if state.batch_size != (2 if self.guided else 1) * rows:
            if self.guided:  # [cond..., uncond...]
                state = PolicyState.cat([state.select([0])] * rows + [state.select([1])] * rows)
            else:
                state = PolicyState.cat([state] * rows)
        frame = self.frames(t, t + 1)[0] if frame is None else frame
        frames = frame.unsqueeze(0).expand(rows, *frame.shape)
        first = torch.full((rows,), t == 0, dtype=torch.bool, device=policy.device)
        with policy.hooks([*self.recorded_hooks, *fwd_hooks]):
            if torch.is_grad_enabled():
                return policy._step(frames, first, state, self._goal(rows), self.cond_scale)
            return policy.step(frames, first, state, self._goal(rows), self.cond_scale)
