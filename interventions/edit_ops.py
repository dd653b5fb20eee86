"""What the edits of `edits.py` share: the `Edit` base class, hook shapes, the key-frame and random-lag masks on
lag-laid-out scores, attention profiles, head means, SAE checks, and the field coercion of `edit_from_dict`.

Lag conventions: `hook_scores` / `hook_pattern` columns run oldest first, the last column (M) is the current
frame and column M-k is k frames back (`agents/policy.py`); attention.json's profiles run the other way, index k
= k frames back (`probes/attention.py`). `load_profile` returns the JSON's order; callers flip it.
"""

import difflib
import json
import math
import types
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from vptlens.agents.hooks import HookFn
from vptlens.agents.policy import N_BUTTON_CLASSES, N_CAMERA_CLASSES, VPTPolicy
from vptlens.probes.sae.model import SAE
from vptlens.recordings.replayer import EpisodeReplayer
from vptlens.recordings.store import Episode

FwdHooks = list[tuple[str, HookFn]]


class Edit:
    """What every edit offers: `validate`, `hooks`, `describe`, `to_dict` (its fields, `kind` first)."""

    kind: ClassVar[str]
    needs_batch_one: ClassVar[bool] = False
    """Whether its hooks hold per-episode state and so need one env (one batch row) per process."""

    def validate(self, policy: VPTPolicy) -> list[str]:
        """Every reason the edit cannot run on `policy` (unknown layer, head, hook, latent; a file that does not
        fit), one line each; [] when it can. Reads the files the edit names, runs nothing."""
        return []

    def hooks(self, policy: VPTPolicy) -> FwdHooks:
        """The edit as `fwd_hooks` for `policy.hooks(...)` / the replayer; raises ValueError listing every
        problem `validate` finds. Each call builds fresh hooks (stateful edits start over)."""
        self.check(policy)
        return self._make_hooks(policy)

    def _make_hooks(self, policy: VPTPolicy) -> FwdHooks:
        return []

    def check(self, policy: VPTPolicy) -> None:
        """Raise ValueError listing every problem `validate` finds."""
        problems = self.validate(policy)
        if problems:
            raise ValueError(f"{self.kind} edit does not fit the policy:\n  - " + "\n  - ".join(problems))

    def describe(self) -> str:
        """One line for reports."""
        return self.kind

    def to_dict(self) -> dict:
        def plain(v):
            return str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v

        return {"kind": self.kind, **{f.name: plain(getattr(self, f.name)) for f in fields(self)}}


def n_features(hook) -> int:
    """Trailing feature dims of a (b, t, ...) hook (the same in step and sequence mode)."""
    return len(hook.dims.split()) - 2


def step_shape(policy: VPTPolicy, hook_name: str) -> tuple[int, ...]:
    """The shape of one row of `hook_name` in step mode (no b, no t), e.g. (n, k) for hook_z."""
    cfg = policy.cfg
    sizes = {
        "d": cfg.hidsize,
        "f": cfg.hidsize * cfg.pointwise_ratio,
        "n": cfg.attention_heads,
        "k": cfg.head_dim,
        "T": cfg.memory_len + 1,
        "a": N_BUTTON_CLASSES,
        "c": N_CAMERA_CLASSES,
    }
    return tuple(sizes[c] for c in policy.hook_dims(step=True)[hook_name].split() if c != "b")


def hook_problems(policy: VPTPolicy, hook: str, what: str) -> list[str]:
    """Why `hook` cannot take a (b, t, features...) edit ([] when it can)."""
    if hook not in policy.hook_names:
        return [f"{what}: the policy has no hook {hook!r}; `vptlens info MODEL WEIGHTS` lists its hooks"]
    dims = policy.hook_dims(step=False)[hook].split()
    if dims[:2] != ["b", "t"] or len(dims) < 3:
        return [f"{what}: {hook!r} is laid out ({', '.join(dims)}); this edit needs a hook (b, t, features...)"]
    return []


def feature_width(policy: VPTPolicy, hook: str) -> int:
    """Values per row and step of a (b, t, ...) hook: d for the residual stream, n*k for hook_z."""
    return math.prod(step_shape(policy, hook))


# ---------------------------------------------------------------------------------------------- masks


def key_frame_mask(
    scores: Float[Tensor, "*b T"], profile: Float[Tensor, "*p T"], ratio: float, min_lag: int, floor: float = 0.0
) -> Bool[Tensor, "*b T"]:
    """Which lags of lag-laid-out scores (last column = now, -inf = no key) are key frames.

    `profile` (broadcast against `scores`, same column order) is the head's mean attention per lag. A lag k
    (column M-k) is a key frame when k >= min_lag, the key exists, the profile there is > 0 and the attention
    a = softmax(scores) satisfies a >= floor and a >= ratio x expected, expected being the profile restricted
    to the existing keys and renormalised to 1 (`probes.attention_stats.expected_mass`).
    """
    n_cols = scores.shape[-1]
    valid = torch.isfinite(scores)
    a = torch.softmax(scores.float(), dim=-1)
    weight = torch.where(valid, profile.float(), 0.0)
    total = weight.sum(-1, keepdim=True)
    expected = torch.where(total > 0, weight / torch.where(total > 0, total, 1.0), 0.0)
    lag = n_cols - 1 - torch.arange(n_cols, device=scores.device)
    eligible = valid & (lag >= min_lag)
    return eligible & (expected > 0) & (a > 0) & (a >= floor) & (a >= ratio * expected)


def random_lag_mask(
    scores: Float[Tensor, "*b T"], counts: Int[Tensor, "*b"], min_lag: int, generator: torch.Generator
) -> Bool[Tensor, "*b T"]:
    """`counts[...]` lags per row drawn uniformly, without replacement, among its existing keys >= min_lag back."""
    n_cols = scores.shape[-1]
    lag = n_cols - 1 - torch.arange(n_cols, device=scores.device)
    eligible = torch.isfinite(scores) & (lag >= min_lag)
    u = torch.rand(scores.shape, generator=generator, device=scores.device)
    rank = torch.where(eligible, u, -1.0).argsort(-1, descending=True).argsort(-1)
    return eligible & (rank < counts[..., None])


# ---------------------------------------------------------------------------------------------- files


def load_profile(profile_path: str | Path, layer: int) -> Float[np.ndarray, "n T"]:
    """`profiles["L{layer}"]["mean"]` of `vptlens attention`'s attention.json: (heads, M+1), index k = k frames
    back, NaN where the JSON has null (no step reached that lag)."""
    path = Path(profile_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; pass the attention.json written by `vptlens attention`")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("schema") != "vptlens.attention":
        raise ValueError(f"{path}: not an attention.json of `vptlens attention` (schema {doc.get('schema')!r})")
    profiles = doc.get("profiles", {})
    if f"L{layer}" not in profiles:
        raise ValueError(f"{path} has the profiles of layers {sorted(profiles)}, not L{layer}; record the run with "
                         "that layer's attention and run `vptlens attention` again")  # fmt: skip
    rows = profiles[f"L{layer}"]["mean"]
    return np.array([[math.nan if v is None else v for v in row] for row in rows], np.float64)


@torch.no_grad()
def head_means(episodes: list[Episode], policy: VPTPolicy, block_steps: int = 256) -> Float[np.ndarray, "l n k"]:
    """Each head's mean output (`blocks.L.attn.hook_z`) over every step of `episodes`, replayed through
    `policy` (checked against the recordings), float64 (layers, heads, head_dim). For `HeadAblation(mode="mean")`."""
    if not episodes:
        raise ValueError("head_means needs at least one episode")
    cfg = policy.cfg
    names = [f"blocks.{layer}.attn.hook_z" for layer in range(cfg.n_recurrence_layers)]
    total = np.zeros((len(names), cfg.attention_heads, cfg.head_dim), np.float64)
    count = 0
    for episode in episodes:
        replayer = EpisodeReplayer(episode, policy=policy, block_steps=block_steps)
        for block in replayer.run(names=names):
            for layer, name in enumerate(names):
                total[layer] += block.cache[name][0].double().sum(0).cpu().numpy()  # row 0 (the cond row if guided)
            count += block.stop - block.start
    return total / count


def save_head_means(path: str | Path, means: Float[np.ndarray, "l n k"]) -> Path:
    """Write head means as a .npy (float32)."""
    path = Path(path)
    np.save(path, np.asarray(means, np.float32), allow_pickle=False)
    return path


def load_head_means(path: str | Path) -> Float[np.ndarray, "l n k"]:
    """Read head means written by `save_head_means`, float32 (layers, heads, head_dim)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; write it with save_head_means(path, head_means(episodes, policy))")
    try:
        means = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise ValueError(f"{path}: not a readable .npy ({e})") from None
    if means.ndim != 3 or not np.issubdtype(means.dtype, np.floating) or not np.all(np.isfinite(means)):
        raise ValueError(f"{path}: head means must be finite floats of shape (layers, heads, head_dim), got "
                         f"{means.dtype} {means.shape}")  # fmt: skip
    return means.astype(np.float32)


def sae_problems(policy: VPTPolicy, sae_dir: str | Path, hook: str | None = None) -> tuple[list[str], SAE | None]:
    """Why the SAE at `sae_dir` cannot be used on `policy` (at `hook`, when given), and the SAE when it loads."""
    try:
        sae = SAE.load(sae_dir)
    except (FileNotFoundError, ValueError) as e:
        return [str(e)], None
    name = sae.cfg.hook_name
    if hook is not None and name != hook:
        return [f"{sae_dir} was trained on {name!r}, not {hook!r}; use an SAE of that hook"], sae
    problems = hook_problems(policy, name, f"SAE {sae_dir}")
    if not problems and sae.cfg.d_in != feature_width(policy, name):
        problems.append(f"{sae_dir} reads {sae.cfg.d_in} values per step but {name} of this policy has "
                        f"{feature_width(policy, name)}: the SAE was trained on another architecture")  # fmt: skip
    return problems, sae


# ---------------------------------------------------------------------------------------------- parsing


def coerce_fields(cls: type, d: dict, where: str) -> tuple[dict, list[str]]:
    """`d`'s values converted to the dataclass `cls`'s field types (lists -> tuples, str -> Path, int -> float),
    and every problem: unknown keys (with the closest field), missing required fields, wrong types."""
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    out, problems = {}, []
    for key in d:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; {where} takes {sorted(known)}"
            problems.append(f"{where}: unknown key {key!r}{hint}")
    for name, f in known.items():
        if name not in d:
            if f.default is f.default_factory is MISSING:
                problems.append(f"{where}: missing {name!r} ({_type_name(hints[name])})")
            continue
        ok, value = _coerce(d[name], hints[name])
        if ok:
            out[name] = value
        else:
            problems.append(f"{where}: {name} must be {_type_name(hints[name])}, got {d[name]!r}")
    return out, problems


def _type_name(tp) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_type_name(a) for a in args)
    if origin is Literal:
        return " or ".join(repr(a) for a in args)
    if origin is tuple:
        inner = {int: "integers", float: "numbers", str: "strings", Path: "paths"}.get(args[0], _type_name(args[0]))
        return f"a list of {inner}" if len(args) == 2 and args[1] is Ellipsis else f"a list of {len(args)} {inner}"
    return {type(None): "null", Path: "a path", float: "a number", int: "an integer", str: "a string",
            bool: "true/false"}.get(tp, str(tp))  # fmt: skip


def _coerce(value: Any, tp) -> tuple[bool, Any]:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        for a in args:
            ok, v = _coerce(value, a)
            if ok:
                return True, v
        return False, None
    if origin is Literal:
        return value in args, value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            return False, None
        inner = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(inner) != len(value):
            return False, None
        parts = [_coerce(v, a) for v, a in zip(value, inner)]
        return all(ok for ok, _ in parts), tuple(v for _, v in parts)
    if tp is type(None):
        return value is None, None
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok, float(value) if ok else None
    if tp is Path:
        return isinstance(value, str | Path), Path(value) if isinstance(value, str | Path) else None
    if tp is str:
        return isinstance(value, str), value
    return False, None
