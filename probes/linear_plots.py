"""The figures of `vptlens probe`: metrics per hook against the baselines, out-of-fold ROC curves and scatters."""

from pathlib import Path

import numpy as np

from vptlens.probes import report
from vptlens.probes.linear_stats import BINARY_METRICS, REGRESSION_METRICS, roc_curve


def plot_metrics(name: str, result: dict, path: Path) -> None:
    """Per hook the mean metric over folds with its 95% CI; the majority/mean and CNN probes as lines."""
    kind = result["kind"]
    metrics = BINARY_METRICS if kind == "binary" else REGRESSION_METRICS
    hooks = result["hooks"]
    fig = report.new_figure(figsize=(max(4.5, 1.1 * len(hooks) + 2) * len(metrics) / 1.5, 4.2))
    for j, metric in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), j + 1)
        means = [result["probes"][h]["summary"][metric]["mean"] for h in hooks]
        cis = [result["probes"][h]["summary"][metric]["ci95"] for h in hooks]
        err = np.array([[m - c[0], c[1] - m] if np.all(np.isfinite(c)) else [0, 0] for m, c in zip(means, cis)]).T
        x = np.arange(len(hooks))
        ax.bar(x, means, yerr=err, capsize=4, color="#4c72b0", alpha=0.85, label="probe (mean, 95% CI)")
        base = result["baseline"]["summary"][metric]["mean"]
        base_name = "majority class" if kind == "binary" else "train mean"
        ax.axhline(base, color="#c44e52", ls="--", lw=1.5, label=f"{base_name} ({base:.3g})")
        cnn = result.get("cnn_baseline")
        if cnn is not None:
            cnn_mean = result["probes"][cnn]["summary"][metric]["mean"]
            ax.axhline(cnn_mean, color="#55a868", ls=":", lw=2, label=f"probe on {cnn} ({cnn_mean:.3g})")
        for xi, m in zip(x, means):
            if np.isfinite(m):
                ax.annotate(f"{m:.3g}", (xi, m), xytext=(0, 3 if m >= 0 else -10), textcoords="offset points",
                            ha="center", fontsize=7)  # fmt: skip
        ax.set_xticks(x, hooks, fontsize=7, rotation=30, ha="right")
        ax.set_title(metric)
        finite = [v for v in [*means, base] if np.isfinite(v)]
        if metric in ("accuracy", "balanced_accuracy", "auroc"):
            ax.set_ylim(0, 1.08)
        elif metric == "r2":  # R^2 is unbounded below: show every mean, cut the intervals instead
            ax.set_ylim(min([0.0, *finite]) * 1.15 - 0.05, 1.08)
        else:
            ax.set_ylim(0, max([1e-12, *finite]) * 1.6)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.32), frameon=False)
    fig.suptitle(f"{name} ({kind}): {result['n_steps']} steps, {result['n_episodes']} episodes, "
                 f"{result['n_folds']} episode folds", fontsize=10)  # fmt: skip
    report.save_figure(fig, path)


def plot_roc(name: str, result: dict, y: np.ndarray, folds: np.ndarray, oof: dict, path: Path) -> None:
    """ROC curves of the best hook: each test fold (thin) and all out-of-fold scores pooled; the CNN probe dashed."""
    best, cnn = result["best_hook"], result.get("cnn_baseline")
    fig = report.new_figure(figsize=(5, 5))
    ax = fig.add_subplot(1, 1, 1)
    for f in np.unique(folds):
        sel = (folds == f) & np.isfinite(oof[best])
        if len(np.unique(y[sel])) == 2:
            ax.plot(*roc_curve(y[sel], oof[best][sel]), color="#4c72b0", alpha=0.35, lw=1)
    sel = np.isfinite(oof[best])
    auc = result["probes"][best]["summary"]["auroc"]
    ax.plot(*roc_curve(y[sel], oof[best][sel]), color="#4c72b0", lw=2.5,
            label=f"{best}: AUROC {auc['mean']:.3f} [{auc['ci95'][0]:.3f}, {auc['ci95'][1]:.3f}]")  # fmt: skip
    if cnn is not None and cnn != best:
        sel = np.isfinite(oof[cnn])
        a = result["probes"][cnn]["summary"]["auroc"]["mean"]
        ax.plot(*roc_curve(y[sel], oof[cnn][sel]), color="#55a868", ls="--", lw=1.8, label=f"{cnn}: AUROC {a:.3f}")
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1, label="chance / majority class")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"{name}: out-of-fold ROC (thin: single test folds)", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    report.save_figure(fig, path)


def plot_scatter(name: str, result: dict, y: np.ndarray, oof: dict, path: Path, seed: int) -> None:
    """Out-of-fold prediction against the true value for the best hook (at most 5000 points), with y = x."""
    best = result["best_hook"]
    sel = np.flatnonzero(np.isfinite(oof[best]))
    if len(sel) > 5000:
        sel = np.sort(np.random.default_rng(seed).choice(sel, 5000, replace=False))
    fig = report.new_figure(figsize=(5, 5))
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(y[sel], oof[best][sel], s=6, alpha=0.5, color="#4c72b0")
    lo, hi = float(min(y[sel].min(), oof[best][sel].min())), float(max(y[sel].max(), oof[best][sel].max()))
    ax.plot([lo, hi], [lo, hi], color="grey", ls=":", lw=1, label="y = x")
    r2 = result["probes"][best]["summary"]["r2"]
    ax.set_xlabel(f"true {name} ({result['units']})")
    ax.set_ylabel("probe prediction (out of fold)")
    ax.set_title(f"{name} from {best}\nR^2 {r2['mean']:.3f} [{r2['ci95'][0]:.3f}, {r2['ci95'][1]:.3f}]", fontsize=10)
    ax.legend(fontsize=7)
    report.save_figure(fig, path)
