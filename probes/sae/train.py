"""`vptlens sae train`: train several SAEs side by side on one recorded activation, streamed from the store.

Every SAE of the sweep sees the same batches (the loading is paid once). Field practice: inputs
scaled to mean norm sqrt(d_in) (estimated from the first training blocks, folded back at save),
b_dec initialised at the data's geometric median (or mean), decoder rows at unit norm with the
gradient's parallel component removed, Adam with linear warmup and a linear (last 20%) or cosine
decay to 0, the AuxK loss of Gao et al. (2024) against dead latents for TopK and BatchTopK, a
linear L1 (L0) warmup for ReLU+L1 (JumpReLU), and BatchTopK's inference threshold set with the
final weights. Validation episodes (whole episodes) are held out and evaluated at the end.
"""

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import tyro

from vptlens.probes.report import make_out_dir, new_figure, save_figure, write_json
from vptlens.probes.sae import evaluate
from vptlens.probes.sae.buffer import ActivationBuffer, estimate_mean_norm, geometric_median, sample_rows
from vptlens.probes.sae.inputs import check_hook, check_out, open_episodes
from vptlens.probes.sae.model import SAE, SAEConfig, calibrate_thresholds
from vptlens.probes.sae.trainer import SAETrainer
from vptlens.recordings.schema import provenance
from vptlens.recordings.store import Episode

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Train sparse autoencoders on one recorded activation of a run (several side by side on the same batches)."""

    run: tyro.conf.Positional[Path]
    """Recorded run directory (`vptlens record --out`); its complete episodes are used (or one episode)."""
    hook: str
    """Hook whose stored activation to train on, e.g. blocks.1.hook_resid_post (see the run's episodes' `hooks`)."""
    out: Path
    """Output directory: one SAE per sweep entry in OUT/<name>/, plus train_log.json and train_curves.png."""
    architectures: tuple[str, ...] = ("topk:k=32",)
    """Sweep: SAEs trained side by side, as "topk:k=32", "batchtopk:k=32", "relu:l1=5", "jumprelu:l0=0.01"."""
    expansion_factor: int = 16
    """d_sae = expansion_factor x d_in."""
    lr: float = 4e-4
    """Adam learning rate at the end of warmup."""
    warmup_steps: int = 1000
    """Linear learning-rate warmup from 0, in steps."""
    decay: Literal["linear", "cosine"] = "linear"
    """linear: constant, then linear to 0 over the last `decay_fraction` of steps; cosine: cosine to 0 after warmup."""
    decay_fraction: float = 0.2
    """Share of the steps over which the linear decay runs."""
    batch_size: int = 4096
    """Activation rows per step."""
    buffer_rows: int = 262144
    """Shuffle buffer capacity in rows (float16; memory = rows x d_in x 2 bytes)."""
    total_activations: int = 50_000_000
    """Rows to train on (steps = this // batch_size); the training episodes are repeated as needed."""
    val_fraction: float = 0.1
    """Share of the episodes (whole episodes) held out for validation; 0 holds none out."""
    seed: int = 0
    """Seed of the split, the initialisation and the shuffle."""
    device: str = "cpu"
    """Torch device for training (e.g. cuda)."""
    log_every: int = 100
    """Log progress (rate, ETA, loss, L0, dead fraction) every this many steps."""
    b_dec_init: Literal["geometric_median", "mean"] = "geometric_median"
    """Initial decoder bias: the geometric median (Weiszfeld) or mean of a sample of training rows."""
    init_rows: int = 16384
    """Rows sampled (random windows of the training episodes) for the b_dec initialisation."""
    norm_estimate_rows: int = 65536
    """Rows (the first blocks) whose mean norm sets the input scale."""
    aux_k: int = 512
    """AuxK: dead latents used to model the residual (capped at half of d_sae)."""
    aux_coefficient: float = 1 / 32
    """AuxK loss weight (Gao et al. 2024)."""
    dead_window: int = 1_000_000
    """A latent is dead (for AuxK and the logged dead fraction) after this many rows without firing."""
    l1_warmup_fraction: float = 0.05
    """ReLU+L1 and JumpReLU: the L1 (L0) coefficient rises linearly from 0 over this share of the steps."""
    jumprelu_bandwidth: float = 0.2
    """JumpReLU: width of the rectangle kernel of the threshold's pseudo-derivatives (inputs at norm sqrt(d_in))."""
    jumprelu_init_threshold: float = 0.5
    """JumpReLU: initial threshold of every latent (same units; see SAEConfig.init_threshold)."""
    block_steps: int = 4096
    """Steps per sequential read from the store."""
    prefetch_batches: int = 4
    """Batches the background loader thread prepares ahead (0: load in the training thread)."""
    threshold_batches: int = 16
    """BatchTopK: training batches drawn after the last step to set the inference threshold with the final weights."""
    overwrite: bool = False
    """Replace an existing, non-empty OUT (its contents are deleted when the SAEs are saved)."""

    def __post_init__(self):
        for spec in self.architectures:
            parse_spec(spec)
        if not self.architectures:
            raise ValueError("architectures is empty; give at least one, e.g. topk:k=32")
        names = [parse_spec(s)[0] for s in self.architectures]
        if len(set(names)) != len(names):
            raise ValueError(f"architectures has duplicates: {list(self.architectures)}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 0 <= self.decay_fraction <= 1 or not 0 <= self.l1_warmup_fraction <= 1:
            raise ValueError("decay_fraction and l1_warmup_fraction must be in [0, 1]")
        names = ("expansion_factor", "batch_size", "total_activations", "log_every", "aux_k", "dead_window")
        for name in (*names, "threshold_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.buffer_rows < 2 * self.batch_size:
            raise ValueError(f"buffer_rows ({self.buffer_rows}) must be at least 2 x batch_size ({self.batch_size})")
        if self.lr <= 0 or self.warmup_steps < 0:
            raise ValueError(f"lr must be > 0 and warmup_steps >= 0, got {self.lr}, {self.warmup_steps}")
        for name in ("block_steps", "init_rows", "norm_estimate_rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.prefetch_batches < 0:
            raise ValueError(f"prefetch_batches must be >= 0, got {self.prefetch_batches}")

    @property
    def n_steps(self) -> int:
        return max(1, self.total_activations // self.batch_size)


def parse_spec(spec: str) -> tuple[str, str, int | None, float | None]:
    """ "topk:k=32" -> (name "topk-k_32", "topk", 32, None); "relu:l1=5" -> ("relu-l1_5", "relu", None, 5.0).

    The last item is the sparsity coefficient: L1 for relu, L0 for jumprelu ("jumprelu:l0=0.01").
    """
    arch, _, rest = spec.partition(":")
    params = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"bad sweep entry {spec!r}: write parameters as key=value, e.g. topk:k=32")
        params[key.strip()] = value.strip()
    try:
        if arch in ("topk", "batchtopk"):
            if set(params) != {"k"}:
                raise ValueError
            k, l1 = int(params["k"]), None
        elif arch == "relu":
            if set(params) != {"l1"}:
                raise ValueError
            k, l1 = None, float(params["l1"])
        elif arch == "jumprelu":
            if set(params) != {"l0"}:
                raise ValueError
            k, l1 = None, float(params["l0"])
        else:
            raise ValueError
    except ValueError:
        raise ValueError(
            f"bad sweep entry {spec!r}: use topk:k=INT, batchtopk:k=INT, relu:l1=FLOAT or jumprelu:l0=FLOAT"
        ) from None
    name = arch + "-" + "-".join(f"{key}_{value}" for key, value in params.items())
    return name, arch, k, l1


def split_episodes(episodes: list[Episode], val_fraction: float, seed: int) -> tuple[list[Episode], list[Episode]]:
    """Hold out whole episodes: round(val_fraction x n), at least 1 when val_fraction > 0, leaving >= 1 to train."""
    n = len(episodes)
    n_val = 0 if val_fraction == 0 else min(n - 1, max(1, round(val_fraction * n)))
    perm = np.random.default_rng(seed).permutation(n)
    val = sorted(perm[:n_val].tolist())
    return [e for i, e in enumerate(episodes) if i not in val], [episodes[i] for i in val]


def make_saes(cfg: TrainConfig, d_in: int, b_dec: np.ndarray) -> dict[str, SAE]:
    saes = {}
    for spec in cfg.architectures:
        name, arch, k, coefficient = parse_spec(spec)
        sae_cfg = SAEConfig(
            d_in=d_in,
            d_sae=cfg.expansion_factor * d_in,
            architecture=arch,
            k=k,
            l1_coefficient=coefficient if arch == "relu" else None,
            l0_coefficient=coefficient if arch == "jumprelu" else None,
            bandwidth=cfg.jumprelu_bandwidth,
            init_threshold=cfg.jumprelu_init_threshold,
            hook_name=cfg.hook,
            device=cfg.device,
        )
        sae = SAE(sae_cfg, generator=torch.Generator().manual_seed(cfg.seed))  # same init across the sweep
        with torch.no_grad():
            sae.b_dec.copy_(torch.from_numpy(b_dec))
        saes[name] = sae.to(cfg.device)
    return saes


@dataclass
class TrainResult:
    """The trained SAEs (reading raw activations), each with its provenance, and the training log."""

    saes: dict[str, SAE]
    provenance: dict[str, dict]
    """Per SAE: what `SAE.save` records beside its config."""
    log: dict
    """train_log.json: config, provenance, rates, `history` of the logged steps, each SAE's validation metrics."""


def check_inputs(cfg: TrainConfig) -> tuple[list[Episode], int]:
    """The run's episodes and the hook's width; raises on a bad run or hook before any work."""
    _, episodes = open_episodes(cfg.run)
    d_in = check_hook(episodes, cfg.hook)
    if len(episodes) < 2 and cfg.val_fraction > 0:
        raise ValueError(
            f"{cfg.run} has {len(episodes)} complete episode(s); holding out whole episodes needs 2+ "
            "(or pass --val-fraction 0)"
        )
    return episodes, d_in


def compute(cfg: TrainConfig) -> TrainResult:
    """Train the sweep (nothing is written)."""
    episodes, d_in = check_inputs(cfg)
    train_eps, val_eps = split_episodes(episodes, cfg.val_fraction, cfg.seed)
    mean_norm = estimate_mean_norm(train_eps, cfg.hook, cfg.norm_estimate_rows, cfg.block_steps)
    scale = math.sqrt(d_in) / mean_norm
    sample = sample_rows(train_eps, cfg.hook, cfg.init_rows, cfg.seed) * scale
    b_dec = geometric_median(sample) if cfg.b_dec_init == "geometric_median" else sample.mean(0)
    saes = make_saes(cfg, d_in, b_dec.astype(np.float32))
    n_steps = cfg.n_steps
    trainers = {
        name: SAETrainer(
            sae,
            cfg.lr,
            n_steps,
            cfg.warmup_steps,
            cfg.decay,
            cfg.decay_fraction,
            cfg.aux_k,
            cfg.aux_coefficient,
            cfg.dead_window,
            int(cfg.l1_warmup_fraction * n_steps),
        )
        for name, sae in saes.items()
    }
    logger.info(
        "training %s on %s of %s: d_in %d, d_sae %d, %d steps of %d rows, %d train / %d val episodes, scale %.4g",
        list(saes),
        cfg.hook,
        cfg.run,
        d_in,
        cfg.expansion_factor * d_in,
        n_steps,
        cfg.batch_size,
        len(train_eps),
        len(val_eps),
        scale,
    )
    buffer = ActivationBuffer(
        train_eps,
        cfg.hook,
        cfg.batch_size,
        cfg.buffer_rows,
        cfg.seed,
        n_epochs=None,
        block_steps=cfg.block_steps,
        prefetch_batches=cfg.prefetch_batches,
        float16=not cfg.device.startswith("cpu"),  # convert on the accelerator
    )
    history: list[dict] = []
    n_rows, wait_s = 0, 0.0
    start = time.perf_counter()
    batches = iter(buffer)
    for step in range(n_steps):
        t0 = time.perf_counter()
        x = next(batches).to(cfg.device, non_blocking=True).float() * scale
        wait_s += time.perf_counter() - t0
        stats = {name: trainer.step(x) for name, trainer in trainers.items()}
        n_rows += x.shape[0]
        if (step + 1) % cfg.log_every == 0 or step + 1 == n_steps:
            elapsed = time.perf_counter() - start
            rate = n_rows / elapsed
            record = {
                "step": step + 1,
                "rows": n_rows,
                "elapsed_s": elapsed,
                "rows_per_s": rate,
                "loader_wait_fraction": wait_s / elapsed,
                "saes": {name: {key: float(v) for key, v in s.items()} for name, s in stats.items()},
            }
            history.append(record)
            eta = (n_steps - step - 1) * cfg.batch_size / rate
            summary = "; ".join(
                f"{name} loss {s['loss']:.4g} nmse {s['nmse']:.3f} L0 {s['l0']:.1f} dead {s['dead_fraction']:.3f}"
                for name, s in record["saes"].items()
            )
            logger.info("step %d/%d, %.0f rows/s, ETA %.0f s: %s", step + 1, n_steps, rate, eta, summary)
    thresholds = {}
    batchtopk = {name: t.sae for name, t in trainers.items() if t.sae.cfg.architecture == "batchtopk"}
    if batchtopk:
        running = {name: float(sae.threshold[0]) for name, sae in batchtopk.items()}
        calibration = (next(batches).to(cfg.device).float() * scale for _ in range(cfg.threshold_batches))
        calibrated = calibrate_thresholds(list(batchtopk.values()), calibration)
        for name, value in zip(batchtopk, calibrated):
            thresholds[name] = {"running_average": running[name], "calibrated": value}
            logger.info("%s: inference threshold %.4g (running average %.4g)", name, value, running[name])
    batches.close()
    elapsed = time.perf_counter() - start
    common = {
        **provenance(cfg),
        "run": str(Path(cfg.run).resolve()),
        "hook": cfg.hook,
        "steps": n_steps,
        "rows_trained": n_rows,
        "seed": cfg.seed,
        "episodes": [e.path.name for e in train_eps],
        "val_episodes": [e.path.name for e in val_eps],
        "input_scale": scale,
        "input_mean_norm": mean_norm,
        "b_dec_init": cfg.b_dec_init,
    }
    saes, provenances, results = {}, {}, {}
    for name, trainer in trainers.items():
        saes[name] = raw = trainer.sae.fold_scale(scale)
        extra = (
            {"threshold_scaled_inputs": thresholds[name], "threshold_batches": cfg.threshold_batches}
            if name in thresholds
            else {}
        )
        provenances[name] = {**common, "spec": name, **extra}
        val = evaluate.reconstruction_metrics(raw, val_eps, cfg.hook, device=cfg.device) if val_eps else None
        if val is not None:
            logger.info("%s on %d val episodes: nmse %.4f, L0 %.1f", name, len(val_eps), val["nmse"], val["l0"])
        results[name] = {"dir": str(cfg.out / name), "val": val}
    log = {
        "config": common["config"],
        "provenance": common,
        "elapsed_s": elapsed,
        "rows_per_s": n_rows / elapsed,
        "loader_wait_fraction": wait_s / elapsed,
        "history": history,
        "saes": results,
    }
    return TrainResult(saes, provenances, log)


def main(cfg: TrainConfig) -> dict:
    """Train the sweep; save OUT/<name>/ (cfg.json + sae_weights.safetensors), train_log.json, train_curves.png.
    Returns train_log.json's content."""
    check_out(cfg.out, cfg.overwrite, cfg.run)  # before any work, as compute checks the run and the hook
    result = compute(cfg)
    out = make_out_dir(cfg.out, cfg.overwrite)
    for name, sae in result.saes.items():
        sae.save(out / name, result.provenance[name])
    path = write_json(out / "train_log.json", result.log)
    save_curves(result.log["history"], out / "train_curves.png")
    return json.loads(path.read_text())


def save_curves(history: list[dict], path: Path) -> None:
    """Loss, batch NMSE, L0 and dead fraction against rows seen, one line per SAE."""
    fig = new_figure(figsize=(12, 3.2))
    keys = ("loss", "nmse", "l0", "dead_fraction")
    axes = fig.subplots(1, len(keys))
    rows = [r["rows"] for r in history]
    names = list(history[0]["saes"]) if history else []
    for ax, key in zip(axes, keys):
        for name in names:
            ax.plot(rows, [r["saes"][name][key] for r in history], label=name)
        ax.set_title(key)
        ax.set_xlabel("rows")
        if key in ("loss", "nmse"):
            ax.set_yscale("log")
    if names:
        axes[0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
