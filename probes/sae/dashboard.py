"""`vptlens sae dashboard`: static HTML pages, one per SAE latent, of what fires it and what it does.

Everything comes from streaming over the run's episodes (one block of `block_steps` steps of the
hook's stored activations in memory at a time, encoded `batch_size` rows at a time). The work is
split by what it does: `dashboard_data.py` the statistics (firing, histograms, top-k,
quantile-interval samples, lift of keys and events), `direct_effect.py` the model calls (each
latent's direct effect on the action heads, through the `EpisodeReplayer`), `dashboard_html.py`
the pictures and pages. This module checks the inputs, runs them (`compute`) and writes (`main`).
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import tyro

from vptlens.probes.report import make_out_dir, strict_json, write_json
from vptlens.probes.sae import dashboard_data as data
from vptlens.probes.sae import direct_effect
from vptlens.probes.sae.dashboard_html import write_pages
from vptlens.probes.sae.inputs import check_hook, check_out, open_episodes
from vptlens.probes.sae.model import CFG_NAME, SAE
from vptlens.recordings.replayer import load_recording_policy
from vptlens.recordings.schema import provenance
from vptlens.recordings.store import Episode, Run

logger = logging.getLogger(__name__)

METHOD = "\n\n".join(m.__doc__ for m in (data, direct_effect))
"""How the numbers are made, written into dashboard.json."""


@dataclass(frozen=True)
class DashboardConfig:
    """Feature dashboards of an SAE's latents on a recorded run: static HTML, PNG images and dashboard.json."""

    sae: tyro.conf.Positional[Annotated[Path, tyro.conf.arg(metavar="SAE_DIR")]]
    """SAE directory written by `vptlens sae train` (cfg.json + sae_weights.safetensors)."""
    run: tyro.conf.Positional[Annotated[Path, tyro.conf.arg(metavar="RUN")]]
    """Recorded run directory (its complete episodes) that recorded the SAE's hook, or one episode."""
    out: Path = Path("dashboard")
    """Output directory: index.html, latent_<id>.html, img/*.png, dashboard.json (created)."""
    overwrite: bool = False
    """Replace an existing, non-empty OUT (emptied first)."""
    n_latents: int = 32
    """Latents shown when `latents` is empty: the most frequently firing ones among those that fire at all."""
    latents: tuple[int, ...] = ()
    """Explicit latent ids to show (overrides `n_latents`); a latent that never fires gets a page saying so."""
    n_top: int = 16
    """Top-activating examples kept and shown per latent."""
    n_quantile_bins: int = 4
    """Activation-quantile intervals per latent (quantiles of its nonzero activations) ..."""
    n_per_quantile: int = 8
    """... and uniformly sampled examples shown from each."""
    thumb_size: int = 128
    """Side in pixels of the frame thumbnails in the grids (the stored frames are the policy's input: 128x128
    for the released models)."""
    grid_columns: int = 8
    """Thumbnails per row of an example grid."""
    batch_size: int = 512
    """Activation rows encoded by the SAE at a time (memory: batch_size x d_sae floats); also the most rows of one
    batched direct-effect step."""
    block_steps: int = 4096
    """Steps read from the store at a time."""
    direct_effect: bool = True
    """Compute the direct effect of each shown latent on the action heads (replays the episodes of its examples)."""
    n_effect_examples: int = 16
    """Top examples per latent used for the direct effect (at most n_top)."""
    n_effect_classes: int = 8
    """Button and camera classes listed per direction (most increased, most decreased) in the direct-effect table."""
    model: Path | None = None
    """Policy .model file for the direct effect (default: the one the run's provenance names; sha256 checked)."""
    weights: Path | None = None
    """Policy .weights file for the direct effect (default: the one the run's provenance names; sha256 checked)."""
    replay_tolerance: float = 1e-3
    """Largest |recorded - replayed| log-probability (nats) of a recorded action accepted while replaying."""
    seed: int = 0
    """Seed of the quantile-interval sampling."""
    device: str = "cpu"
    """Torch device for the SAE and the policy (e.g. cuda)."""

    def __post_init__(self):
        for name in ("n_top", "n_quantile_bins", "thumb_size", "grid_columns", "batch_size", "block_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("n_latents", "n_per_quantile", "n_effect_examples", "n_effect_classes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if any(i < 0 for i in self.latents):
            raise ValueError(f"latent ids must be >= 0, got {self.latents}")
        if self.replay_tolerance <= 0:
            raise ValueError(f"replay_tolerance must be > 0 nats, got {self.replay_tolerance}")


@dataclass
class DashboardResult:
    """What `compute` found: dashboard.json's content (without the image paths, which `main` adds), the frames the
    pages show, and the mean change of every action class's log-probability per latent."""

    report: dict
    thumbs: dict[tuple[int, int], np.ndarray]
    """(episode position, step) -> thumbnail (thumb_size, thumb_size, 3) uint8."""
    effect_arrays: dict[str, np.ndarray]
    """`buttons_<id>` (8641,) and `camera_<id>` (121,) float32 (direct_effect.npz)."""
    context: dict
    """Title, hook, episode names and step count for the pages."""


@dataclass
class _Inputs:
    sae: SAE
    run: Run
    episodes: list[Episode]
    policy: torch.nn.Module | None


def check_inputs(cfg: DashboardConfig) -> _Inputs:
    """Load and check everything before any work: the SAE, the run and its recording of the SAE's hook, the latent
    ids, the policy files for the direct effect."""
    sae = SAE.load(cfg.sae, device=cfg.device).eval()
    run, episodes = open_episodes(cfg.run)
    hook_name = sae.cfg.hook_name
    width = check_hook(episodes, hook_name, flatten=True)
    if width != sae.cfg.d_in:
        raise ValueError(
            f"{cfg.run}: the hook {hook_name!r} has {width} values per step, the SAE's d_in is {sae.cfg.d_in}; pass "
            "the run the SAE was trained on (or one recorded with the same policy)"
        )
    bad = [i for i in cfg.latents if i >= sae.cfg.d_sae]
    if bad:
        raise ValueError(f"latent ids {bad} out of range: the SAE has {sae.cfg.d_sae} latents (0..{sae.cfg.d_sae - 1})")
    policy = None
    if cfg.direct_effect:
        shas = {e.meta.agent.weights_sha256 for e in episodes}
        if len(shas) > 1:
            raise ValueError(f"{cfg.run}: episodes were recorded with different policies; make a dashboard per policy")
        policy = load_recording_policy(episodes[0], cfg.model, cfg.weights, cfg.device).eval()
    return _Inputs(sae, run, episodes, policy)


def compute(cfg: DashboardConfig) -> DashboardResult:
    """The statistics, samples and direct effects of the shown latents (nothing is written)."""
    inputs = check_inputs(cfg)
    sae, episodes = inputs.sae, inputs.episodes
    hook_name = sae.cfg.hook_name
    logger.info(
        "dashboard: SAE %s (%s, %d latents) on %d episodes, %d steps",
        cfg.sae, hook_name, sae.cfg.d_sae, len(episodes), sum(len(e) for e in episodes),
    )  # fmt: skip
    stats, offsets = data.first_pass(sae, episodes, cfg)
    fire_count = stats.fire_count.cpu().numpy()
    max_act = stats.max_act.cpu().numpy().astype(np.float64)
    hist = stats.histogram()
    latents = data.select_latents(fire_count, cfg)
    n_q = cfg.n_quantile_bins
    edges = np.zeros((0, n_q + 1))  # (shown latents, n_q + 1)
    if latents:
        edges = np.stack([data.quantile_edges(hist[s], float(max_act[s]), n_q) for s in latents])
    samples = data.quantile_samples(sae, episodes, cfg, latents, edges, offsets) if latents else None
    results, refs = data.latent_records(stats, offsets, latents, edges, samples)
    effect_arrays = {}
    if inputs.policy is not None and latents:
        effect_arrays = direct_effect.direct_effects_into(results, episodes, sae, inputs.policy, cfg)
    thumbs = data.read_thumbnails(episodes, refs, cfg.thumb_size)
    n_steps = stats.n_steps
    title = (
        f"SAE {cfg.sae} ({hook_name}, {sae.cfg.d_sae} latents) on {cfg.run}: {len(episodes)} episodes, {n_steps} steps"
    )
    context = {"title": title, "hook_name": hook_name, "episode_names": [e.path.name for e in episodes]}
    sae_cfg_path = Path(cfg.sae) / CFG_NAME
    report = {
        "schema": "vptlens.sae_dashboard",
        "schema_version": 1,
        "provenance": {
            **provenance(cfg, sae_dir=cfg.sae),
            "run": str(cfg.run),
            "recording": inputs.run.summary(),
            "sae_cfg": json.loads(sae_cfg_path.read_text()),
            "episodes": [str(e.path) for e in episodes],
        },
        "method": METHOD,
        "hook_name": hook_name,
        "d_sae": sae.cfg.d_sae,
        "n_steps": n_steps,
        "n_alive": int((fire_count > 0).sum()),
        "firing_counts": fire_count.tolist(),
        "max_activations": max_act.tolist(),
        "hist_inner_edges": data.HIST_EDGES.tolist(),
        "action_keys": stats.action_keys,
        "event_types": stats.event_types,
        "latents": results,
        "direct_effect_arrays": "direct_effect.npz" if effect_arrays else None,
    }
    return DashboardResult(report, thumbs, effect_arrays, {**context, "n_steps": n_steps})


def main(cfg: DashboardConfig) -> dict:
    """Write the dashboards of `cfg.sae`'s latents on `cfg.run` into `cfg.out`; return dashboard.json's content."""
    check_out(cfg.out, cfg.overwrite, cfg.run, cfg.sae)  # before any work, as compute checks the rest
    result = compute(cfg)
    out = make_out_dir(cfg.out, cfg.overwrite)
    write_pages(out, result.report["latents"], result.thumbs, result.context, cfg)
    if result.effect_arrays:
        np.savez_compressed(out / "direct_effect.npz", **result.effect_arrays)
    write_json(out / "dashboard.json", result.report)
    logger.info("dashboard: %d latent pages in %s", len(result.report["latents"]), out)
    return strict_json(result.report)
