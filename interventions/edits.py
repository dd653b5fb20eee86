"""Activation edits as data: each edit a frozen dataclass that checks itself against a policy and becomes
TransformerLens-style `fwd_hooks` (`[(hook_name, fn(x, *, hook) -> x | None)]`) for `policy.hooks(...)` or the
`EpisodeReplayer`.

    edit = HeadAblation(heads=("2.5", "3.*"))
    problems = edit.validate(policy)       # every problem at once, [] when the edit fits the policy
    with policy.hooks(edit.hooks(policy)):  # hooks() raises ValueError listing them
        out, state = policy.step(frames, first, state)

Conventions (see `agents/policy.py`):
- `blocks.L.attn.hook_z` is (b, t, n, k), (b, n, k) in step mode: the head axis is always -2.
- `blocks.L.attn.hook_scores` is laid out by lag, (b, n, t, M+1), (b, n, M+1) in step mode: the last column is
  the current frame, column M-k is k frames back; masked keys are -inf. `vptlens attention`'s attention.json
  lists profiles in lag order instead (index k = k frames back): `KeyFrameMask` flips them.
- SAE, steering and patching edits act on hooks laid out (b, t, ...): the trailing dims are flattened to the
  SAE's / vector's width (d for the residual stream, n*k for hook_z).
- An edit's hooks see every batch row; `open_loop.only_rows` restricts them to some rows.
Edits that hold state (`Patch`, the random control of `KeyFrameMask`) start afresh at each `hooks()` call.
`edit_from_dict` parses an edit from a spec's mapping (`{"kind": "head_ablation", ...}`), `edit.to_dict()` writes
it back. `LatentClamp` and `Steering` live in `sae_edits.py`; the base class and the tensor work in `edit_ops.py`.
"""

import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor

from vptlens.agents.policy import VPTPolicy
from vptlens.interventions.edit_ops import (
    Edit,
    FwdHooks,
    coerce_fields,
    key_frame_mask,
    load_head_means,
    load_profile,
    random_lag_mask,
    step_shape,
)
from vptlens.interventions.sae_edits import LatentClamp, Steering
from vptlens.recordings.store import Episode

__all__ = [
    "EDITS",
    "Edit",
    "HeadAblation",
    "KeyFrameMask",
    "LatentClamp",
    "NoEdit",
    "Patch",
    "Steering",
    "edit_from_dict",
]

_HEAD = re.compile(r"^(\d+)\.(\d+|\*)$")


@dataclass(frozen=True)
class NoEdit(Edit):
    """The control: no hook at all."""

    kind: ClassVar[str] = "none"

    def describe(self) -> str:
        return "no edit (control)"


@dataclass(frozen=True)
class HeadAblation(Edit):
    """Replace heads' outputs (`blocks.L.attn.hook_z`) by 0 or by their mean over recorded steps."""

    kind: ClassVar[str] = "head_ablation"
    heads: tuple[str, ...]
    """Heads as "layer.head", or "layer.*" for every head of a layer, e.g. ("2.5", "3.*")."""
    mode: Literal["zero", "mean"] = "zero"
    """"zero": the head outputs 0; "mean": its mean output (`mean_path`)."""
    mean_path: Path | None = None
    """mode "mean": a .npy of shape (layers, heads, head_dim) written by `save_head_means(path, head_means(...))`."""

    def __post_init__(self):
        if not self.heads:
            raise ValueError('heads is empty; list heads as "layer.head" or "layer.*", e.g. ("2.5", "3.*")')
        bad = [h for h in self.heads if not _HEAD.match(h)]
        if bad:
            raise ValueError(f'heads {bad} are not "layer.head" or "layer.*" (e.g. "2.5", "3.*")')
        if self.mode not in ("zero", "mean"):
            raise ValueError(f'mode must be "zero" or "mean", got {self.mode!r}')
        if (self.mode == "mean") != (self.mean_path is not None):
            raise ValueError('mode "mean" needs mean_path (a .npy from save_head_means) and mode "zero" takes none')

    def by_layer(self, n_heads: int) -> dict[int, list[int]]:
        """{layer: sorted heads} (wildcards expanded over `n_heads` heads)."""
        out: dict[int, set[int]] = {}
        for spec in self.heads:
            layer, head = _HEAD.match(spec).groups()
            out.setdefault(int(layer), set()).update(range(n_heads) if head == "*" else [int(head)])
        return {layer: sorted(h) for layer, h in sorted(out.items())}

    def validate(self, policy: VPTPolicy) -> list[str]:
        cfg, problems = policy.cfg, []
        n_layers, n_heads = cfg.n_recurrence_layers, cfg.attention_heads
        for spec in self.heads:
            layer, head = _HEAD.match(spec).groups()
            if int(layer) >= n_layers:
                problems.append(f"head {spec}: the policy has layers 0..{n_layers - 1}")
            elif head != "*" and int(head) >= n_heads:
                problems.append(f"head {spec}: the policy has heads 0..{n_heads - 1} per layer")
        if self.mean_path is not None:
            expected = (n_layers, n_heads, cfg.head_dim)
            try:
                shape = load_head_means(self.mean_path).shape
            except (FileNotFoundError, ValueError) as e:
                problems.append(str(e))
            else:
                if shape != expected:
                    problems.append(
                        f"{self.mean_path}: head means of shape {shape}, this policy needs {expected} "
                        "(layers, heads, head_dim); compute them with head_means(episodes, policy)"
                    )
        return problems

    def _make_hooks(self, policy: VPTPolicy) -> FwdHooks:
        means = None if self.mean_path is None else torch.from_numpy(load_head_means(self.mean_path))
        hooks = []
        for layer, heads in self.by_layer(policy.cfg.attention_heads).items():
            fill = None if means is None else means[layer, heads].to(policy.device)

            def ablate(z: Tensor, *, hook, heads=heads, fill=fill) -> Tensor:
                z = z.clone()
                z[..., heads, :] = 0.0 if fill is None else fill.to(z.dtype)
                return z

            hooks.append((f"blocks.{layer}.attn.hook_z", ablate))
        return hooks

    def describe(self) -> str:
        how = "zero" if self.mode == "zero" else f"mean from {self.mean_path.name}"
        return f"ablate heads {', '.join(self.heads)} ({how})"


@dataclass(frozen=True)
class KeyFrameMask(Edit):
    """Remove the attention to key frames, online: at each step and head, the lags (>= min_lag) whose attention
    is at least `ratio` x what the head's mean profile predicts get -inf scores (`hook_scores`), so the softmax
    renormalises over the other frames. The control masks as many random valid lags (>= min_lag) instead.

    "What the profile predicts" is `vptlens attention`'s `expected_mass`: the profile restricted to the lags
    that exist at this step, renormalised to 1 (at full memory, profile / sum(profile)). Lags the profile has
    no value for (null in the JSON) are never key frames.
    """

    kind: ClassVar[str] = "key_frame_mask"
    layers: tuple[int, ...]
    """Blocks whose attention is masked."""
    profile_path: Path
    """attention.json of `vptlens attention` on a run of this policy (its `profiles["L{layer}"]["mean"]`)."""
    ratio: float = 4.0
    """A lag is a key frame when its attention >= ratio x the expected attention at that lag."""
    min_lag: int = 8
    """Only frames at least this many steps back are masked (>= 1: the current frame is never masked)."""
    floor: float = 0.0
    """... and its attention is at least this (`vptlens attention`'s key_floor; 0: no floor)."""
    control: bool = False
    """Mask as many random valid lags >= min_lag (per step, row and head) instead of the key frames."""
    seed: int = 0
    """Seed of the control's random lags: each `hooks()` call starts a generator from it (and the layer)."""

    def __post_init__(self):
        if not self.layers or any(layer < 0 for layer in self.layers):
            raise ValueError(f"layers must be a non-empty list of block indices >= 0, got {self.layers}")
        if not (math.isfinite(self.ratio) and self.ratio > 0):
            raise ValueError(f"ratio must be a finite number > 0, got {self.ratio}")
        if self.min_lag < 1:
            raise ValueError(f"min_lag must be >= 1 (lag 0, the current frame, is never masked), got {self.min_lag}")
        if not 0.0 <= self.floor <= 1.0:
            raise ValueError(f"floor must be in [0, 1], got {self.floor}")

    def validate(self, policy: VPTPolicy) -> list[str]:
        cfg, problems = policy.cfg, []
        expected = (cfg.attention_heads, cfg.memory_len + 1)
        for layer in self.layers:
            if layer >= cfg.n_recurrence_layers:
                problems.append(f"layer {layer}: the policy has layers 0..{cfg.n_recurrence_layers - 1}")
                continue
            try:
                shape = load_profile(self.profile_path, layer).shape
            except (FileNotFoundError, ValueError, KeyError) as e:
                problems.append(str(e).strip("'\""))
                continue
            if shape != expected:
                problems.append(f"{self.profile_path}: layer {layer}'s profile is (heads, lags) {shape}, this policy "
                                f"has {expected}; run `vptlens attention` on a run of this policy")  # fmt: skip
        if self.min_lag > cfg.memory_len - 1:
            problems.append(f"min_lag {self.min_lag}: the policy sees at most {cfg.memory_len - 1} frames back")
        return problems

    def _make_hooks(self, policy: VPTPolicy) -> FwdHooks:
        hooks = []
        for layer in self.layers:
            profile_nT = torch.from_numpy(np.nan_to_num(load_profile(self.profile_path, layer)[:, ::-1].copy()))
            gens: dict[torch.device, torch.Generator] = {}

            def mask(scores: Tensor, *, hook, profile_nT=profile_nT, gens=gens, layer=layer) -> Tensor:
                profile = profile_nT.to(scores.device, scores.dtype)
                if scores.ndim == 4:  # (b, n, t, T): a profile row per head, for every query
                    profile = profile[:, None]
                key = key_frame_mask(scores, profile, self.ratio, self.min_lag, self.floor)
                if self.control:
                    if scores.device not in gens:
                        gens[scores.device] = torch.Generator(device=scores.device).manual_seed(
                            self.seed * 1000 + layer
                        )
                    key = random_lag_mask(scores, key.sum(-1), self.min_lag, gens[scores.device])
                return scores.masked_fill(key, -math.inf)

            hooks.append((f"blocks.{layer}.attn.hook_scores", mask))
        return hooks

    def describe(self) -> str:
        what = f"random lags (control, seed {self.seed}), as many as" if self.control else ""
        return (f"mask {what} key frames (attention >= {self.ratio:g} x profile, lag >= {self.min_lag}) "
                f"in layers {', '.join(map(str, self.layers))}").replace("  ", " ")  # fmt: skip


@dataclass(frozen=True)
class Patch(Edit):
    """Replace a hook's activation at step t by a source episode's stored one at step t (float16, cast).

    The hook counts the steps it has seen since `hooks()` built it (t frames per sequence-mode call, 1 per step),
    so it assumes one episode replayed from its first step in order, in ONE batch row: one env per process, or
    the edited row of `open_loop_effect`. It refuses a batch of more than one row.
    """

    kind: ClassVar[str] = "patch"
    needs_batch_one: ClassVar[bool] = True
    source_episode: Path
    """Episode directory whose run recorded `hook` (`vptlens record --hooks HOOK`)."""
    hook: str
    """The hook to patch."""
    steps: tuple[int, int] | None = None
    """Patch steps start..stop-1 only (None: every step the source has)."""

    def __post_init__(self):
        if self.steps is not None and not 0 <= self.steps[0] < self.steps[1]:
            raise ValueError(f"steps must be (start, stop) with 0 <= start < stop, got {self.steps}")

    def validate(self, policy: VPTPolicy) -> list[str]:
        problems = [] if self.hook in policy.hook_names else [f"patch: the policy has no hook {self.hook!r}"]
        try:
            episode = Episode(self.source_episode)
        except (FileNotFoundError, ValueError) as e:
            return problems + [str(e)]
        if not episode.has_activation(self.hook):
            problems.append(f"{self.source_episode} did not record {self.hook!r} (it stores {episode.hooks}); "
                            f"record the source with `vptlens record --hooks {self.hook}`")  # fmt: skip
        elif not problems:
            stored, expected = episode.activation(self.hook).shape[1:], step_shape(policy, self.hook)
            if tuple(stored) != expected:
                problems.append(f"{self.source_episode}: {self.hook} stored as {tuple(stored)} per step, "
                                f"this policy's is {expected}")  # fmt: skip
        if self.steps is not None and self.steps[1] > len(episode):
            problems.append(f"steps {self.steps}: {self.source_episode} has {len(episode)} steps")
        return problems

    def _make_hooks(self, policy: VPTPolicy) -> FwdHooks:
        start, stop = self.steps or (0, None)
        source = np.asarray(Episode(self.source_episode).activation(self.hook)[:stop])
        source = torch.from_numpy(source).to(policy.device)  # (N, *step shape), float16
        t_axis = policy.hook_dims(step=False)[self.hook].split().index("t")  # every hook has a time axis
        seen = [0]

        def patch(x: Tensor, *, hook) -> Tensor:
            if x.shape[0] != 1:
                raise ValueError(f"Patch on {self.hook} got a batch of {x.shape[0]} rows: it counts the steps of ONE "
                                 "episode, so run it with one env per process (or as the edited row of "
                                 "open_loop_effect); guided STEVE-1 replays are not supported")  # fmt: skip
            step_mode = x.ndim == len(hook.step_dims.split())
            n = 1 if step_mode else x.shape[t_axis]
            t0 = seen[0]
            seen[0] += n
            lo, hi = max(t0, start), min(t0 + n, len(source))
            if lo >= hi:
                return x
            x = x.clone()
            src = source[lo:hi].to(x.dtype)
            if step_mode:
                x[0] = src[0]
            else:  # (tt, *step dims) -> x's layout, t at t_axis
                idx = [slice(None)] * x.ndim
                idx[0], idx[t_axis] = 0, slice(lo - t0, hi - t0)
                x[tuple(idx)] = src.movedim(0, t_axis - 1)
            return x

        return [(self.hook, patch)]

    def describe(self) -> str:
        steps = "" if self.steps is None else f" steps {self.steps[0]}..{self.steps[1] - 1}"
        return f"patch {self.hook} from {Path(self.source_episode).name}{steps}"


EDITS: dict[str, type[Edit]] = {e.kind: e for e in (NoEdit, HeadAblation, KeyFrameMask, LatentClamp, Steering, Patch)}
"""Every edit kind, by its `kind` tag."""


def edit_from_dict(d: dict[str, Any]) -> Edit:
    """An edit from its mapping, tagged by `kind` (`to_dict()` gives it back). Every problem at once, in one
    ValueError: an unknown kind (with the closest), unknown keys, missing fields, wrong types, bad values."""
    if not isinstance(d, dict):
        raise TypeError(
            f"an edit is a mapping with a kind, e.g. {{'kind': 'head_ablation', 'heads': ['1.*']}}; got {d!r}"
        )
    kind = d.get("kind")
    if kind not in EDITS:
        close = difflib.get_close_matches(str(kind), EDITS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"unknown edit kind {kind!r}; {hint}kinds: {', '.join(EDITS)}")
    cls = EDITS[kind]
    kwargs, problems = coerce_fields(cls, {k: v for k, v in d.items() if k != "kind"}, f"edit {kind}")
    if not problems:
        try:
            return cls(**kwargs)
        except (ValueError, TypeError) as e:
            problems.append(f"edit {kind}: {e}")
    raise ValueError("; ".join(problems) if len(problems) == 1 else "\n  - ".join(["edit problems:", *problems]))
