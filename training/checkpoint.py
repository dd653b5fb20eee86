"""Checkpoints in the released layout (`NAME.model` + `NAME.weights`), and the trainer's resumable state.

A `.model` file is what OpenAI's loader reads: a pickle of
`{"model": {"args": {"net": {"args": POLICY_KWARGS}, "pi_head_opts": {"temperature": T}}}}`. We write it from
plain data only (dicts, lists, strings, numbers, booleans, None), so the restricted unpickler that reads released
files (`agents.safe_pickle`) reads ours, and OpenAI's own code would too. `.weights` is `torch.save` of the
policy's state dict, the keys of the released files. The trainer's own state (optimizer moments, counters, random
streams) goes beside them in a `train_state.pt` that holds tensors and plain data only (read with
`weights_only=True`).
"""

import json
import os
import pickle
from pathlib import Path

import torch

from vptlens.agents.config import DEFAULTS_OF_REFERENCE, FIXED_OPTIONS, PolicyConfig, load_config
from vptlens.agents.loading import load_torch_file, sha256_file
from vptlens.agents.policy import VPTPolicy

_FIXED_KWARGS = {**FIXED_OPTIONS, **DEFAULTS_OF_REFERENCE, "only_img_input": True, "single_output": True}
"""The options every released checkpoint sets this way (and the only ones vpt-lens implements), as the released
files spell them."""


def policy_kwargs(cfg: PolicyConfig) -> dict:
    """The `net.args` of a `.model` file for `cfg`, in the released files' vocabulary (lists, not tuples)."""
    if cfg.is_goal_conditioned:
        raise ValueError("writing STEVE-1 checkpoints is not supported: its goal pathway lives only in its weights")
    return {
        **_FIXED_KWARGS,
        "hidsize": cfg.hidsize,
        "attention_heads": cfg.attention_heads,
        "n_recurrence_layers": cfg.n_recurrence_layers,
        "attention_memory_size": cfg.attention_memory_size,
        "timesteps": cfg.timesteps,
        "impala_chans": list(cfg.impala_chans),
        "impala_width": cfg.impala_width,
        "img_shape": list(cfg.img_shape),
        "pointwise_ratio": cfg.pointwise_ratio,
    }


def _atomic_write(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    os.replace(partial, path)


def write_model_file(path: str | Path, cfg: PolicyConfig) -> Path:
    """Write `cfg` as a released-layout `.model` file (a pickle of plain data; protocol 2 as the released files)."""
    path = Path(path)
    obj = {"model": {"args": {"net": {"args": policy_kwargs(cfg)}, "pi_head_opts": {"temperature": cfg.temperature}}}}
    _atomic_write(path, pickle.dumps(obj, protocol=2))
    if load_config(path) != cfg:  # the file must read back as the same architecture
        raise AssertionError(f"{path} does not read back as the config it was written from")
    return path


def save_policy(policy: VPTPolicy, stem: str | Path) -> tuple[Path, Path]:
    """`STEM.model` + `STEM.weights` (float32 state dict), each written atomically; returns their paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    model = write_model_file(stem.with_suffix(".model"), policy.cfg)
    weights = stem.with_suffix(".weights")
    state = {k: v.detach().to("cpu", torch.float32).clone() for k, v in policy.state_dict().items()}
    partial = weights.with_name(weights.name + ".part")
    torch.save(state, partial)
    os.replace(partial, weights)
    return model, weights


def file_digests(*paths: Path) -> dict[str, str]:
    """File name -> sha256, for a checkpoint's provenance."""
    return {p.name: sha256_file(p) for p in paths}


def save_train_state(path: Path, state: dict) -> None:
    """The trainer's resumable state: tensors, and plain data under "meta" (stored as JSON text)."""
    payload = {k: v for k, v in state.items() if k != "meta"}
    payload["meta_json"] = json.dumps(state.get("meta", {}))
    partial = path.with_name(path.name + ".part")
    torch.save(payload, partial)
    os.replace(partial, path)


def load_train_state(path: Path) -> dict:
    """Read `save_train_state`'s file with `weights_only=True` (no code is run whatever the file holds)."""
    fix = "delete it to start the training again, or pass another --out"
    payload = load_torch_file(path, f"a readable training state ({fix})")
    try:
        meta = json.loads(payload.pop("meta_json"))
    except (AttributeError, KeyError, TypeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable training state ({type(e).__name__}); {fix}") from e
    return {**payload, "meta": meta}
