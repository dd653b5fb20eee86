"""The statistics of `vptlens probe`, on arrays and tensors only: folds of whole episodes, metrics, the ridge and
logistic probes, and their cross-validation.

The probes are fitted by hand in torch rather than with scikit-learn: activations stay in float16 as
recorded and are converted in row chunks (`CHUNK_ROWS`), ridge is solved from per-fold sufficient
statistics (d x d, never n x n; a training set is "all folds' moments minus the test fold's", so the
inner cross-validation over L2 costs no extra pass), and the logistic loss and its gradient are
accumulated chunk by chunk for full-batch L-BFGS. scikit-learn's `Ridge`/`LogisticRegression` need the
whole float64 (or float32) design matrix in memory and refit from scratch for each fold.
Metrics come from scikit-learn (`roc_auc_score`, `roc_curve`), the t quantile from scipy.
"""

import math
from collections.abc import Sequence

import numpy as np
import torch
from jaxtyping import Float, Int, Real, Shaped
from scipy import stats
from sklearn import metrics as skm
from torch import Tensor

CHUNK_ROWS = 16384
"""Rows of activations converted to float32/float64 at a time."""
BINARY_METRICS = ("accuracy", "balanced_accuracy", "auroc")
REGRESSION_METRICS = ("r2", "mse")
PRIMARY_METRIC = {"binary": "auroc", "regression": "r2"}


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


def auroc(y: Shaped[np.ndarray, " n"], score: Real[np.ndarray, " n"]) -> float:
    """Area under the ROC curve (`sklearn.metrics.roc_auc_score`; ties count one half); NaN with one class."""
    y = np.asarray(y).astype(bool)
    if y.all() or not y.any():
        return float("nan")
    return float(skm.roc_auc_score(y, np.asarray(score, np.float64)))


def roc_curve(y: Shaped[np.ndarray, " n"], score: Real[np.ndarray, " n"]) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) from (0, 0) to (1, 1) (`sklearn.metrics.roc_curve`)."""
    fpr, tpr, _ = skm.roc_curve(np.asarray(y).astype(bool), np.asarray(score, np.float64))
    return fpr, tpr


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


def summarize(values: Sequence[float]) -> dict:
    """Mean over folds with a 95% Student-t interval (folds with NaN, e.g. one class in the test fold, left out)."""
    v = np.array([x for x in values if x is not None and np.isfinite(x)], np.float64)
    out = {"mean": float("nan"), "sd": float("nan"), "ci95": [float("nan"), float("nan")], "n_folds": len(v)}
    if len(v) == 0:
        return out
    out["mean"] = float(v.mean())
    if len(v) >= 2:
        sd = float(v.std(ddof=1))
        half = float(stats.t.ppf(0.975, len(v) - 1)) * sd / math.sqrt(len(v))
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
    # the direction a user steers along: one probe fitted on every row, with the L2 the folds chose most often
    chosen_l2 = [r["l2"] for r in fold_rows if "l2" in r]
    lam_all = max(set(chosen_l2), key=lambda v: (chosen_l2.count(v), v)) if chosen_l2 else grid[len(grid) // 2]
    if kind == "binary":
        direction, _ = fit_logistic(X, y_t.float(), lam_all, balance_classes, max_iter)
    else:
        direction, _ = solve_ridge(total, shift, lam_all)
    names = BINARY_METRICS if kind == "binary" else REGRESSION_METRICS
    done = ~np.isnan(oof)
    pooled = (binary_metrics if kind == "binary" else regression_metrics)(y[done], oof[done])
    return {
        "folds": fold_rows,
        "summary": {k: summarize([r.get(k) for r in fold_rows]) for k in names},
        "pooled": pooled,  # all out-of-fold predictions together (each from its own fold's probe)
        "oof": oof,
        "baseline": {"folds": base_rows, "summary": {k: summarize([r.get(k) for r in base_rows]) for k in names}},
        "direction": direction.double().cpu().numpy(),  # (d,) weights on the raw activations, all rows, l2 below
        "direction_l2": lam_all,
    }
