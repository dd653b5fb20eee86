"""Edits through a direction: SAE latent clamping (the SAE's error term kept) and steering along a vector.

Both act on hooks laid out (b, t, ...), the trailing dims flattened to the SAE's / vector's width (d for the
residual stream, n*k for hook_z). See `edits.py` for the conventions every edit shares.
"""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
from torch import Tensor

from vptlens.agents.policy import VPTPolicy
from vptlens.interventions.edit_ops import Edit, FwdHooks, feature_width, hook_problems, n_features, sae_problems
from vptlens.probes.sae.model import SAE


@dataclass(frozen=True)
class LatentClamp(Edit):
    """Clamp or scale SAE latents at the SAE's hook, keeping the SAE's error term (as saev does):
    x -> x + (z' - z) @ W_dec[latents]; x is never replaced by the reconstruction, so a latent whose value does
    not change (e.g. one that never fires, clamped to 0) changes nothing, bit for bit."""

    kind: ClassVar[str] = "latent_clamp"
    sae_dir: Path
    """An SAE directory written by `vptlens sae train` (its cfg.json names the hook)."""
    latents: tuple[int, ...]
    """Latent indices to edit."""
    value: float | None = None
    """Set the latents to this value (z' = value)."""
    scale: float | None = None
    """Or multiply them by this (z' = scale * z)."""

    def __post_init__(self):
        if not self.latents or any(i < 0 for i in self.latents):
            raise ValueError(f"latents must be a non-empty list of indices >= 0, got {self.latents}")
        if (self.value is None) == (self.scale is None):
            raise ValueError("give exactly one of value (clamp to it) and scale (multiply by it)")
        number = self.value if self.value is not None else self.scale
        if not math.isfinite(number):
            raise ValueError(f"value/scale must be finite, got {number}")

    def validate(self, policy: VPTPolicy) -> list[str]:
        problems, sae = sae_problems(policy, self.sae_dir)
        if sae is not None:
            bad = [i for i in self.latents if i >= sae.cfg.d_sae]
            if bad:
                problems.append(f"latents {bad}: {self.sae_dir} has latents 0..{sae.cfg.d_sae - 1}")
        return problems

    def _make_hooks(self, policy: VPTPolicy) -> FwdHooks:
        sae = SAE.load(self.sae_dir, device=str(policy.device)).requires_grad_(False)
        idx = torch.tensor(self.latents, device=policy.device)
        W_dec = sae.W_dec.detach()[idx]

        def clamp(x: Tensor, *, hook) -> Tensor:
            xs = x.reshape(*x.shape[: x.ndim - n_features(hook)], -1).to(W_dec.dtype)
            z = sae.encode(xs)[..., idx]
            z_new = torch.full_like(z, self.value) if self.value is not None else z * self.scale
            delta = (z_new - z) @ W_dec
            return torch.where(delta != 0, xs + delta, xs).to(x.dtype).reshape(x.shape)

        return [(sae.cfg.hook_name, clamp)]

    def describe(self) -> str:
        how = f"to {self.value:g}" if self.value is not None else f"x {self.scale:g}"
        return f"clamp SAE latents {', '.join(map(str, self.latents))} of {Path(self.sae_dir).name} {how}"


@dataclass(frozen=True)
class Steering(Edit):
    """Add strength * v at a hook, or remove `strength` x the component along v (1 = all of it)."""

    kind: ClassVar[str] = "steering"
    hook: str
    """Hook laid out (b, t, ...), e.g. "blocks.1.hook_resid_post"."""
    strength: float
    """add: the multiple of v added; project_out: the fraction of the component along v removed."""
    vector_path: Path | None = None
    """A .npy vector of the hook's width (e.g. a probe's direction)."""
    sae_dir: Path | None = None
    """Or an SAE trained on `hook`, whose decoder row `latent` is v."""
    latent: int | None = None
    """The SAE latent (with sae_dir)."""
    mode: Literal["add", "project_out"] = "add"
    """"add" or "project_out" (v unit-normalised)."""

    def __post_init__(self):
        if not math.isfinite(self.strength):
            raise ValueError(f"strength must be finite, got {self.strength}")
        if (self.vector_path is None) == (self.sae_dir is None):
            raise ValueError("give exactly one of vector_path (a .npy) and sae_dir (with latent)")
        if (self.sae_dir is None) != (self.latent is None):
            raise ValueError("latent goes with sae_dir (the decoder row to steer along), and only with it")
        if self.latent is not None and self.latent < 0:
            raise ValueError(f"latent must be >= 0, got {self.latent}")
        if self.mode not in ("add", "project_out"):
            raise ValueError(f'mode must be "add" or "project_out", got {self.mode!r}')

    def vector(self, policy: VPTPolicy) -> Tensor:
        """v, flat, float32 on the policy's device (unit norm for project_out)."""
        if self.vector_path is not None:
            v = torch.from_numpy(np.load(self.vector_path, allow_pickle=False).astype(np.float32).reshape(-1))
        else:
            v = SAE.load(self.sae_dir).W_dec.detach()[self.latent].float()
        if self.mode == "project_out":
            v = v / v.norm()
        return v.to(policy.device)

    def validate(self, policy: VPTPolicy) -> list[str]:
        problems = hook_problems(policy, self.hook, "steering")
        width = None if problems else feature_width(policy, self.hook)
        if self.sae_dir is not None:
            sae_problem, sae = sae_problems(policy, self.sae_dir, hook=self.hook)
            problems += sae_problem
            if sae is not None and self.latent >= sae.cfg.d_sae:
                problems.append(f"latent {self.latent}: {self.sae_dir} has latents 0..{sae.cfg.d_sae - 1}")
        elif not Path(self.vector_path).is_file():
            problems.append(f"{self.vector_path} not found; pass a .npy vector of the hook's width")
        else:
            try:
                v = np.load(self.vector_path, allow_pickle=False)
            except ValueError as e:
                problems.append(f"{self.vector_path}: not a readable .npy ({e})")
            else:
                if width is not None and v.size != width:
                    problems.append(f"{self.vector_path}: a vector of {v.size} values, {self.hook} has width {width}")
                elif not np.all(np.isfinite(v)) or (self.mode == "project_out" and not np.any(v)):
                    problems.append(f"{self.vector_path}: the vector must be finite (and nonzero for project_out)")
        return problems

    def _make_hooks(self, policy: VPTPolicy) -> FwdHooks:
        v = self.vector(policy)

        def steer(x: Tensor, *, hook) -> Tensor:
            flat = x.reshape(*x.shape[: x.ndim - n_features(hook)], -1)
            u = v.to(flat.dtype)
            if self.mode == "add":
                return (flat + self.strength * u).reshape(x.shape)
            return (flat - self.strength * (flat @ u)[..., None] * u).reshape(x.shape)

        return [(self.hook, steer)]

    def describe(self) -> str:
        source = (
            Path(self.vector_path).name if self.vector_path else f"SAE {Path(self.sae_dir).name} latent {self.latent}"
        )
        verb = f"add {self.strength:g} x v" if self.mode == "add" else f"project out {self.strength:g} x v"
        return f"steer {self.hook}: {verb} (v from {source})"
