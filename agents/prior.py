"""STEVE-1's prior: a conditional VAE that turns a MineCLIP text embedding into a visual goal embedding.

MineCLIP's text and video features of the same task differ (the contrastive gap), and STEVE-1 was trained
on video goals only, so a prompt goes through this prior first: `goal = decoder([z, text])` with the
latent `z ~ N(0, I)` (zero when deterministic). The encoder `q(z | visual, text)` is what the prior was
trained with; it is kept so that the released `steve1_prior.pt` loads strictly and a training pair can be
inspected. Both are MLPs `Linear, LayerNorm, ReLU, Linear, LayerNorm, ReLU, Linear`; module names and
maths are those of STEVE-1's `TranslatorVAE`.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor, nn

from vptlens.agents.loading import load_torch_file, sha256_file
from vptlens.agents.mineclip import check_state_dict

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PriorConfig:
    """The prior's sizes; the defaults are the released `steve1_prior.pt` (STEVE-1's `PRIOR_INFO`)."""

    input_dim: int = 512
    """MineCLIP embedding width (text in, visual goal out)."""
    hidden_dim: int = 512
    """Width of the hidden layers."""
    latent_dim: int = 512
    """Width of the latent z."""

    def __post_init__(self):
        for name in ("input_dim", "hidden_dim", "latent_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65536:
                raise ValueError(f"PriorConfig.{name}={value!r}: give a positive integer")


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(d_in, hidden),
        nn.LayerNorm(hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.LayerNorm(hidden),
        nn.ReLU(),
        nn.Linear(hidden, d_out),
    )


class Steve1Prior(nn.Module):
    """STEVE-1's `TranslatorVAE`: text embedding -> visual goal embedding."""

    def __init__(self, cfg: PriorConfig = PriorConfig()):
        super().__init__()
        self.cfg = cfg
        self.encoder = _mlp(2 * cfg.input_dim, cfg.hidden_dim, 2 * cfg.latent_dim)
        self.decoder = _mlp(cfg.latent_dim + cfg.input_dim, cfg.hidden_dim, cfg.input_dim)

    def encode(self, visual: Float[Tensor, "b d"], text: Float[Tensor, "b d"]) -> Float[Tensor, "b z2"]:
        """The posterior's parameters `[mu, logvar]` (concatenated, as STEVE-1 returns them) for a training pair."""
        return self.encoder(torch.cat([visual, text], dim=1))

    def decode(self, latent: Float[Tensor, "b z"], text: Float[Tensor, "b d"]) -> Float[Tensor, "b d"]:
        """The visual goal embedding for a latent and a text embedding."""
        return self.decoder(torch.cat([latent, text], dim=1))

    def sample(
        self, text: Float[Tensor, "b d"], generator: torch.Generator | None = None, deterministic: bool = False
    ) -> Float[Tensor, "b d"]:
        """A goal per text embedding, with `z ~ N(0, I)` drawn from `generator` (or z = 0 if deterministic).

        STEVE-1 draws z with `torch.randn_like` from torch's global generator: a generator seeded with s gives
        the goal STEVE-1 gives after `torch.manual_seed(s)`.
        """
        shape = (text.shape[0], self.cfg.latent_dim)
        if deterministic:
            latent = torch.zeros(shape, dtype=text.dtype, device=text.device)
        else:
            latent = torch.randn(shape, generator=generator, dtype=text.dtype, device=text.device)
        return self.decode(latent, text)


def config_from_state(state: dict[str, Tensor], source: str) -> PriorConfig:
    """The sizes a prior's state dict implies (the released file stores no config)."""
    try:
        hidden, latent_plus_input = state["decoder.0.weight"].shape
        input_dim = state["decoder.6.weight"].shape[0]
    except (KeyError, ValueError) as e:
        raise KeyError(
            f"{source}: not a STEVE-1 prior: expected TranslatorVAE keys such as 'decoder.0.weight' and "
            f"'decoder.6.weight' (got {sorted(state)[:6]}...)"
        ) from e
    return PriorConfig(input_dim=input_dim, hidden_dim=hidden, latent_dim=latent_plus_input - input_dim)


def load_prior(path: str | Path, device: str | torch.device = "cpu") -> Steve1Prior:
    """The prior from `steve1_prior.pt` (a bare state dict), read with `weights_only=True` and loaded strictly."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such file. Pass STEVE-1's steve1_prior.pt (`vptlens download steve1-prior`)."
        )
    state = load_torch_file(path, "STEVE-1's prior (steve1_prior.pt)")
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors (STEVE-1's steve1_prior.pt)")
    prior = Steve1Prior(config_from_state(state, str(path)))
    check_state_dict(prior, state, str(path), "a STEVE-1 prior (steve1_prior.pt)")
    prior.load_state_dict(state, strict=True)
    prior.provenance = {"path": str(path.resolve()), "sha256": sha256_file(path), "config": vars(prior.cfg).copy()}
    logger.info("loaded the STEVE-1 prior from %s (%s)", path, prior.cfg)
    return prior.to(device).eval()
