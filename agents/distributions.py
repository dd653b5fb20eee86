"""The policy's action distribution: sampling as released, argmax, log-probabilities, entropy.

The two heads are independent categoricals over 8641 joint button classes and 121 camera
classes; their logits already carry the temperature (2.0 in the released models). As in
OpenAI's `DictActionHead`, a factored action's log-probability is the sum of both heads'
(the camera term counts even when the button class leaves the camera unused).
"""

import torch
from jaxtyping import Float, Int
from torch import Tensor

from vptlens.agents.policy import PolicyOutput


def _gumbel_argmax(logits: Tensor, generator: torch.Generator | None) -> Tensor:
    # Sampling by argmax(logits + Gumbel noise), as OpenAI's CategoricalActionHead does.
    u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=torch.float32)
    return _argmax_with_noise(logits, u)


def _argmax_with_noise(logits: Tensor, u: Tensor) -> Tensor:
    u = u.clamp(min=torch.finfo(torch.float32).tiny, max=1 - torch.finfo(torch.float32).eps)
    return torch.argmax(logits.float() - torch.log(-torch.log(u)), dim=-1)


def sample_actions_per_row(
    out: PolicyOutput, generators: list[torch.Generator]
) -> tuple[Int[Tensor, " b"], Int[Tensor, " b"]]:
    """Sample row b of a (B, ...) CPU output from its own stream `generators[b]`: the same actions as
    `sample_actions(row b, generator=generators[b])` row by row (each row draws its button noise, then its camera
    noise), with one vectorised transform for the batch instead of B (the element-wise ops give the same bits at
    any batch size; tests/test_distributions.py)."""
    b = out.buttons_logits.shape[0]
    if len(generators) != b:
        raise ValueError(f"one generator per row: {len(generators)} for {b} rows")
    u_buttons = torch.empty(out.buttons_logits.shape, dtype=torch.float32)
    u_camera = torch.empty(out.camera_logits.shape, dtype=torch.float32)
    for row, generator in enumerate(generators):
        torch.rand(u_buttons.shape[1:], generator=generator, out=u_buttons[row])
        torch.rand(u_camera.shape[1:], generator=generator, out=u_camera[row])
    return _argmax_with_noise(out.buttons_logits, u_buttons), _argmax_with_noise(out.camera_logits, u_camera)


def sample_actions(
    out: PolicyOutput, deterministic: bool = False, generator: torch.Generator | None = None
) -> tuple[Int[Tensor, "*b"], Int[Tensor, "*b"]]:
    """(buttons, camera) class indices: sampled (the released agents act stochastically) or the modes."""
    if deterministic:
        return out.buttons_logits.argmax(-1), out.camera_logits.argmax(-1)
    return _gumbel_argmax(out.buttons_logits, generator), _gumbel_argmax(out.camera_logits, generator)


def log_prob(out: PolicyOutput, buttons: Int[Tensor, "*b"], camera: Int[Tensor, "*b"]) -> Float[Tensor, "*b"]:
    """log pi(buttons, camera) = log p_buttons + log p_camera."""
    lp_buttons = out.buttons_logits.gather(-1, buttons.long().unsqueeze(-1)).squeeze(-1)
    lp_camera = out.camera_logits.gather(-1, camera.long().unsqueeze(-1)).squeeze(-1)
    return lp_buttons + lp_camera


def entropy(out: PolicyOutput) -> tuple[Float[Tensor, "*b"], Float[Tensor, "*b"]]:
    """Entropy in nats of the button head and of the camera head."""

    def h(logp: Tensor) -> Tensor:
        logp = logp.float()
        return -(logp.exp() * logp.masked_fill(torch.isinf(logp), 0)).sum(-1)

    return h(out.buttons_logits), h(out.camera_logits)
