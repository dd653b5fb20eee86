"""`vptlens info MODEL WEIGHTS`: what a checkpoint is (architecture, size, hook names and shapes)."""

from dataclasses import dataclass
from pathlib import Path

import tyro

from vptlens.agents.goals import describe_goal_pathway
from vptlens.agents.loading import load_policy
from vptlens.agents.policy import N_BUTTON_CLASSES, N_CAMERA_CLASSES, VPTPolicy


@dataclass(frozen=True)
class InfoConfig:
    """Describe a VPT / STEVE-1 checkpoint."""

    model: tyro.conf.Positional[Path]
    """The `.model` file (architecture)."""
    weights: tyro.conf.Positional[Path]
    """The `.weights` (or `.safetensors`) file."""
    hooks: bool = True
    """List every hook point with its shape."""


def hook_shapes(policy: VPTPolicy, step: bool = True) -> dict[str, str]:
    """Each hook's shape with the policy's sizes filled in (B rows, t frames in sequence mode)."""
    cfg = policy.cfg
    sizes = {
        "b": "B",
        "t": "t",
        "d": str(cfg.hidsize),
        "n": str(cfg.attention_heads),
        "k": str(cfg.head_dim),
        "T": str(cfg.memory_len + 1),
        "f": str(cfg.hidsize * cfg.pointwise_ratio),
        "a": str(N_BUTTON_CLASSES),
        "c": str(N_CAMERA_CLASSES),
    }
    shapes = {name: tuple(sizes[c] for c in dims.split()) for name, dims in policy.hook_dims(step).items()}
    return {name: f"({shape[0]},)" if len(shape) == 1 else f"({', '.join(shape)})" for name, shape in shapes.items()}


def describe(policy: VPTPolicy, hooks: bool = True) -> str:
    cfg = policy.cfg
    kind = "STEVE-1 (goal-conditioned VPT)" if cfg.is_goal_conditioned else "VPT"
    lines = [
        f"{kind} policy, {policy.n_params():,} parameters",
        f"  image      {cfg.img_shape[0]}x{cfg.img_shape[1]} -> ImpalaCNN chans {cfg.cnn_chans} -> {cfg.cnn_outsize}"
        f" -> d={cfg.hidsize}",
        f"  blocks     {cfg.n_recurrence_layers} x (attention {cfg.attention_heads} heads of {cfg.head_dim},"
        f" MLP {cfg.hidsize * cfg.pointwise_ratio})",
        f"  memory     M={cfg.memory_len} frames (attention_memory_size {cfg.attention_memory_size}"
        f" - timesteps {cfg.timesteps})",
        f"  heads      buttons {N_BUTTON_CLASSES}, camera {N_CAMERA_CLASSES}, value; temperature {cfg.temperature}",
    ]
    if cfg.is_goal_conditioned:
        lines += describe_goal_pathway(cfg.goal_dim)
    for key in ("model_sha256", "weights_sha256"):
        if key in getattr(policy, "provenance", {}):
            lines.append(f"  {key:<14} {policy.provenance[key]}")
    if hooks:
        step, seq = hook_shapes(policy, step=True), hook_shapes(policy, step=False)
        width = max(map(len, step))
        lines.append(f"\nhook points ({len(step)}): shape in step mode | in sequence mode")
        lines += [f"  {name:<{width}}  {step[name]:<22} {seq[name]}" for name in step]
    return "\n".join(lines)


def main(cfg: InfoConfig) -> str:
    text = describe(load_policy(cfg.model, cfg.weights), hooks=cfg.hooks)
    print(text)
    return text
