"""Sparse autoencoders on recorded activations: the model (`model`), its training step (`trainer`), the activation
stream (`buffer`), and the `vptlens sae` commands: `train`, `evaluate` (with `splice`: the KL of the action heads
when an activation is replaced), `dashboard` (with `dashboard_data`, `direct_effect`, `dashboard_html`).

>>> from vptlens.probes.sae import SAE
>>> sae = SAE.load("saes/topk-k_32")  # reads raw activations of sae.cfg.hook_name
"""

from vptlens.probes.sae.model import (
    ARCHITECTURES,
    SAE,
    SAEConfig,
    batch_topk_relu,
    calibrate_thresholds,
    jumprelu_train,
    topk_relu,
)
from vptlens.probes.sae.trainer import SAETrainer, lr_factor

__all__ = [
    "ARCHITECTURES",
    "SAE",
    "SAEConfig",
    "SAETrainer",
    "batch_topk_relu",
    "calibrate_thresholds",
    "jumprelu_train",
    "lr_factor",
    "topk_relu",
]
