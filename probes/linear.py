"""Linear probes: how linearly decodable is a ground-truth label from a recorded activation?

For each (label, hook) a logistic probe (binary labels) or a ridge probe (regression labels)
is cross-validated with folds made of whole EPISODES: consecutive frames are nearly
identical, so frame-level splits would let a probe memorise episodes and score what it has
seen. Features are standardised with the training fold's statistics only. Reported per fold
and as a mean with a 95% t-interval over folds, next to two baselines on the same folds: the
majority class (train mean for regression) and the same probe on the raw CNN output
`img.hook_out`.

Memory is linear in the number of steps: activations are streamed from the store episode by
episode (only the arrays needed), kept in float16 as recorded, and the probes work through
them in row chunks: ridge from per-fold sufficient statistics (d x d, never n x n), logistic
regression by full-batch L-BFGS with a hand-written chunked gradient.
"""

import datetime as dt
import fnmatch
import json
import logging
import math
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import tyro
from jaxtyping import Float, Int, Real, Shaped
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor
from tqdm import tqdm

import vptlens
from vptlens.probes.labels import Label, LabelSource, compute_label, get_label
from vptlens.recordings.store import Episode, git_commit, iter_blocks, open_episodes

logger = logging.getLogger(__name__)

CHUNK_ROWS = 16384
"""Rows of activations converted to float32/float64 at a time."""
BINARY_METRICS = ("accuracy", "balanced_accuracy", "auroc")
REGRESSION_METRICS = ("r2", "mse")
PRIMARY_METRIC = {"binary": "auroc", "regression": "r2"}


@dataclass(frozen=True)
class ProbeConfig:
    """Cross-validated linear probes from recorded activations to ground-truth labels."""

    run: tyro.conf.Positional[Path]
    """Run directory written by `vptlens record` (its complete episodes), or one episode directory."""
    out: Path = Path("runs/probe")
    """Output directory: probe.json and the plots."""
    labels: tuple[str, ...] = (
        "villager_visible",
        "crosshair_on_villager",
        "crosshair_distance",
        "nearest_tree_distance",
        "pitch",
    )
    """Labels to probe (names in vptlens.probes.labels.LABELS; an unknown name lists them). A label that cannot be
    probed in this run (not recorded, one class, constant, or defined in fewer than 2 episodes) is skipped with its
    reason."""
    hooks: tuple[str, ...] = ("*.hook_*",)
    """Recorded activations to probe, names or wildcards matched against the run's `activations/` (e.g.
    `blocks.*.hook_resid_post`); `attention/L0` or `attention/*` probes flattened attention patterns."""
    baseline_hook: str | None = "img.hook_out"
    """The raw CNN output, probed the same way as a baseline when the run recorded it (None: no such baseline)."""
    n_folds: int = 5
    """Cross-validation folds of whole episodes (leave-one-episode-out when the run has fewer episodes)."""
    l2: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
    """L2 penalty: the probe minimises mean loss + l2/2 * |w|^2 on standardised features (intercept free). One
    value: used as is. Several: chosen for each test fold by an inner cross-validation over the other folds
    (whole episodes again; the primary metric, AUROC or R^2), so the test episodes never pick it."""
    balance_classes: bool = True
    """Logistic probes: weight the classes equally in the loss (the threshold then targets balanced accuracy)."""
    max_steps: int = 200_000
    """At most this many steps are used (a seeded uniform subsample of the steps where some label is defined)."""
    max_iter: int = 200
    """L-BFGS iterations of each logistic probe."""
    seed: int = 0
    """Seed of the fold assignment and of the step subsample."""
    block_steps: int = 4096
    """Steps read from the store at a time."""
    device: str = "cpu"
    """Torch device for the probes' arithmetic (e.g. cuda)."""

    def __post_init__(self):
        if not self.labels:
            raise ValueError("give at least one label (--labels NAME ...)")
        for name in self.labels:
            get_label(name)  # KeyError listing the known labels
        if not self.hooks:
            raise ValueError("give at least one hook name or wildcard (--hooks 'blocks.*.hook_resid_post')")
        if self.n_folds < 2:
            raise ValueError(f"n_folds must be at least 2, got {self.n_folds}")
        if not self.l2 or not all(v >= 0 for v in self.l2):
            raise ValueError(f"l2 needs one or more values >= 0, got {self.l2}")
        if self.max_steps < 2 or self.max_iter < 1 or self.block_steps < 1:
            raise ValueError("max_steps must be >= 2, max_iter and block_steps >= 1")


# ---------------------------------------------------------------- splits


def episode_folds(n_steps: Sequence[int], n_folds: int, seed: int = 0) -> Int[np.ndarray, " e"]:
    """The fold of each episode: `n_folds` groups of whole episodes with balanced step counts.

    Fewer episodes than folds gives leave-one-episode-out (fold i = episode i). Seeded: the
    episodes are shuffled, then placed largest first into the fold with the fewest steps.
    """
    n_episodes = len(n_steps)
    if n_episodes < 2:
        raise ValueError(
            f"cross-validation by episode needs at least 2 episodes, the run has {n_episodes}; record more episodes"
        )
    if n_episodes <= n_folds:
        return np.arange(n_episodes)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_episodes)
    order = order[np.argsort(-np.asarray(n_steps)[order], kind="stable")]
    totals, counts = np.zeros(n_folds, np.int64), np.zeros(n_folds, np.int64)
    folds = np.empty(n_episodes, np.int64)
    for e in order:
        f = min(range(n_folds), key=lambda i: (totals[i], counts[i], i))
        folds[e] = f
        totals[f] += n_steps[e]
        counts[f] += 1
    return folds


def fold_indices(folds: Int[np.ndarray, " n"]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, test rows) for each fold id present in a per-row fold assignment, in fold order."""
    return [(np.flatnonzero(folds != f), np.flatnonzero(folds == f)) for f in np.unique(folds)]


# ---------------------------------------------------------------- metrics


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    boundaries = np.flatnonzero(np.diff(xs) != 0) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(x)]])
    ranks = np.empty(len(x), np.float64)
    ranks[order] = np.repeat((starts + 1 + ends) / 2.0, ends - starts)  # 1-based mean rank of each tie group
    return ranks


def auroc(y: Shaped[np.ndarray, " n"], score: Real[np.ndarray, " n"]) -> float:
    """Area under the ROC curve from ranks (Mann-Whitney U), ties counting one half; NaN with one class."""
    y = np.asarray(y).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(np.asarray(score, np.float64))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(y: Shaped[np.ndarray, " n"], score: Real[np.ndarray, " n"]) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct threshold, from (0, 0) to (1, 1)."""
    y = np.asarray(y).astype(bool)
    score = np.asarray(score, np.float64)
    order = np.argsort(-score, kind="mergesort")
    ys, ss = y[order], score[order]
    last = np.concatenate([np.flatnonzero(np.diff(ss) != 0), [len(ss) - 1]]) if len(ss) else np.zeros(0, int)
    tps, fps = np.cumsum(ys)[last], np.cumsum(~ys)[last]
    n_pos, n_neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    return np.concatenate([[0.0], fps / n_neg]), np.concatenate([[0.0], tps / n_pos])


def binary_metrics(y: Shaped[np.ndarray, " n"], prob: Real[np.ndarray, " n"], threshold: float = 0.5) -> dict:
    """accuracy, balanced accuracy (mean recall over the classes present) and AUROC of scores for 0/1 labels."""
    y = np.asarray(y).astype(bool)
    pred = np.asarray(prob, np.float64) >= threshold
    recalls = [float(np.mean(pred[y == c] == c)) for c in (False, True) if np.any(y == c)]
    return {
        "accuracy": float(np.mean(pred == y)) if len(y) else float("nan"),
        "balanced_accuracy": float(np.mean(recalls)) if recalls else float("nan"),
        "auroc": auroc(y, np.asarray(prob, np.float64)),
    }


def regression_metrics(y: Real[np.ndarray, " n"], pred: Real[np.ndarray, " n"]) -> dict:
    """R^2 = 1 - SSE/SST about the test set's own mean (NaN if the test labels are constant), and MSE."""
    y, pred = np.asarray(y, np.float64), np.asarray(pred, np.float64)
    sse = float(np.sum((y - pred) ** 2))
    sst = float(np.sum((y - y.mean()) ** 2)) if len(y) else 0.0
    return {"r2": 1.0 - sse / sst if sst > 0 else float("nan"), "mse": sse / len(y) if len(y) else float("nan")}


def t_quantile(p: float, df: int) -> float:
    """Student's t quantile for p in (0.5, 1): bisection on the CDF, integrated by Simpson's rule (error < 1e-7)."""
    if not 0.5 < p < 1 or df < 1:
        raise ValueError(f"need 0.5 < p < 1 and df >= 1, got p={p}, df={df}")
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def cdf(t: float) -> float:
        x = np.linspace(0.0, t, 4001)
        f = np.exp(log_c - (df + 1) / 2 * np.log1p(x**2 / df))
        h = t / 4000
        return 0.5 + h / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum())

    lo, hi = 0.0, 1.0
    while cdf(hi) < p:
        lo, hi = hi, hi * 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
    return (lo + hi) / 2


def summarize(values: Sequence[float]) -> dict:
    """Mean over folds with a 95% Student-t interval (folds with NaN, e.g. one class in the test fold, left out)."""
    v = np.array([x for x in values if x is not None and np.isfinite(x)], np.float64)
    out = {"mean": float("nan"), "sd": float("nan"), "ci95": [float("nan"), float("nan")], "n_folds": len(v)}
    if len(v) == 0:
        return out
    out["mean"] = float(v.mean())
    if len(v) >= 2:
        sd = float(v.std(ddof=1))
        half = t_quantile(0.975, len(v) - 1) * sd / math.sqrt(len(v))
        out.update(sd=sd, ci95=[out["mean"] - half, out["mean"] + half])
    return out


# ---------------------------------------------------------------- probes


def _chunks(n: int):
    for start in range(0, n, CHUNK_ROWS):
        yield slice(start, min(n, start + CHUNK_ROWS))


def _mean_sd(X: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    """Column mean and sd (float64) of X[rows], chunked; sd of constant columns set to 1."""
    n, d = len(rows), X.shape[1]
    s1 = torch.zeros(d, dtype=torch.float64, device=X.device)
    s2 = torch.zeros(d, dtype=torch.float64, device=X.device)
    for sl in _chunks(n):
        xc = X[rows[sl]].double()
        s1 += xc.sum(0)
        s2 += (xc * xc).sum(0)
    mu = s1 / n
    var = (s2 / n - mu * mu).clamp_min(0)
    sd = var.sqrt()
    return mu, torch.where(sd > 1e-6, sd, torch.ones_like(sd))


def fit_logistic(
    X: Float[Tensor, "n d"],
    y: Float[Tensor, " n"],
    l2: float,
    balance_classes: bool = True,
    max_iter: int = 200,
) -> tuple[Float[Tensor, " d"], float]:
    """L2 logistic regression on standardised X (train statistics): returns (coef, intercept) for RAW features.

    Minimises sum_i w_i * BCE(x_i) / sum_i w_i + l2/2 |v|^2 where v are the standardised weights.
    L-BFGS with strong-Wolfe line search; gradients computed by hand chunk by chunk, so X may be float16.
    """
    n, d = X.shape
    dev = X.device
    rows = torch.arange(n, device=dev)
    mu, sd = _mean_sd(X, rows)
    yd = y.double()
    n_pos = float(yd.sum())
    if n_pos in (0.0, float(n)):  # one class: a constant probe
        p = min(max(n_pos / n, 1e-6), 1 - 1e-6)
        return torch.zeros(d, dtype=torch.float64, device=dev), math.log(p / (1 - p))
    # balanced: each class carries half the total weight
    balanced = torch.where(yd > 0.5, 0.5 / n_pos, 0.5 / (n - n_pos))
    weight = balanced if balance_classes else torch.full_like(yd, 1.0 / n)
    prior = float((weight * yd).sum())
    theta = torch.zeros(d + 1, dtype=torch.float64, device=dev)
    theta[d] = math.log(prior / (1 - prior))
    theta.requires_grad_(True)
    opt = torch.optim.LBFGS([theta], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-9, tolerance_change=1e-12)  # fmt: skip

    mu32 = mu.float()

    def closure():
        with torch.no_grad():
            v, b = theta[:d], theta[d]
            coef = (v / sd).float()  # z.v = (x - mu).(v / sd): centred in float32, no cancellation on large means
            loss = torch.zeros((), dtype=torch.float64, device=dev)
            g_x = torch.zeros(d, dtype=torch.float64, device=dev)
            g_b = torch.zeros((), dtype=torch.float64, device=dev)
            for sl in _chunks(n):
                xc = X[sl].float() - mu32
                s = (xc @ coef).double() + b
                w, t = weight[sl], yd[sl]
                loss += (w * (torch.nn.functional.softplus(s) - t * s)).sum()
                r = w * (torch.sigmoid(s) - t)
                g_x += (xc.T @ r.float()).double()
                g_b += r.sum()
            loss = loss + 0.5 * l2 * (v * v).sum()
            grad = torch.empty_like(theta)
            grad[:d] = g_x / sd + l2 * v
            grad[d] = g_b
            theta.grad = grad
        return loss

    opt.step(closure)
    with torch.no_grad():
        v, b = theta[:d].detach(), float(theta[d])
        return v / sd, b - float((mu * (v / sd)).sum())


def _moments(X: Tensor, y: Tensor, rows: Tensor, shift: Tensor) -> dict[str, Tensor]:
    """Sufficient statistics of rows for ridge: n, sum x, sum x x^T, sum x y, sum y (x shifted, float64)."""
    d = X.shape[1]
    dev = X.device
    shapes = {"n": (), "sx": (d,), "sxx": (d, d), "sxy": (d,), "sy": ()}
    m = {k: torch.zeros(s, dtype=torch.float64, device=dev) for k, s in shapes.items()}
    for sl in _chunks(len(rows)):
        xc = X[rows[sl]].double() - shift
        yc = y[rows[sl]].double()
        m["n"] += len(yc)
        m["sx"] += xc.sum(0)
        m["sxx"] += xc.T @ xc
        m["sxy"] += xc.T @ yc
        m["sy"] += yc.sum()
    return m


def solve_ridge(m: dict[str, Tensor], shift: Tensor, l2: float) -> tuple[Tensor, float]:
    """Ridge on standardised features from sufficient statistics: (coef, intercept) for RAW features.

    Minimises mean (y - b - z.v)^2 / 2 + l2/2 |v|^2 with z = (x - mu) / sd of the same rows.
    """
    n = m["n"]
    mu_s = m["sx"] / n  # mean of shifted x
    ybar = m["sy"] / n
    cov = m["sxx"] / n - torch.outer(mu_s, mu_s)
    var = torch.diagonal(cov).clamp_min(0)
    sd = var.sqrt()
    sd = torch.where(sd > 1e-6, sd, torch.ones_like(sd))
    czz = cov / torch.outer(sd, sd)
    czy = (m["sxy"] / n - mu_s * ybar) / sd
    eye = torch.eye(len(sd), dtype=czz.dtype, device=czz.device)
    v = torch.linalg.solve(czz + max(l2, 1e-10) * eye, czy)
    coef = v / sd
    return coef, float(ybar - ((mu_s + shift) * coef).sum())


def _predict(X: Tensor, rows: Tensor, coef: Tensor, intercept: float) -> np.ndarray:
    out = [(X[rows[sl]].double() @ coef.double()) + intercept for sl in _chunks(len(rows))]
    return torch.cat(out).cpu().numpy() if out else np.zeros(0)


def cross_validate(
    X: Float[Tensor, "n d"],
    y: Real[np.ndarray, " n"],
    folds: Int[np.ndarray, " n"],
    kind: str,
    l2: float | Sequence[float],
    balance_classes: bool = True,
    max_iter: int = 200,
) -> dict:
    """Fit on all folds but one, test on it, for each fold: per-fold metrics, out-of-fold predictions, baseline.

    `folds` assigns each row to a fold; pass whole-episode folds (`episode_folds`) for probes.
    Binary predictions are probabilities, regression ones values. The baseline predicts the
    training fold's majority class (its positive rate as the score) or its mean. With several
    `l2` values each test fold's probe uses the one that scores best (mean primary metric, ties
    to the larger) in an inner cross-validation over the training folds; with fewer than two
    training folds there is no inner split and the middle value is used.
    """
    if kind not in ("binary", "regression"):
        raise ValueError(f"kind must be binary or regression, got {kind!r}")
    grid = sorted({float(l2)} if isinstance(l2, int | float) else {float(v) for v in l2})
    dev = X.device
    y = np.asarray(y, np.float64)
    y_t = torch.from_numpy(y).to(dev)
    oof = np.full(len(y), np.nan)
    fold_rows, base_rows = [], []
    splits = fold_indices(folds)
    fold_ids = [int(folds[test[0]]) if len(test) else None for _, test in splits]
    if kind == "regression":
        shift = X[: min(len(y), CHUNK_ROWS)].double().mean(0)  # improves the float64 moments; cancels exactly
        moments = [_moments(X, y_t, torch.from_numpy(test).to(dev), shift) for _, test in splits]
        total = {k: sum(m[k] for m in moments) for k in moments[0]}

    def fit_and_predict(i_out: set[int], rows: np.ndarray, lam: float) -> np.ndarray:
        """A probe fitted on every fold but those in `i_out` (split indices), predicting `rows`."""
        rows_t = torch.from_numpy(rows).to(dev)
        if kind == "binary":
            train = np.concatenate([splits[j][1] for j in range(len(splits)) if j not in i_out])
            train_t = torch.from_numpy(train).to(dev)
            coef, intercept = fit_logistic(X[train_t], y_t[train_t].float(), lam, balance_classes, max_iter)
            return 1 / (1 + np.exp(-_predict(X, rows_t, coef, intercept)))
        train_m = {k: total[k] - sum(moments[j][k] for j in i_out) for k in total}
        coef, intercept = solve_ridge(train_m, shift, lam)
        return _predict(X, rows_t, coef, intercept)

    score = auroc if kind == "binary" else (lambda yt, p: regression_metrics(yt, p)["r2"])
    for i, (train, test) in enumerate(splits):
        info = {"fold": fold_ids[i], "n_train": len(train), "n_test": len(test)}
        if len(train) == 0 or len(test) == 0:
            fold_rows.append(info)
            base_rows.append(dict(info))
            continue
        inner = [j for j, (_, t) in enumerate(splits) if j != i and len(t)]
        if len(grid) == 1:
            lam, inner_scores = grid[0], None
        elif len(inner) < 2:
            lam, inner_scores = grid[len(grid) // 2], None
        else:
            inner_scores = {}
            for lam_try in grid:
                s = [score(y[splits[j][1]], fit_and_predict({i, j}, splits[j][1], lam_try)) for j in inner]
                inner_scores[lam_try] = float(np.nanmean(s)) if np.isfinite(s).any() else float("nan")
            finite = {k: v for k, v in inner_scores.items() if np.isfinite(v)}
            lam = max(finite, key=lambda k: (finite[k], k)) if finite else grid[len(grid) // 2]
        pred = fit_and_predict({i}, test, lam)
        if kind == "binary":
            metrics = binary_metrics(y[test], pred)
            p_train = float(y[train].mean())
            base = binary_metrics(y[test], np.full(len(test), 1.0 if p_train >= 0.5 else 0.0))
            base["auroc"] = auroc(y[test], np.full(len(test), p_train))  # constant score: 0.5 by ties
        else:
            metrics = regression_metrics(y[test], pred)
            base = regression_metrics(y[test], np.full(len(test), float(y[train].mean())))
        oof[test] = pred
        chosen = {"l2": lam, **({"inner_scores": {str(k): v for k, v in inner_scores.items()}} if inner_scores else {})}
        fold_rows.append({**info, **metrics, **chosen})
        base_rows.append({**info, **base})
    names = BINARY_METRICS if kind == "binary" else REGRESSION_METRICS
    done = ~np.isnan(oof)
    pooled = (binary_metrics if kind == "binary" else regression_metrics)(y[done], oof[done])
    return {
        "folds": fold_rows,
        "summary": {k: summarize([r.get(k) for r in fold_rows]) for k in names},
        "pooled": pooled,  # all out-of-fold predictions together (each from its own fold's probe)
        "oof": oof,
        "baseline": {"folds": base_rows, "summary": {k: summarize([r.get(k) for r in base_rows]) for k in names}},
    }


# ---------------------------------------------------------------- reading the run


def _natural_key(name: str):
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", name)]


def available_features(episode: Episode) -> list[str]:
    """Probe-able arrays: recorded hook names (`activations/` stripped), then `attention/L{l}`."""
    names = episode.names()
    hooks = [n.removeprefix("activations/") for n in names if n.startswith("activations/")]
    order = {h: i for i, h in enumerate(episode.attrs.get("hooks") or [])}
    hooks.sort(key=lambda h: (order.get(h, len(order)), _natural_key(h)))
    return hooks + sorted((n for n in names if n.startswith("attention/")), key=_natural_key)


def match_features(patterns: Sequence[str], available: Sequence[str]) -> list[str]:
    """Available names matching any pattern (fnmatch wildcards), in the run's order; KeyError if one matches none."""
    out = []
    for pattern in patterns:
        matches = [n for n in available if fnmatch.fnmatchcase(n, pattern)]
        if not matches:
            raise KeyError(f"hook {pattern!r} matches nothing recorded in this run; it has {list(available)}")
        out += [m for m in matches if m not in out]
    return [n for n in available if n in out]


def _array_name(feature: str) -> str:
    return feature if feature.startswith("attention/") else f"activations/{feature}"


def load_features(
    episodes: Sequence[Episode], feature: str, rows: Sequence[np.ndarray], block_steps: int = 4096
) -> np.ndarray:
    """The rows `rows[i]` (sorted step indices) of episode i's array for `feature`, flattened to (n, d) float16."""
    parts = []
    name = _array_name(feature)
    bar = tqdm(total=sum(len(r) for r in rows), unit="step", desc=f"reading {feature}", leave=False)
    for i, start, block in iter_blocks(list(episodes), name, block_steps):
        r = rows[i]
        take = r[(r >= start) & (r < start + len(block))] - start
        if len(take):
            parts.append(np.asarray(block[take], np.float16).reshape(len(take), -1))
            bar.update(len(take))
    bar.close()
    d = int(np.prod(episodes[0][name].shape[1:]))
    return np.concatenate(parts) if parts else np.zeros((0, d), np.float16)


def _check_label(label: Label, values: np.ndarray, valid: np.ndarray, episode_of: np.ndarray) -> str | None:
    """Why the label cannot be probed in this run, or None."""
    n_eps = len(np.unique(episode_of[valid]))
    if n_eps < 2:
        return f"defined in {n_eps} episode(s); episode-split cross-validation needs at least 2"
    v = values[valid]
    if label.kind == "binary" and len(np.unique(v)) < 2:
        return f"one class only ({int(v[0])}) over its {len(v)} steps"
    if label.kind == "binary":  # a class seen in one episode is never both trained on and tested
        for c in (0, 1):
            n_c = len(np.unique(episode_of[valid][v == c]))
            if n_c < 2:
                return f"class {c} occurs in {n_c} episode only; episode-split cross-validation needs it in 2 or more"
    if label.kind == "regression" and np.ptp(v) == 0:
        return f"constant ({v[0]}) over its {len(v)} steps"
    return None


# ---------------------------------------------------------------- plots


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def plot_metrics(name: str, result: dict, path: Path) -> None:
    """Per hook the mean metric over folds with its 95% CI; the majority/mean and CNN probes as lines."""
    kind = result["kind"]
    metrics = BINARY_METRICS if kind == "binary" else REGRESSION_METRICS
    hooks = result["hooks"]
    fig = Figure(figsize=(max(4.5, 1.1 * len(hooks) + 2) * len(metrics) / 1.5, 4.2))
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
    _save(fig, path)


def plot_roc(name: str, result: dict, y: np.ndarray, folds: np.ndarray, oof: dict, path: Path) -> None:
    """ROC curves of the best hook: each test fold (thin) and all out-of-fold scores pooled; the CNN probe dashed."""
    best, cnn = result["best_hook"], result.get("cnn_baseline")
    fig = Figure(figsize=(5, 5))
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
    _save(fig, path)


def plot_scatter(name: str, result: dict, y: np.ndarray, oof: dict, path: Path, seed: int) -> None:
    """Out-of-fold prediction against the true value for the best hook (at most 5000 points), with y = x."""
    best = result["best_hook"]
    sel = np.flatnonzero(np.isfinite(oof[best]))
    if len(sel) > 5000:
        sel = np.sort(np.random.default_rng(seed).choice(sel, 5000, replace=False))
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(y[sel], oof[best][sel], s=6, alpha=0.5, color="#4c72b0")
    lo, hi = float(min(y[sel].min(), oof[best][sel].min())), float(max(y[sel].max(), oof[best][sel].max()))
    ax.plot([lo, hi], [lo, hi], color="grey", ls=":", lw=1, label="y = x")
    r2 = result["probes"][best]["summary"]["r2"]
    ax.set_xlabel(f"true {name} ({result['units']})")
    ax.set_ylabel("probe prediction (out of fold)")
    ax.set_title(f"{name} from {best}\nR^2 {r2['mean']:.3f} [{r2['ci95'][0]:.3f}, {r2['ci95'][1]:.3f}]", fontsize=10)
    ax.legend(fontsize=7)
    _save(fig, path)


# ---------------------------------------------------------------- main


def main(cfg: ProbeConfig) -> dict:
    """Probe every (label, hook) with episode-split cross-validation; write probe.json and the plots to cfg.out."""
    t0 = time.time()
    episodes = open_episodes(cfg.run)
    if len(episodes) < 2:
        raise ValueError(f"{cfg.run}: {len(episodes)} complete episode(s); probes split by episode and need at least 2")
    available = available_features(episodes[0])
    for ep in episodes[1:]:
        missing = set(available) - set(available_features(ep))
        if missing:
            raise ValueError(f"{ep.path} lacks {sorted(missing)} that {episodes[0].path} has; probe a uniform run")
    features = match_features(cfg.hooks, available)
    cnn = cfg.baseline_hook if cfg.baseline_hook in available else None
    if cfg.baseline_hook is not None and cnn is None:
        logger.warning("baseline hook %s was not recorded in %s: no CNN baseline", cfg.baseline_hook, cfg.run)
    probed = features + ([cnn] if cnn is not None and cnn not in features else [])

    # labels: cheap, computed first so that a label that cannot be probed is known before any activation is read
    lengths = [len(ep) for ep in episodes]
    episode_of = np.repeat(np.arange(len(episodes)), lengths)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    labels = [get_label(n) for n in cfg.labels]
    skipped = {}
    for label in labels:
        absent = [a for ep in episodes for a in label.arrays if a not in ep]
        if absent:
            skipped[label.name] = (
                f"not recorded in this run (no array {absent[0]}; record again with a current vpt-lens)"
            )
            logger.warning("label %s skipped: %s", label.name, skipped[label.name])
    labels = [lab for lab in labels if lab.name not in skipped]
    parts = {label.name: [] for label in labels}
    for ep in tqdm(episodes, desc="labels", unit="episode", leave=False):
        src = LabelSource(ep)  # parsed JSON is cached per episode only: memory stays at one episode's rows
        for label in labels:
            parts[label.name].append(compute_label(label, src))
    values = {name: np.concatenate([p[0] for p in ps]) for name, ps in parts.items()}
    valid = {name: np.concatenate([p[1] for p in ps]) for name, ps in parts.items()}
    for label in labels:
        reason = _check_label(label, values[label.name], valid[label.name], episode_of)
        if reason is not None:
            skipped[label.name] = reason
            logger.warning("label %s skipped: %s", label.name, reason)
    labels = [lab for lab in labels if lab.name not in skipped]
    if not labels:
        raise ValueError(f"no label can be probed in {cfg.run}: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))

    # the steps used: where some label is defined, subsampled to max_steps
    keep = np.flatnonzero(np.any([valid[lab.name] for lab in labels], axis=0))
    if len(keep) > cfg.max_steps:
        logger.info("using a seeded subsample of %d of the %d labelled steps", cfg.max_steps, len(keep))
        keep = np.sort(np.random.default_rng(cfg.seed).choice(keep, cfg.max_steps, replace=False))
    rows = [keep[(keep >= offsets[i]) & (keep < offsets[i + 1])] - offsets[i] for i in range(len(episodes))]
    fold_of_episode = episode_folds(lengths, cfg.n_folds, cfg.seed)
    folds_kept = fold_of_episode[episode_of[keep]]
    n_folds = len(np.unique(fold_of_episode))

    results = {}
    oof: dict[str, dict[str, np.ndarray]] = {lab.name: {} for lab in labels}
    for label in labels:
        sel = valid[label.name][keep]
        y = values[label.name][keep][sel]
        stats = {"class_counts": {"0": int((y == 0).sum()), "1": int((y == 1).sum())}} if label.kind == "binary" else {
            "mean": float(y.mean()), "sd": float(y.std())}  # fmt: skip
        results[label.name] = {
            **label.to_dict(), "n_steps": int(sel.sum()), "n_episodes": int(len(np.unique(episode_of[keep][sel]))),
            "n_folds": int(len(np.unique(folds_kept[sel]))), "label_stats": stats, "hooks": features,
            "cnn_baseline": cnn, "probes": {},
        }  # fmt: skip
    for feature in probed:
        t_feature = time.time()
        X_all = torch.from_numpy(load_features(episodes, feature, rows, cfg.block_steps)).to(cfg.device)
        for label in labels:
            sel = valid[label.name][keep]
            idx = torch.from_numpy(np.flatnonzero(sel)).to(cfg.device)
            cv = cross_validate(X_all[idx], values[label.name][keep][sel], folds_kept[sel], label.kind, cfg.l2,
                                cfg.balance_classes, cfg.max_iter)  # fmt: skip
            oof[label.name][feature] = cv.pop("oof")
            baseline = cv.pop("baseline")
            results[label.name].setdefault("baseline", baseline)
            results[label.name]["probes"][feature] = {"n_features": int(X_all.shape[1]), **cv}
            metric = PRIMARY_METRIC[label.kind]
            s = cv["summary"][metric]
            logger.info("%s <- %s: %s %.3f [%.3f, %.3f] over %d folds", label.name, feature, metric, s["mean"],
                        s["ci95"][0], s["ci95"][1], s["n_folds"])  # fmt: skip
        logger.info("%s: %d steps x %d features probed in %.1f s", feature, *X_all.shape, time.time() - t_feature)
        del X_all

    cfg.out.mkdir(parents=True, exist_ok=True)
    for label in labels:
        res = results[label.name]
        metric = PRIMARY_METRIC[label.kind]
        scores = {h: res["probes"][h]["summary"][metric]["mean"] for h in features}
        finite = {h: s for h, s in scores.items() if np.isfinite(s)}
        res["best_hook"] = max(finite, key=finite.get) if finite else features[0]
        sel = valid[label.name][keep]
        y, f = values[label.name][keep][sel], folds_kept[sel]
        plots = [f"{label.name}_metrics.png"]
        plot_metrics(label.name, res, cfg.out / plots[0])
        if label.kind == "binary":
            plots.append(f"{label.name}_roc.png")
            plot_roc(label.name, res, y, f, oof[label.name], cfg.out / plots[-1])
        else:
            plots.append(f"{label.name}_scatter.png")
            plot_scatter(label.name, res, y, oof[label.name], cfg.out / plots[-1], cfg.seed)
        res["plots"] = plots

    run_manifest = Path(cfg.run) / "run.json"
    report = {
        "schema": "vptlens.probe",
        "schema_version": 1,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "run_path": str(Path(cfg.run).resolve()),
        "run_git_commit": json.loads(run_manifest.read_text()).get("git_commit") if run_manifest.is_file() else None,
        "config": json.loads(json.dumps(asdict(cfg), default=str)),
        "package_version": vptlens.__version__,
        "git_commit": git_commit(),
        "split": {
            "scheme": "leave-one-episode-out" if len(episodes) <= cfg.n_folds else "group k-fold by episode",
            "n_folds": n_folds,
            "seed": cfg.seed,
            "episodes": [
                {"path": str(ep.path), "n_steps": len(ep), "n_used": len(r), "fold": int(f)}
                for ep, r, f in zip(episodes, rows, fold_of_episode)
            ],  # fmt: skip
        },
        "n_steps_used": int(len(keep)),
        "features": probed,
        "labels": results,
        "skipped_labels": skipped,
        "seconds": time.time() - t0,
    }
    (cfg.out / "probe.json").write_text(json.dumps(_finite(report), indent=2, default=_json_default, allow_nan=False))
    logger.info("probes written to %s in %.1f s", cfg.out, time.time() - t0)
    return report


def _finite(obj):
    """NaN and infinities become null (strict JSON)."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if isinstance(obj, float | np.floating) and not np.isfinite(obj):
        return None
    return obj


def _json_default(obj):
    if isinstance(obj, np.integer | np.floating):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
