"""One SAE's training step: Adam with warmup and decay, unit-norm decoder rows, AuxK against dead latents, the
L1 / L0 penalties and BatchTopK's running threshold (the model itself is in `model.py`)."""

import math

import torch
from jaxtyping import Float
from torch import Tensor

from vptlens.probes.sae.model import SAE, batch_topk_relu, jumprelu_train, topk_relu

THRESHOLD_DECAY = 0.99
"""EMA decay of BatchTopK's inference threshold (the smallest kept activation of each batch)."""


def _fired(index: Tensor, active: Tensor, d_sae: int) -> Tensor:
    """(d_sae,) bool: latents with at least one active entry among `index` (flat latent ids)."""
    counts = torch.zeros(d_sae, dtype=torch.int32, device=index.device)
    return counts.index_add_(0, index, active.to(torch.int32)) > 0


def lr_factor(step: int, n_steps: int, warmup_steps: int, decay: str, decay_fraction: float) -> float:
    """Learning-rate multiplier at `step` (0-based): linear warmup, then linear-tail or cosine decay to 0."""
    warmup_steps = min(warmup_steps, n_steps // 2)
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if decay == "cosine":
        span = max(1, n_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / span))
    decay_start = n_steps - int(decay_fraction * n_steps)
    if step < decay_start:
        return 1.0
    return max(0.0, (n_steps - step) / max(1, n_steps - decay_start))


class SAETrainer:
    """One SAE's optimiser and training state; `step(x)` takes inputs already scaled to mean norm sqrt(d_in)."""

    def __init__(
        self,
        sae: SAE,
        lr: float,
        n_steps: int,
        warmup_steps: int = 0,
        decay: str = "linear",
        decay_fraction: float = 0.2,
        aux_k: int = 512,
        aux_coefficient: float = 1 / 32,
        dead_window: int = 1_000_000,
        l1_warmup_steps: int = 0,
    ):
        self.sae, self.lr, self.n_steps = sae, lr, n_steps
        self.warmup_steps, self.decay, self.decay_fraction = warmup_steps, decay, decay_fraction
        self.aux_k = max(1, min(aux_k, sae.cfg.d_sae // 2))
        self.aux_coefficient, self.dead_window, self.l1_warmup_steps = aux_coefficient, dead_window, l1_warmup_steps
        self.optimizer = torch.optim.Adam(sae.parameters(), lr=lr, betas=(0.9, 0.999))
        self.rows_since_fired = torch.zeros(sae.cfg.d_sae, dtype=torch.int64, device=sae.W_enc.device)
        self.n_step, self.rows_seen = 0, 0
        self.threshold_initialised = False

    def loss(self, x: Float[Tensor, "b d"]) -> tuple[Tensor, dict]:
        sae, cfg = self.sae, self.sae.cfg
        pre = sae.pre_acts(x)
        # which latents fired is read off the kept values where there are few, not off the whole (b, s) code;
        # no step of the common path waits for the device (no boolean indexing, no .item())
        if cfg.architecture == "topk":
            values, index = pre.topk(cfg.k, dim=-1, sorted=False)
            values = torch.relu(values)
            z = torch.zeros_like(pre).scatter_(-1, index, values)
            active = (values > 0).detach()
            fired_latents = _fired(index.flatten(), active.flatten(), cfg.d_sae)
            n_active = active.sum()
        elif cfg.architecture == "batchtopk":
            z, values, index = batch_topk_relu(pre, cfg.k)
            active = (values > 0).detach()
            fired_latents = _fired(index % cfg.d_sae, active, cfg.d_sae)
            n_active = active.sum()
            smallest = torch.relu(values.detach().min())  # the running threshold's sample (0 if any kept is <= 0)
        elif cfg.architecture == "jumprelu":
            z, row_l0 = jumprelu_train(pre, sae.log_threshold, cfg.bandwidth)
            fired = (z > 0).detach()
            fired_latents = fired.any(0)
            n_active = fired.sum()
        else:
            z = torch.relu(pre)
            fired = (z > 0).detach()
            fired_latents = fired.any(0)
            n_active = fired.sum()
        x_hat = sae.decode(z)
        err = x_hat - x
        sq_err = err.pow(2).sum(-1)
        mse = sq_err.mean()
        loss = mse
        dead = self.rows_since_fired >= self.dead_window
        aux = x.new_zeros(())
        # (no latent can be dead before `dead_window` rows: skip the device round trip until then)
        maybe_dead = self.rows_seen >= self.dead_window and cfg.architecture in ("topk", "batchtopk")
        if maybe_dead and bool(dead.any()):
            # AuxK: the dead latents' top activations model the residual (Gao et al. 2024, their normalised MSE);
            # where fewer than aux_k are dead the live ones are masked to -inf and come out as zeros
            z_aux = topk_relu(pre.masked_fill(~dead, -torch.inf), self.aux_k)
            resid = err.detach().neg()
            resid_var = resid.sub(resid.mean(0)).pow(2).sum(-1).mean().clamp(min=1e-12)
            aux = (z_aux @ sae.W_dec - resid).pow(2).sum(-1).mean() / resid_var
            loss = loss + self.aux_coefficient * aux
        l1 = x.new_zeros(())
        ramp = min(1.0, (self.n_step + 1) / self.l1_warmup_steps) if self.l1_warmup_steps else 1.0
        if cfg.architecture == "relu":
            l1 = (z * sae.W_dec.norm(dim=1)).sum(-1).mean()
            loss = loss + ramp * cfg.l1_coefficient * l1
        elif cfg.architecture == "jumprelu":
            loss = loss + ramp * cfg.l0_coefficient * row_l0.mean()
        with torch.no_grad():
            total_var = (x - x.mean(0)).pow(2).sum()
            stats = {
                "loss": loss.detach(),
                "mse": mse.detach(),
                "nmse": sq_err.detach().sum() / total_var.clamp(min=1e-12),
                "l0": n_active.float() / x.shape[0],
                "aux": aux.detach(),
                "l1": l1.detach(),
            }
            if cfg.architecture == "batchtopk":
                stats["smallest"] = smallest
        return loss, {**stats, "_fired": fired_latents}

    def step(self, x: Float[Tensor, "b d"]) -> dict:
        """One optimiser step on a batch of scaled inputs; returns tensors (call `.item()` only when logging)."""
        factor = lr_factor(self.n_step, self.n_steps, self.warmup_steps, self.decay, self.decay_fraction)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * factor
        loss, stats = self.loss(x)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.sae.remove_parallel_grad()
        self.optimizer.step()
        self.sae.normalize_decoder()
        with torch.no_grad():
            fired = stats.pop("_fired")
            self.rows_since_fired.add_(x.shape[0]).masked_fill_(fired, 0)
            self.rows_seen += x.shape[0]
            stats["dead_fraction"] = (self.rows_since_fired >= self.dead_window).float().mean()
            if "smallest" in stats:
                smallest = stats.pop("smallest")
                th = self.sae.threshold
                if not self.threshold_initialised:
                    th.fill_(smallest)
                    self.threshold_initialised = True
                else:
                    th.mul_(THRESHOLD_DECAY).add_((1 - THRESHOLD_DECAY) * smallest)
        self.n_step += 1
        return stats
