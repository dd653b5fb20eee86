"""`vptlens sae eval`: reconstruction metrics of a saved SAE on held-out whole episodes, streamed, in float64.

NMSE = sum ||x - x_hat||^2 / sum ||x - mean(x)||^2, the mean taken over the same evaluation rows. The
denominator is accumulated in one pass with Chan et al.'s pairwise merge of per-batch means and
centred sums of squares (float64), which does not suffer the cancellation of sum(x^2) - n mean^2: a
predictor that outputs the eval mean scores 1.0 to ~1e-15 and a perfect reconstruction exactly 0.0.
Explained variance = 1 - sum_d Var(x_d - x_hat_d) / sum_d Var(x_d): like 1 - NMSE but not charging
a constant offset of the reconstruction.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import matplotlib
import numpy as np
import torch
import tyro
from jaxtyping import Float
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

import vptlens
from vptlens.probes.activation_buffer import activation_name, check_hook
from vptlens.probes.runs import load_run_policy
from vptlens.probes.sae import SAE
from vptlens.probes.splice import activation_mean, splice_kl
from vptlens.recordings.store import Episode, Run, git_commit, iter_blocks, write_json_atomic

matplotlib.use("Agg")
logger = logging.getLogger(__name__)

DEAD_WINDOW = 10_000_000
"""Rows without firing after which a latent counts as dead (or the whole eval set if smaller)."""
DENSE_FREQUENCY = 0.1
"""A latent firing on more than this share of rows counts as dense."""


class MomentAccumulator:
    """Streaming per-dimension mean and centred sum of squares in float64 (Chan et al.'s parallel merge)."""

    def __init__(self, d: int):
        self.n = 0
        self.mean = np.zeros(d, dtype=np.float64)
        self.m2 = np.zeros(d, dtype=np.float64)

    def update(self, x: Float[np.ndarray, "b d"]) -> None:
        x = np.asarray(x, dtype=np.float64)
        nb = x.shape[0]
        if nb == 0:
            return
        mean_b = x.mean(axis=0)
        m2_b = ((x - mean_b) ** 2).sum(axis=0)
        n = self.n + nb
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (nb / n)
        self.m2 = self.m2 + m2_b + delta**2 * (self.n * nb / n)
        self.n = n

    @property
    def total_m2(self) -> float:
        """sum over rows of ||x - mean||^2."""
        return float(self.m2.sum())


class NMSEAccumulator:
    """NMSE and explained variance over batches, float64; equal to the one-shot values on the concatenation."""

    def __init__(self, d: int):
        self.x = MomentAccumulator(d)
        self.resid = MomentAccumulator(d)
        self.sq_err = 0.0

    def update(self, x: Float[np.ndarray, "b d"], x_hat: Float[np.ndarray, "b d"]) -> None:
        x, x_hat = np.asarray(x, dtype=np.float64), np.asarray(x_hat, dtype=np.float64)
        if x.shape != x_hat.shape:
            raise ValueError(f"x has shape {x.shape}, x_hat {x_hat.shape}")
        resid = x - x_hat
        self.sq_err += float((resid**2).sum())
        self.x.update(x)
        self.resid.update(resid)

    @property
    def nmse(self) -> float:
        return self.sq_err / self.x.total_m2 if self.x.total_m2 > 0 else float("nan")

    @property
    def explained_variance(self) -> float:
        return 1.0 - self.resid.total_m2 / self.x.total_m2 if self.x.total_m2 > 0 else float("nan")


@torch.no_grad()
def reconstruction_metrics(
    sae: SAE,
    episodes: list[Episode],
    hook_name: str | None = None,
    batch_size: int = 4096,
    block_steps: int = 4096,
    device: str = "cpu",
    max_rows: int | None = None,
) -> dict:
    """NMSE, explained variance, L0, dead and dense latents of `sae` on the episodes' raw activations.

    Streams the episodes in order (at most `max_rows` rows). Dead: no firing in the last
    min(10M, rows) rows (a firing is dated to the end of its batch; with the whole eval set as the
    window, dead is exactly "never fired"); dense: firing on more than 1 in 10 rows. Also the per-latent firing
    frequencies (`latent_frequency`, for the histogram).
    """
    hook_name = hook_name or sae.cfg.hook_name
    d = check_hook(episodes, hook_name)
    if d != sae.cfg.d_in:
        raise ValueError(f"'{hook_name}' has width {d} in these episodes; the SAE reads d_in = {sae.cfg.d_in}")
    param = next(sae.parameters())
    sae = sae.to(device)
    acc = NMSEAccumulator(d)
    fire_count = torch.zeros(sae.cfg.d_sae, dtype=torch.int64, device=device)
    last_fired = torch.full((sae.cfg.d_sae,), -1, dtype=torch.int64, device=device)
    l0_sum, n_rows = 0.0, 0
    for _, _, block in iter_blocks(episodes, activation_name(hook_name), block_steps):
        if max_rows is not None:
            block = block[: max_rows - n_rows]
        for a in range(0, len(block), batch_size):
            x = torch.from_numpy(block[a : a + batch_size].astype(np.float32)).to(device, param.dtype)
            z = sae.encode(x)
            x_hat = sae.decode(z)
            fired = z > 0
            counts = fired.sum(0)
            fire_count += counts
            last_fired[counts > 0] = n_rows + x.shape[0] - 1  # to the batch's last row: exact enough for 10M
            l0_sum += float(fired.sum(dtype=torch.float64))
            acc.update(x.double().cpu().numpy(), x_hat.double().cpu().numpy())
            n_rows += x.shape[0]
        if max_rows is not None and n_rows >= max_rows:
            break
    if n_rows == 0:
        raise ValueError(f"no rows of '{hook_name}' in these episodes; nothing to evaluate")
    window = min(DEAD_WINDOW, n_rows)
    frequency = (fire_count.double() / n_rows).cpu().numpy()
    dead = (last_fired < n_rows - window).cpu().numpy()
    dense = frequency > DENSE_FREQUENCY
    return {
        "nmse": acc.nmse,
        "explained_variance": acc.explained_variance,
        "l0": l0_sum / n_rows,
        "n_rows": n_rows,
        "n_episodes": len(episodes),
        "dead_window_rows": window,
        "dead_fraction": float(dead.mean()),
        "n_dead": int(dead.sum()),
        "dense_fraction": float(dense.mean()),
        "n_dense": int(dense.sum()),
        "latent_frequency": frequency.tolist(),
    }


@dataclass(frozen=True)
class EvalConfig:
    """Reconstruction metrics of a saved SAE on held-out whole episodes: eval.json and a latent-frequency plot."""

    sae: tyro.conf.Positional[Path]
    """SAE directory written by `vptlens sae train` (cfg.json + sae_weights.safetensors)."""
    run: Path | None = None
    """Run directory to evaluate on; default: the run the SAE was trained on (its provenance)."""
    episodes: Literal["val", "all"] = "val"
    """val: the episodes held out in training (from the SAE's provenance); all: every complete episode of the run."""
    out: Path | None = None
    """Directory for eval.json and latent_frequency.png; default: the SAE directory."""
    batch_size: int = 4096
    """Rows encoded at a time."""
    block_steps: int = 4096
    """Steps per sequential read from the store."""
    max_rows: int | None = None
    """Evaluate at most this many rows (None: all of them)."""
    device: str = "cpu"
    """Torch device (e.g. cuda)."""
    behaviour: bool = True
    """Also splice the SAE into the policy that recorded the run and measure the KL of its action heads
    (against the KL of splicing in the activation's mean); needs the run's agent files."""
    behaviour_max_steps: int | None = None
    """Replay at most this many steps of each episode for the KL (None: whole episodes)."""
    model: Path | None = None
    """Policy .model file for the KL (default: the one the run's provenance names; sha256 checked)."""
    weights: Path | None = None
    """Policy .weights file for the KL (default: the one the run's provenance names; sha256 checked)."""

    def __post_init__(self):
        if self.batch_size < 1 or self.block_steps < 1:
            raise ValueError("batch_size and block_steps must be >= 1")
        if self.max_rows is not None and self.max_rows < 1:
            raise ValueError(f"max_rows must be >= 1 or None, got {self.max_rows}")


def eval_episodes(sae: SAE, cfg: EvalConfig) -> tuple[Path, list[Episode]]:
    """The run and the episodes `cfg` selects (the SAE's held-out ones by default)."""
    run_path = cfg.run or Path(sae.cfg.provenance.get("run", ""))
    if not (run_path / "run.json").is_file():
        raise FileNotFoundError(f"run {str(run_path)!r} not found; pass --run RUN_DIR")
    episodes = Run(run_path).episodes()
    if cfg.episodes == "all":
        return run_path, episodes
    names = sae.cfg.provenance.get("val_episodes")
    if not names:
        raise ValueError(f"{cfg.sae} records no held-out episodes; pass --episodes all (beware: those trained on)")
    by_name = {e.path.name: e for e in episodes}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise FileNotFoundError(f"{run_path} lacks the held-out episodes {missing}; pass --episodes all or another run")
    return run_path, [by_name[n] for n in names]


def main(cfg: EvalConfig) -> dict:
    """Compute the metrics, write eval.json and latent_frequency.png; returns the eval.json content."""
    sae = SAE.load(cfg.sae, device=cfg.device)
    run_path, episodes = eval_episodes(sae, cfg)
    logger.info("evaluating %s on %d episodes of %s", cfg.sae, len(episodes), run_path)
    metrics = reconstruction_metrics(
        sae, episodes, sae.cfg.hook_name, cfg.batch_size, cfg.block_steps, cfg.device, cfg.max_rows
    )
    frequency = np.asarray(metrics.pop("latent_frequency"))
    out_dir = cfg.out or cfg.sae
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {
        "sae": str(cfg.sae),
        "run": str(run_path),
        "hook_name": sae.cfg.hook_name,
        "architecture": sae.cfg.architecture,
        "d_in": sae.cfg.d_in,
        "d_sae": sae.cfg.d_sae,
        "episodes": [e.path.name for e in episodes],
        "episode_selection": cfg.episodes,
        "reconstruction": metrics,
        "package_version": vptlens.__version__,
        "git_commit": git_commit(),
    }
    logger.info(
        "nmse %.4f, explained variance %.4f, L0 %.1f, dead %.3f, dense %.3f",
        metrics["nmse"],
        metrics["explained_variance"],
        metrics["l0"],
        metrics["dead_fraction"],
        metrics["dense_fraction"],
    )
    if cfg.behaviour:
        result["behaviour"] = behaviour_metrics(sae, episodes, cfg)
    write_json_atomic(out_dir / "eval.json", result)
    save_frequency_plot(frequency, metrics["n_rows"], out_dir / "latent_frequency.png", str(cfg.sae))
    return result


def behaviour_metrics(sae: SAE, episodes: list[Episode], cfg: EvalConfig) -> dict:
    """KL(clean || spliced) of the button and camera heads with the SAE's reconstruction in place of the activation.

    Compared with splicing in the activation's mean over the same episodes (the zero-information
    baseline): `kl_recovered` = 1 - KL(SAE) / KL(mean) is the share of the behaviour the
    reconstruction keeps (1 = the policy acts as without the SAE). SAEs are judged by this, not
    by NMSE alone, because small reconstruction errors in the wrong directions can change actions.
    """
    policy = load_run_policy(episodes[0], cfg.model, cfg.weights, device=cfg.device)
    hook = sae.cfg.hook_name
    sae = sae.to(policy.device)
    mean = torch.from_numpy(activation_mean(episodes, hook)).to(policy.device, policy.dtype)

    def reconstruct(x: Tensor) -> Tensor:
        flat = x.reshape(*x.shape[:2], -1).to(sae.W_enc.dtype)
        return sae(flat).reshape(x.shape).to(x.dtype)

    kw = {"max_steps_per_episode": cfg.behaviour_max_steps}
    with torch.no_grad():
        spliced = splice_kl(policy, episodes, hook, reconstruct, **kw)
        ablated = splice_kl(policy, episodes, hook, lambda x: mean.reshape(x.shape[2:]).expand_as(x).clone(), **kw)
    recovered = 1.0 - spliced.kl_total / ablated.kl_total if ablated.kl_total > 0 else float("nan")
    logger.info(
        "KL with the SAE %.4g nats (buttons %.4g, camera %.4g), with the mean %.4g: %.1f%% recovered",
        spliced.kl_total, spliced.kl_buttons, spliced.kl_camera, ablated.kl_total, 100 * recovered,
    )  # fmt: skip
    return {"sae_splice": spliced.to_dict(), "mean_splice": ablated.to_dict(), "kl_recovered": recovered}


def save_frequency_plot(frequency: np.ndarray, n_rows: int, path: Path, title: str) -> None:
    """Histogram of log10 firing frequency; latents that never fired are drawn at log10(1/(10 n_rows))."""
    floor = np.log10(1.0 / (10 * n_rows))
    logf = np.where(frequency > 0, np.log10(np.maximum(frequency, 1e-300)), floor)
    fig = Figure(figsize=(6, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.hist(logf, bins=50)
    ax.axvline(np.log10(DENSE_FREQUENCY), color="r", lw=0.8, label="dense (> 1 in 10)")
    ax.axvline(floor, color="k", lw=0.8, ls=":", label=f"never fired ({int((frequency == 0).sum())})")
    ax.set_xlabel("log10 firing frequency")
    ax.set_ylabel("latents")
    ax.set_title(title[-60:], fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
