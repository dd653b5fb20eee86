"""`vptlens sae eval`: reconstruction metrics of a saved SAE on held-out whole episodes, streamed, in float64, and the
KL of the action heads when it is spliced into the policy.

NMSE = sum ||x - x_hat||^2 / sum ||x - mean(x)||^2, the mean taken over the same evaluation rows. The
denominator is accumulated in one pass by scikit-learn's incremental variance (Chan et al.'s pairwise
merge of per-batch means and centred sums of squares, float64), which does not suffer the
cancellation of sum(x^2) - n mean^2: a
predictor that outputs the eval mean scores 1.0 to ~1e-15 and a perfect reconstruction exactly 0.0.
Explained variance = 1 - sum_d Var(x_d - x_hat_d) / sum_d Var(x_d): like 1 - NMSE but not charging
a constant offset of the reconstruction.
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import tyro
from jaxtyping import Float
from sklearn.preprocessing import StandardScaler
from torch import Tensor

from vptlens.agents.policy import VPTPolicy
from vptlens.probes.report import Null, check_out_dir, make_out_dir, new_figure, save_figure, write_json
from vptlens.probes.sae.inputs import check_hook
from vptlens.probes.sae.model import SAE
from vptlens.probes.sae.splice import activation_mean, splice_kl
from vptlens.recordings.replayer import load_recording_policy
from vptlens.recordings.schema import MANIFEST_FILE, provenance
from vptlens.recordings.store import Episode, Run, iter_blocks

logger = logging.getLogger(__name__)

DEAD_WINDOW = 10_000_000
"""Rows without firing after which a latent counts as dead (or the whole eval set if smaller)."""
DENSE_FREQUENCY = 0.1
"""A latent firing on more than this share of rows counts as dense."""


class MomentAccumulator:
    """Streaming per-dimension mean and centred sum of squares in float64: scikit-learn's incremental mean and
    variance (`StandardScaler.partial_fit`, Chan et al.'s pairwise update)."""

    def __init__(self, d: int):
        self.d = d
        self._scaler = StandardScaler(copy=False)

    def update(self, x: Float[np.ndarray, "b d"]) -> None:
        x = np.asarray(x, dtype=np.float64)
        if x.shape[0]:
            self._scaler.partial_fit(x)

    @property
    def n(self) -> int:
        return int(getattr(self._scaler, "n_samples_seen_", 0))

    @property
    def mean(self) -> np.ndarray:
        return self._scaler.mean_ if self.n else np.zeros(self.d)

    @property
    def total_m2(self) -> float:
        """sum over rows of ||x - mean||^2."""
        return float(self._scaler.var_.sum() * self.n) if self.n else 0.0


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
    for _, _, block in iter_blocks(episodes, lambda e: e.activation(hook_name), block_steps):
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
    overwrite: bool = False
    """Replace an earlier evaluation: a non-empty OUT (emptied first), or eval.json in the SAE directory."""
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
        if self.behaviour_max_steps is not None and self.behaviour_max_steps < 1:
            raise ValueError(f"behaviour_max_steps must be >= 1 or None, got {self.behaviour_max_steps}")

    @property
    def in_sae_dir(self) -> bool:
        """Whether the results go into the SAE's own directory (then only they are replaced, never the SAE)."""
        return self.out is None or Path(self.out).resolve() == Path(self.sae).resolve()

    @property
    def out_dir(self) -> Path:
        return Path(self.sae) if self.out is None else Path(self.out)


OUTPUTS = ("eval.json", "latent_frequency.png")


def check_out(cfg: EvalConfig) -> None:
    """Refuse to overwrite an earlier evaluation unless --overwrite (writes nothing)."""
    if not cfg.in_sae_dir:
        check_out_dir(cfg.out_dir, cfg.overwrite)
        return
    done = [name for name in OUTPUTS if (cfg.out_dir / name).exists()]
    if done and not cfg.overwrite:
        raise FileExistsError(
            f"{cfg.out_dir} already holds {done} of an earlier evaluation; pass --overwrite to replace them, "
            "or --out DIR"
        )


def eval_episodes(sae: SAE, cfg: EvalConfig) -> tuple[Path, list[Episode]]:
    """The run and the episodes `cfg` selects (the SAE's held-out ones by default); the SAE's hook checked in them."""
    run_path = Path(cfg.run or sae.cfg.provenance.get("run", ""))
    if not (run_path / MANIFEST_FILE).is_file():
        raise FileNotFoundError(f"run {str(run_path)!r} not found; pass --run RUN_DIR")
    episodes = Run(run_path).episodes()
    if cfg.episodes == "val":
        names = sae.cfg.provenance.get("val_episodes")
        if not names:
            raise ValueError(f"{cfg.sae} records no held-out episodes; pass --episodes all (beware: those trained on)")
        by_name = {e.path.name: e for e in episodes}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise FileNotFoundError(
                f"{run_path} lacks the held-out episodes {missing}; pass --episodes all or another --run"
            )
        episodes = [by_name[n] for n in names]
    if not episodes:
        raise ValueError(f"{run_path}: no complete episodes to evaluate on")
    d = check_hook(episodes, sae.cfg.hook_name)
    if d != sae.cfg.d_in:
        raise ValueError(
            f"'{sae.cfg.hook_name}' has width {d} in {run_path}; the SAE reads d_in = {sae.cfg.d_in}. "
            "Pass the run the SAE was trained on (--run)"
        )
    return run_path, episodes


@dataclass
class EvalResult:
    """What `vptlens sae eval` found: eval.json's content (`report`) and the per-latent firing frequencies."""

    report: dict
    frequency: np.ndarray
    """(d_sae,) share of the rows on which each latent fired."""


def compute(cfg: EvalConfig) -> EvalResult:
    """The metrics (nothing is written). The run, the hook and the policy files are checked before any work."""
    sae = SAE.load(cfg.sae, device=cfg.device)
    run_path, episodes = eval_episodes(sae, cfg)
    policy = load_recording_policy(episodes[0], cfg.model, cfg.weights, device=cfg.device) if cfg.behaviour else None
    logger.info("evaluating %s on %d episodes of %s", cfg.sae, len(episodes), run_path)
    metrics = reconstruction_metrics(
        sae, episodes, sae.cfg.hook_name, cfg.batch_size, cfg.block_steps, cfg.device, cfg.max_rows
    )
    frequency = np.asarray(metrics.pop("latent_frequency"))
    report = {
        "sae": str(cfg.sae),
        "run": str(run_path),
        "hook_name": sae.cfg.hook_name,
        "architecture": sae.cfg.architecture,
        "d_in": sae.cfg.d_in,
        "d_sae": sae.cfg.d_sae,
        "episodes": [e.path.name for e in episodes],
        "episode_selection": cfg.episodes,
        "reconstruction": metrics,
        "provenance": provenance(cfg, sae_dir=cfg.sae, run_dir=run_path),
    }
    logger.info(
        "nmse %.4f, explained variance %.4f, L0 %.1f, dead %.3f, dense %.3f",
        metrics["nmse"],
        metrics["explained_variance"],
        metrics["l0"],
        metrics["dead_fraction"],
        metrics["dense_fraction"],
    )
    if policy is not None:
        report["behaviour"] = behaviour_metrics(sae, episodes, policy, cfg.behaviour_max_steps)
    return EvalResult(report, frequency)


def main(cfg: EvalConfig) -> dict:
    """Compute the metrics, write eval.json and latent_frequency.png; returns the eval.json content."""
    check_out(cfg)
    result = compute(cfg)
    out_dir = cfg.out_dir if cfg.in_sae_dir else make_out_dir(cfg.out_dir, cfg.overwrite)
    path = write_json(out_dir / "eval.json", result.report)
    n_rows = result.report["reconstruction"]["n_rows"]
    save_frequency_plot(result.frequency, n_rows, out_dir / "latent_frequency.png", str(cfg.sae))
    return json.loads(path.read_text())


def behaviour_metrics(sae: SAE, episodes: list[Episode], policy: VPTPolicy, max_steps: int | None = None) -> dict:
    """KL(clean || spliced) of the button and camera heads with the SAE's reconstruction in place of the activation.

    Compared with splicing in the activation's mean over the same episodes (the zero-information
    baseline): `kl_recovered` = 1 - KL(SAE) / KL(mean) is the share of the behaviour the
    reconstruction keeps (1 = the policy acts as without the SAE). SAEs are judged by this, not
    by NMSE alone, because small reconstruction errors in the wrong directions can change actions.
    """
    hook = sae.cfg.hook_name
    sae = sae.to(policy.device)
    mean = torch.from_numpy(activation_mean(episodes, hook)).to(policy.device, policy.dtype)

    def reconstruct(x: Tensor) -> Tensor:
        flat = x.reshape(x.shape[0], -1).to(sae.W_enc.dtype)
        return sae(flat).reshape(x.shape).to(x.dtype)

    kw = {"max_steps_per_episode": max_steps}
    with torch.no_grad():
        spliced = splice_kl(policy, episodes, hook, reconstruct, **kw)
        ablated = splice_kl(policy, episodes, hook, lambda x: mean.reshape(x.shape[1:]).expand_as(x).clone(), **kw)
    if ablated.kl_total > 0:
        recovered = 1.0 - spliced.kl_total / ablated.kl_total
    else:
        recovered = Null("splicing in the mean changes no action distribution (KL 0): nothing to recover")
    logger.info(
        "KL with the SAE %.4g nats (buttons %.4g, camera %.4g), with the mean %.4g: %s recovered",
        spliced.kl_total, spliced.kl_buttons, spliced.kl_camera, ablated.kl_total,
        "n/a" if isinstance(recovered, Null) else f"{100 * recovered:.1f}%",
    )  # fmt: skip
    return {"sae_splice": spliced.to_dict(), "mean_splice": ablated.to_dict(), "kl_recovered": recovered}


def save_frequency_plot(frequency: np.ndarray, n_rows: int, path: Path, title: str) -> None:
    """Histogram of log10 firing frequency; latents that never fired are drawn at log10(1/(10 n_rows))."""
    floor = np.log10(1.0 / (10 * n_rows))
    logf = np.where(frequency > 0, np.log10(np.maximum(frequency, 1e-300)), floor)
    fig = new_figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.hist(logf, bins=50)
    ax.axvline(np.log10(DENSE_FREQUENCY), color="r", lw=0.8, label="dense (> 1 in 10)")
    ax.axvline(floor, color="k", lw=0.8, ls=":", label=f"never fired ({int((frequency == 0).sum())})")
    ax.set_xlabel("log10 firing frequency")
    ax.set_ylabel("latents")
    ax.set_title(title[-60:], fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
