"""What happens to behaviour when an activation is replaced inside the policy (an SAE's reconstruction, its mean).

The recorded episode is replayed through the policy that recorded it twice side by side, as
two batch rows of one forward pass: row 0 untouched, row 1 with the hook's activation replaced
at every step (so the replacement also flows into the memory, as a spliced-in SAE would).
The divergence of row 1's action distribution from row 0's, per step, is the cost of the
replacement: KL(clean || spliced) of the button head and of the camera head, in nats.

Replaying row 0 also checks the run: the log-probability it gives to each recorded action must
equal the recorded `log_prob`; a mismatch means the policy files or the preprocessing differ
from the recording's, and the KL numbers would mean nothing.
"""

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from vptlens.agents.policy import VPTPolicy
from vptlens.probes.runs import episode_goal
from vptlens.recordings.store import Episode

logger = logging.getLogger(__name__)

Replace = Callable[[Tensor], Tensor]
"""Maps the hook's activation (b, t, ...) to its replacement, same shape."""


def kl_divergence(logp: Float[Tensor, "*b n"], logq: Float[Tensor, "*b n"]) -> Float[Tensor, "*b"]:
    """KL(p || q) in nats from log-probabilities; computed in float64, terms with p = 0 count 0.

    Both are renormalised in float64 first, so float32 rounding cannot make the KL negative.
    """
    logp, logq = logp.double(), logq.double()
    logp, logq = logp - logp.logsumexp(-1, keepdim=True), logq - logq.logsumexp(-1, keepdim=True)
    p = logp.exp()
    return torch.where(p > 0, p * (logp - logq), torch.zeros_like(p)).sum(-1)


@dataclass(frozen=True)
class SpliceResult:
    """KL of each head per episode (mean over its steps) and overall (mean over all steps)."""

    kl_buttons: float
    kl_camera: float
    per_episode_buttons: tuple[float, ...]
    per_episode_camera: tuple[float, ...]
    n_steps: int
    replay_max_abs_logprob_error: float
    """Largest |recorded log_prob - replayed log_prob| of the actions taken (should be ~1e-5)."""

    @property
    def kl_total(self) -> float:
        """KL of the joint action distribution: the heads are independent given the state, so KLs add."""
        return self.kl_buttons + self.kl_camera

    def ci95(self, head: str = "total") -> tuple[float, float]:
        """95% t-interval of the per-episode mean KL (episodes are the independent units)."""
        values = {
            "buttons": np.array(self.per_episode_buttons),
            "camera": np.array(self.per_episode_camera),
            "total": np.array(self.per_episode_buttons) + np.array(self.per_episode_camera),
        }[head]
        mean = float(values.mean())
        if len(values) < 2:
            return (math.nan, math.nan)
        half = _t975(len(values) - 1) * float(values.std(ddof=1)) / math.sqrt(len(values))
        return (mean - half, mean + half)

    def to_dict(self) -> dict:
        return {
            "kl_buttons": self.kl_buttons,
            "kl_camera": self.kl_camera,
            "kl_total": self.kl_total,
            "kl_total_ci95": list(self.ci95("total")),
            "per_episode_buttons": list(self.per_episode_buttons),
            "per_episode_camera": list(self.per_episode_camera),
            "n_steps": self.n_steps,
            "n_episodes": len(self.per_episode_buttons),
            "replay_max_abs_logprob_error": self.replay_max_abs_logprob_error,
        }


def _t975(dof: int) -> float:
    """The 97.5% quantile of Student's t (table for small dof, normal beyond)."""
    table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}
    table |= {15: 2.131, 20: 2.086, 30: 2.042, 60: 2.000}
    if dof in table:
        return table[dof]
    larger = [d for d in table if d > dof]
    return table[min(larger)] if larger else 1.960


@torch.no_grad()
def splice_kl(
    policy: VPTPolicy,
    episodes: list[Episode],
    hook_name: str,
    replace: Replace,
    block_steps: int = 512,
    max_steps_per_episode: int | None = None,
    logprob_tolerance: float = 1e-3,
) -> SpliceResult:
    """Replay `episodes` with `hook_name`'s activation replaced by `replace(x)`; KL of each action head.

    Episodes are read in blocks of `block_steps` frames (the memory carried across blocks), so
    a long episode never sits in memory whole. Raises ValueError when the clean replay does not
    reproduce the recorded log-probabilities within `logprob_tolerance` nats.
    """
    if hook_name not in policy.hook_names:
        raise KeyError(f"the policy has no hook {hook_name!r}; `vptlens info` lists them")

    def fn(x: Tensor, *, hook) -> Tensor:
        spliced = replace(x[1:])
        if spliced.shape != x[1:].shape:
            shapes = f"{tuple(spliced.shape)}, not {tuple(x[1:].shape)}"
            raise ValueError(f"the replacement of {hook_name} has shape {shapes}")
        return torch.cat([x[:1], spliced.to(x.dtype)])

    per_b, per_c, n_total, worst = [], [], 0, 0.0
    for episode in episodes:
        n = len(episode) if max_steps_per_episode is None else min(len(episode), max_steps_per_episode)
        guided = (episode.attrs.get("record_config") or {}).get("cond_scale") is not None
        if guided:
            logger.warning("%s was recorded with classifier-free guidance: the replay check is skipped", episode.path)
        goal = episode_goal(episode)
        goal_t = None if goal is None else torch.from_numpy(goal).to(policy.device, policy.dtype).expand(2, -1)
        state = policy.initial_state(2)
        sum_b = sum_c = 0.0
        for start in range(0, n, block_steps):
            stop = min(n, start + block_steps)
            frames = torch.from_numpy(np.asarray(episode["frames"][start:stop])).to(policy.device)
            frames = frames.unsqueeze(0).expand(2, -1, -1, -1, -1)
            first = torch.zeros(frames.shape[:2], dtype=torch.bool, device=policy.device)
            first[:, 0] = start == 0
            with policy.hooks([(hook_name, fn)]):
                out, state = policy.forward(frames, first, state, goal_t)
            sum_b += float(kl_divergence(out.buttons_logits[0], out.buttons_logits[1]).sum())
            sum_c += float(kl_divergence(out.camera_logits[0], out.camera_logits[1]).sum())
            if not guided:
                worst = max(worst, _replay_error(episode, out, start, stop))
        if worst > logprob_tolerance:
            raise ValueError(
                f"{episode.path}: replaying the recorded frames gives log-probabilities of the recorded actions "
                f"{worst:.3g} nats away from the recorded ones; the policy is not the one that recorded the run "
                "(pass the exact .model and .weights files it was recorded with)"
            )
        per_b.append(sum_b / n)
        per_c.append(sum_c / n)
        n_total += n
        logger.info("%s: KL buttons %.4g, camera %.4g over %d steps", episode.path.name, per_b[-1], per_c[-1], n)
    weights = np.array([min(len(e), max_steps_per_episode or len(e)) for e in episodes], np.float64)
    return SpliceResult(
        kl_buttons=float(np.dot(per_b, weights) / weights.sum()),
        kl_camera=float(np.dot(per_c, weights) / weights.sum()),
        per_episode_buttons=tuple(per_b),
        per_episode_camera=tuple(per_c),
        n_steps=n_total,
        replay_max_abs_logprob_error=worst,
    )


def _replay_error(episode: Episode, out, start: int, stop: int) -> float:
    """Largest |recorded - replayed| log-probability of the actions taken in steps start..stop."""
    if "log_prob" not in episode or "action/buttons" not in episode:
        return 0.0
    buttons = torch.from_numpy(np.asarray(episode["action/buttons"][start:stop], np.int64))
    camera = torch.from_numpy(np.asarray(episode["action/camera"][start:stop], np.int64))
    replayed = out.buttons_logits[0].double().cpu().gather(-1, buttons[:, None])[:, 0]
    replayed = replayed + out.camera_logits[0].double().cpu().gather(-1, camera[:, None])[:, 0]
    recorded = torch.from_numpy(np.asarray(episode["log_prob"][start:stop], np.float64))
    return float((recorded - replayed).abs().max())


def activation_mean(episodes: list[Episode], hook_name: str, block_steps: int = 4096) -> np.ndarray:
    """Mean of a recorded activation over every step of `episodes`, accumulated in float64."""
    name = f"activations/{hook_name}"
    total, count = None, 0
    for episode in episodes:
        array = episode[name]
        for start in range(0, len(array), block_steps):
            block = np.asarray(array[start : start + block_steps], np.float64)
            total = block.sum(0) if total is None else total + block.sum(0)
            count += len(block)
    if total is None or count == 0:
        raise ValueError(f"no recorded steps of {name} to average")
    return total / count
