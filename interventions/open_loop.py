"""Open-loop effect of an edit: replay a recorded episode clean and edited side by side, compare the actions.

The `EpisodeReplayer` feeds the recorded frames to two batch rows of one forward pass: row 0 untouched
(and checked against the recording), row 1 with the edit's hooks (wrapped by `only_rows` so they see that
row alone, as `probes/sae/splice.py` does). The edit flows into row 1's memory, so an edit at step t
changes every later step; the frames stay the recorded ones (open loop: the agent's changed actions do not
change what it sees). Per step:

- `d_p_attack`: P_edited(attack) - P_clean(attack), P(attack) being the total probability of the button
  classes that press attack (`agents.actions.class_to_buttons`);
- `kl_buttons`, `kl_camera`: KL(clean || edited) of each head, nats (`probes.sae.splice.kl_divergence`).
"""

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from vptlens.agents.actions import VPT_BUTTONS, class_to_buttons
from vptlens.agents.hooks import HookFn
from vptlens.agents.policy import N_BUTTON_CLASSES, VPTPolicy
from vptlens.interventions.edit_ops import Edit
from vptlens.probes.sae.splice import kl_divergence
from vptlens.recordings.replayer import EpisodeReplayer
from vptlens.recordings.store import Episode

ATTACK_CLASSES = class_to_buttons(np.arange(N_BUTTON_CLASSES))[0][:, VPT_BUTTONS.index("attack")]
"""(8641,) bool: the joint button classes that press attack."""


def p_attack(buttons_logits: Float[Tensor, "*b a"]) -> Float[Tensor, "*b"]:
    """P(attack) from button log-probabilities, float64: the mass of the classes that press attack."""
    mask = torch.as_tensor(ATTACK_CLASSES, device=buttons_logits.device)
    logp = buttons_logits.double()
    logp = logp - logp.logsumexp(-1, keepdim=True)
    return logp[..., mask].logsumexp(-1).exp()


def only_rows(fwd_hooks: Iterable[tuple[str, HookFn]], n_groups: int = 2, edited: int = 1) -> list[tuple[str, HookFn]]:
    """Wrap hook functions so they see (and edit) only row `edited` of each group of `n_groups` batch rows.

    With `EpisodeReplayer.run(rows=2)` the batch is [clean, edited]; a guided STEVE-1 step has 2 x rows, the
    conditional rows first, so the wrapped function then sees the edited (cond, uncond) pair.
    """

    def wrap(fn: HookFn) -> HookFn:
        def on_rows(x: Tensor, *, hook) -> Tensor | None:
            groups = x.reshape(x.shape[0] // n_groups, n_groups, *x.shape[1:])
            rows = groups[:, edited]
            out = fn(rows, hook=hook)
            if out is None:
                return None
            if out.shape != rows.shape:
                raise ValueError(f"hook on {hook.name} returned shape {tuple(out.shape)}, expected {tuple(rows.shape)}")
            groups = groups.clone()
            groups[:, edited] = out.to(x.dtype)
            return groups.reshape(x.shape)

        return on_rows

    return [(name, wrap(fn)) for name, fn in fwd_hooks]


@dataclass(frozen=True)
class OpenLoopResult:
    """Per-step effects of an edit on a recorded episode (arrays of shape (n_steps,)) and their means."""

    episode: str
    """The episode's path."""
    p_attack_clean: np.ndarray
    """P(attack) of the clean replay."""
    d_p_attack: np.ndarray
    """P_edited(attack) - P_clean(attack)."""
    kl_buttons: np.ndarray
    """KL(clean || edited) of the button head, nats."""
    kl_camera: np.ndarray
    """KL(clean || edited) of the camera head, nats."""
    replay_max_abs_logprob_error: float
    """Largest |recorded - replayed| log-probability of the actions taken, on the clean row."""

    @property
    def n_steps(self) -> int:
        return len(self.d_p_attack)

    @property
    def mean_d_p_attack(self) -> float:
        return float(self.d_p_attack.mean())

    @property
    def mean_kl_buttons(self) -> float:
        return float(self.kl_buttons.mean())

    @property
    def mean_kl_camera(self) -> float:
        return float(self.kl_camera.mean())

    @property
    def mean_kl_total(self) -> float:
        """Mean KL of the joint action: the heads are independent given the state, so their KLs add."""
        return self.mean_kl_buttons + self.mean_kl_camera

    def means(self) -> dict[str, float]:
        return {
            "d_p_attack": self.mean_d_p_attack,
            "abs_d_p_attack": float(np.abs(self.d_p_attack).mean()),
            "kl_buttons": self.mean_kl_buttons,
            "kl_camera": self.mean_kl_camera,
            "kl_total": self.mean_kl_total,
        }

    def to_dict(self) -> dict:
        return {
            "episode": self.episode,
            "n_steps": self.n_steps,
            "means": self.means(),
            "p_attack_clean": self.p_attack_clean.tolist(),
            "d_p_attack": self.d_p_attack.tolist(),
            "kl_buttons": self.kl_buttons.tolist(),
            "kl_camera": self.kl_camera.tolist(),
            "replay_max_abs_logprob_error": self.replay_max_abs_logprob_error,
        }


def open_loop_effect(
    episode: Episode | str | Path,
    fwd_hooks: Iterable[tuple[str, HookFn]] | Edit,
    *,
    policy: VPTPolicy | None = None,
    stop: int | None = None,
    block_steps: int = 256,
    tolerance: float | None = 1e-3,
) -> OpenLoopResult:
    """Replay `episode` (steps 0..stop-1) clean and with `fwd_hooks` (or an `Edit`, whose hooks are built for
    the policy) side by side; per-step change in P(attack) and KL of both heads.

    `policy`: the recording's policy already loaded (otherwise loaded from the episode's provenance,
    sha256-checked). Raises `ReplayMismatch` when the clean row does not reproduce the recording within
    `tolerance` nats.
    """
    episode = episode if isinstance(episode, Episode) else Episode(episode)
    replayer = EpisodeReplayer(episode, policy=policy, tolerance=tolerance, block_steps=block_steps)
    hooks = fwd_hooks.hooks(replayer.policy) if isinstance(fwd_hooks, Edit) else list(fwd_hooks)
    p_clean, d_p, kl_b, kl_c = [], [], [], []
    for block in replayer.run(only_rows(hooks), rows=2, stop=stop):
        b, c = block.out.buttons_logits, block.out.camera_logits
        p = p_attack(b)
        p_clean.append(p[0])
        d_p.append(p[1] - p[0])
        kl_b.append(kl_divergence(b[0], b[1]))
        kl_c.append(kl_divergence(c[0], c[1]))
    as_np = lambda parts: torch.cat(parts).cpu().numpy()
    return OpenLoopResult(
        episode=str(episode.path),
        p_attack_clean=as_np(p_clean),
        d_p_attack=as_np(d_p),
        kl_buttons=as_np(kl_b),
        kl_camera=as_np(kl_c),
        replay_max_abs_logprob_error=replayer.max_error,
    )
