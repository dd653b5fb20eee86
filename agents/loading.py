"""Load released VPT / STEVE-1 checkpoints (`*.model` + `*.weights`, or safetensors) strictly."""

import hashlib
import logging
from pathlib import Path

import torch
from torch import nn

from vptlens.agents.config import PolicyConfig, load_config
from vptlens.agents.policy import RelativeAttention, VPTPolicy

logger = logging.getLogger(__name__)

_PREFIXES = ("module.policy.", "policy.", "module.")
"""Prefixes some trainers (STEVE-1's accelerate wrapper among them) put before the policy's keys."""


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def load_torch_file(path: Path, what: str):
    """`torch.load(path, weights_only=True)` on the CPU: tensors and plain containers only, never code; any failure
    a ValueError saying what the file should have been."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(
            f"{path}: could not be read with torch.load(weights_only=True) ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}). It is not {what}, is corrupt, or holds pickled objects "
            "other than tensors, which vpt-lens refuses to execute."
        ) from e


def read_state_dict(weights_path: str | Path) -> dict[str, torch.Tensor]:
    """Read a `.weights` (torch, loaded with weights_only) or `.safetensors` file, prefixes stripped."""
    path = Path(weights_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file. Pass a VPT '.weights' or '.safetensors' file.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    else:
        state = load_torch_file(path, "a VPT weights file")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a dict of tensor names to tensors, got {type(state).__name__}")
    for prefix in _PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
            break
    return state


def state_dict_mismatch(model: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Lines naming every missing, unexpected and mis-shaped key of `state` for `model` (empty when it fits)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    lines = []
    for title, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
        if keys:
            shown = ", ".join(keys[:12]) + (f", ... ({len(keys) - 12} more)" if len(keys) > 12 else "")
            lines.append(f"  {title} ({len(keys)}): {shown}")
    return lines


def check_state_dict(policy: VPTPolicy, state: dict[str, torch.Tensor], source: str) -> None:
    """Raise a KeyError naming every missing, unexpected and mis-shaped key."""
    problems = state_dict_mismatch(policy, state)
    if not problems:
        return
    lines = [f"{source}: the weights do not fit the architecture of the '.model' file.", *problems]
    if any(k.startswith("net.mineclip_embed_linear") for k in set(state) - set(policy.state_dict())):
        lines.append("  These are STEVE-1 weights: they need goal_dim=512 (load_policy does this by itself).")
    lines.append("  Check that the '.model' and '.weights' files belong to the same checkpoint.")
    raise KeyError("\n".join(lines))


def load_policy(
    model_path: str | Path,
    weights_path: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> VPTPolicy:
    """Build the policy a `.model` file describes and load its weights strictly.

    STEVE-1 is recognised by `net.mineclip_embed_linear` in the weights. The returned
    policy is in eval mode and carries `policy.provenance` (paths, sha256, config).
    """
    state = read_state_dict(weights_path)
    goal_key = "net.mineclip_embed_linear.weight"
    goal_dim = state[goal_key].shape[1] if goal_key in state else None
    cfg = load_config(model_path, goal_dim=goal_dim)
    policy = VPTPolicy(cfg)
    check_state_dict(policy, state, str(weights_path))
    policy.load_state_dict(state, strict=True)
    policy.provenance = {
        "model_path": str(Path(model_path).resolve()),
        "weights_path": str(Path(weights_path).resolve()),
        "model_sha256": sha256_file(model_path),
        "weights_sha256": sha256_file(weights_path),
        "config": cfg.to_dict(),
    }
    logger.info("loaded %s (%s parameters)", weights_path, f"{policy.n_params():,}")
    return policy.to(device=device, dtype=dtype).eval()


def make_random_policy(cfg: PolicyConfig, seed: int = 0) -> VPTPolicy:
    """A policy with random weights of the right scale (for tests and benchmarks, not for acting well)."""
    gen = torch.Generator().manual_seed(seed)
    policy = VPTPolicy(cfg)
    with torch.no_grad():
        for module in policy.modules():
            if isinstance(module, nn.Linear | nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) / fan_in**0.5)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, RelativeAttention):
                module.b_nd.copy_(torch.randn(module.b_nd.shape, generator=gen) * 0.2)
        policy.value_head.normalizer.debiasing_term.fill_(1.0)
        policy.value_head.normalizer.running_mean_sq.fill_(1.0)
    policy.provenance = {"random_init_seed": seed, "config": cfg.to_dict()}
    return policy.eval()
