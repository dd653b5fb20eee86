"""The statistics of `vptlens attention`, on arrays only (no store, no files): lag order, pooled lag profiles with
bootstrap bands over episodes, the period of a profile, head kinds and clusters, key-frame detection.

The conventions (lag order, valid lags, the pooled ratio, what a key frame is) are described in
`probes/attention.py`'s docstring.
"""

import math
import warnings
from collections.abc import Mapping

import numpy as np
from jaxtyping import Bool, Float
from scipy import stats
from scipy.cluster.hierarchy import cut_tree, linkage
from scipy.spatial.distance import squareform

KINDS = ("recent", "key-frame", "periodic", "other")

BOOTSTRAP_BATCH_VALUES = 2**24
"""Resampled values held at once by the bootstrap (~128 MiB of float64 per sample)."""


# ---------------------------------------------------------------------------------------------- per-step arrays


def lag_order(attention_tnT: Float[np.ndarray, "t n T"]) -> Float[np.ndarray, "t n T"]:
    """Stored attention (column M = now) -> float64, lag order (index k = k frames back), rows renormalised to 1."""
    a = np.asarray(attention_tnT, np.float64)[..., ::-1]
    total = a.sum(-1, keepdims=True)
    if np.any(total <= 0):
        t = int(np.argwhere(total[..., 0] <= 0)[0, 0])
        raise ValueError(f"attention row at step {t} sums to 0: the array is corrupt or not an attention pattern")
    return a / total


def valid_lags(n_steps: int, n_lags: int) -> Bool[np.ndarray, "t T"]:
    """valid[t, k]: the frame k steps back existed at step t (t >= k)."""
    return np.arange(n_steps)[:, None] >= np.arange(n_lags)[None, :]


def episode_sums(
    a_tnk: Float[np.ndarray, "t n T"], recent_lags: int
) -> tuple[Float[np.ndarray, "n T"], Float[np.ndarray, " T"], Float[np.ndarray, " n"], int]:
    """One episode's sufficient statistics: mass by lag over valid steps, valid-step counts, recent share sum, steps.

    `a_tnk` is in lag order (see `lag_order`). The recent share counts only steps t >= recent_lags.
    """
    n_steps, _, n_lags = a_tnk.shape
    valid = valid_lags(n_steps, n_lags)
    leak = np.where(valid[:, None, :], 0.0, a_tnk).max(initial=0.0)
    if leak > 1e-3:
        raise ValueError(
            f"attention mass {leak:.3g} on frames before the episode's start: the array does not follow the "
            "lag convention of recordings/PROTOCOL.md (last column = now, masked keys 0)"
        )
    sums = a_tnk.sum(0)  # invalid entries are 0
    counts = valid.sum(0).astype(np.float64)
    steps = a_tnk[recent_lags:]
    recent = steps[..., :recent_lags].sum(-1).sum(0) if len(steps) else np.zeros(a_tnk.shape[1])
    return sums, counts, recent, len(steps)


# ---------------------------------------------------------------------------------------------- bootstrap


def expanded_alpha(n: int, confidence: float) -> float:
    """Two-sided tail mass for an expanded percentile bootstrap interval over n clusters (Hesterberg 2015).

    The percentiles are taken at alpha'/2 and 1 - alpha'/2 with Phi^-1(1 - alpha'/2) = sqrt(n / (n - 1)) *
    t_{n-1}(1 - alpha/2): the band widens as a t interval would for few episodes and tends to the plain
    percentile band as n grows. A plain percentile band over n episodes covers less than it claims when n is
    small (about 82% for a 95% band at n = 5).
    """
    alpha = 1.0 - confidence
    if n < 2:
        return alpha
    z = math.sqrt(n / (n - 1)) * float(stats.t.ppf(1.0 - alpha / 2, n - 1))
    return float(2.0 * stats.norm.sf(z))


def _pooled_ratio(num: np.ndarray, den: np.ndarray, axis: int = -1) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return num.sum(axis) / den.sum(axis)


def bootstrap_ratio(
    num_e: Float[np.ndarray, "e ..."],
    den_e: Float[np.ndarray, "e ..."],
    n_bootstrap: int,
    confidence: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pooled ratio sum(num) / sum(den) over episodes, with an expanded percentile bootstrap band resampling
    episodes (`scipy.stats.bootstrap`, paired: an episode's numerator and denominator go together; its
    `confidence_level` is 1 - `expanded_alpha`).

    `den_e` broadcasts against `num_e`. Entries whose denominator is 0 are NaN. Identical episodes give a
    band of zero width; one episode gives lower = upper = mean. A resample made only of episodes whose
    denominator is 0 (episodes too short for a lag) has no ratio: it is left out of the percentiles (scipy's
    quantile would return NaN for the whole entry).
    """
    num_e, den_e = np.broadcast_arrays(np.asarray(num_e, np.float64), np.asarray(den_e, np.float64))
    n_episodes = num_e.shape[0]
    mean = _pooled_ratio(num_e, den_e, axis=0)
    if n_bootstrap == 0 or n_episodes == 1:
        return mean, mean.copy(), mean.copy()
    alpha = expanded_alpha(n_episodes, confidence)
    # benchmarks/attention_bootstrap.py: scipy costs 1-5x the hand-written resampling weights it replaced (100
    # episodes x 16 heads x 129 lags x 1000 resamples: 6.9 s against 1.5 s on 2 shared CPU cores), seconds per
    # layer, next to reading the attention itself: not worth keeping our own.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap(
            (num_e, den_e),
            _pooled_ratio,
            n_resamples=n_bootstrap,
            batch=max(1, BOOTSTRAP_BATCH_VALUES // num_e.size),
            vectorized=True,
            paired=True,
            axis=0,
            confidence_level=1.0 - alpha,
            method="percentile",
            rng=rng,
        )
    lo, hi = np.asarray(res.confidence_interval.low, np.float64), np.asarray(res.confidence_interval.high, np.float64)
    redo = np.isnan(lo) & np.isfinite(res.bootstrap_distribution).any(-1)
    if redo.any():
        lo[redo], hi[redo] = np.nanquantile(res.bootstrap_distribution[redo], [alpha / 2, 1 - alpha / 2], axis=-1)
    # float rounding can leave the mean a hair outside a zero-width band
    return mean, np.fmin(lo, mean), np.fmax(hi, mean)


# ---------------------------------------------------------------------------------------------- head features


def autocorrelation(x: Float[np.ndarray, " k"]) -> Float[np.ndarray, " k"]:
    """Biased sample autocorrelation r[p] = sum_i x'_i x'_{i+p} / sum_i x'_i^2 of the mean-removed series x'."""
    x = np.asarray(x, np.float64) - np.mean(x)
    denom = float(np.dot(x, x))
    if denom <= 0:
        return np.zeros_like(x)
    return np.correlate(x, x, mode="full")[len(x) - 1 :] / denom


def profile_period(profile_k: Float[np.ndarray, " k"], max_period: int | None) -> tuple[int | None, float]:
    """The period >= 2 of the strongest local peak of the profile's autocorrelation, and the peak's value.

    The profile is cut to its valid lags (NaN-free, trailing always-zero lags such as the masked lag M
    removed) and detrended by a least-squares quadratic in the lag, so that the smooth decay of a
    recent-frame head does not read as a period. (None, 0.0) when the autocorrelation has no local peak
    at periods 2..max_period.
    """
    x = np.asarray(profile_k, np.float64)
    x = x[: np.flatnonzero(np.isfinite(x))[-1] + 1] if np.isfinite(x).any() else x[:0]
    nonzero = np.flatnonzero(np.nan_to_num(x) > 0)
    x = np.nan_to_num(x[: nonzero[-1] + 1]) if len(nonzero) else x[:0]
    if len(x) < 5:
        return None, 0.0
    lags = np.arange(len(x))
    r = autocorrelation(x - np.polyval(np.polyfit(lags, x, 2), lags))
    last = min(max_period or len(x) // 2, len(x) - 2)
    best, best_r = None, 0.0
    for p in range(2, last + 1):
        if r[p] > r[p - 1] and r[p] >= r[p + 1] and r[p] > best_r:
            best, best_r = p, float(r[p])
    return best, best_r


def classify_head(features: Mapping, cfg) -> tuple[str, str]:
    """(kind, reason) of a head from its features; rules tried in order, the first that holds wins.

    Features: recent_share (mean share of mass on the last `recent_lags` frames), key_frame_rate (fraction
    of steps t >= key_min_lag with at least one key-frame detection), far_peakiness (at those steps, the
    mean of max / sum of the mass on lags >= key_min_lag: near 1 when one far frame takes the far mass),
    period and period_acf (`profile_period`), mean_lag (descriptive only). `cfg` is an `AttentionConfig`.

    1. recent:    recent_share >= recent_head_min_share
    2. key-frame: key_frame_rate >= key_head_min_rate and far_peakiness >= key_head_min_peakiness
    3. periodic:  the profile's autocorrelation peaks at a period >= 2 with value >= periodic_min_acf
    4. other
    """
    features = {k: 0.0 if v is None and k != "period" else v for k, v in features.items()}  # None: not measurable
    if features["recent_share"] >= cfg.recent_head_min_share:
        return "recent", f"recent_share {features['recent_share']:.2f} >= {cfg.recent_head_min_share}"
    rate, peak = features["key_frame_rate"], features["far_peakiness"]
    if rate >= cfg.key_head_min_rate and peak >= cfg.key_head_min_peakiness:
        return "key-frame", (
            f"key_frame_rate {rate:.2f} >= {cfg.key_head_min_rate}, far_peakiness {peak:.2f} >= "
            f"{cfg.key_head_min_peakiness}"
        )
    if features["period"] is not None and features["period_acf"] >= cfg.periodic_min_acf:
        return "periodic", f"profile autocorrelation {features['period_acf']:.2f} at period {features['period']}"
    return "other", "no rule held"


def as_distributions(shapes: Float[np.ndarray, "h T"]) -> Float[np.ndarray, "h T"]:
    """Lag profiles as distributions over lags: NaN and negative entries count as 0, each row sums to 1."""
    p = np.nan_to_num(np.asarray(shapes, np.float64)).clip(min=0)
    return p / np.maximum(p.sum(-1, keepdims=True), 1e-300)


def hellinger_distances(shapes: Float[np.ndarray, "h T"]) -> Float[np.ndarray, "h h"]:
    """Hellinger distance between lag profiles normalised to sum 1 (NaN lags count as 0): 0 same, 1 disjoint."""
    root = np.sqrt(as_distributions(shapes))
    d = np.sqrt(np.clip(1.0 - root @ root.T, 0.0, 1.0))
    d = (d + d.T) / 2
    np.fill_diagonal(d, 0.0)
    return d


def cluster_heads(shapes: Float[np.ndarray, "h T"], n_clusters: int) -> np.ndarray:
    """Average-linkage agglomerative clusters of heads by lag-profile shape (Hellinger distance).

    `scipy.cluster.hierarchy.linkage(method="average")` on the condensed distances, cut into exactly
    min(n_clusters, heads) clusters (`cut_tree`: `fcluster(criterion="maxclust")` can return fewer when merge
    heights tie). Cluster ids are ordered by the mean lag of the cluster's mean profile, so cluster 0 is the
    most recent-looking. Returns one id per head.
    """
    n = len(shapes)
    k = max(1, min(n_clusters, n))
    if n == 1 or k == 1:
        groups = np.zeros(n, np.int64)
    else:
        tree = linkage(squareform(hellinger_distances(shapes), checks=False), method="average")
        groups = cut_tree(tree, n_clusters=k)[:, 0]
    p = as_distributions(shapes)
    lags = np.arange(p.shape[1])
    ids = np.unique(groups)
    order = sorted(ids, key=lambda c: float(p[groups == c].mean(0) @ lags))
    labels = np.empty(n, np.int64)
    for new_id, c in enumerate(order):
        labels[groups == c] = new_id
    return labels


# ---------------------------------------------------------------------------------------------- key frames


def expected_mass(profile_nk: Float[np.ndarray, "n T"], n_steps: int) -> Float[np.ndarray, "t n T"]:
    """What the lag predicts: the head's mean profile restricted to the keys that exist at step t, summing to 1.

    expected[t, n, k] = profile[n, k] / sum_{j <= t} profile[n, j] for k <= t, else 0. Without the
    restriction every frame of an episode's first steps (a handful of keys sharing all the mass)
    would look like a key frame.
    """
    valid = valid_lags(n_steps, profile_nk.shape[-1])
    weight = np.where(valid[:, None, :], np.nan_to_num(profile_nk)[None], 0.0)
    total = weight.sum(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, weight / total, 0.0)


def detect_key_frames(
    a_tnk: Float[np.ndarray, "t n T"],
    profile_nk: Float[np.ndarray, "n T"],
    key_ratio: float,
    key_floor: float,
    key_min_lag: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Key-frame detections of one layer of one episode: (indices (d, 3) as rows [t, head, lag], ratios (d,)).

    Frame t-k is a key frame of head n at step t when k >= key_min_lag, a[t, n, k] >= key_floor and
    a[t, n, k] / expected_mass[t, n, k] >= key_ratio.
    """
    n_steps, _, n_lags = a_tnk.shape
    expected = expected_mass(profile_nk, n_steps)
    lag_ok = valid_lags(n_steps, n_lags) & (np.arange(n_lags) >= key_min_lag)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(expected > 0, a_tnk / np.where(expected > 0, expected, 1.0), 0.0)
    hit = lag_ok[:, None, :] & (a_tnk > 0) & (a_tnk >= key_floor) & (ratio >= key_ratio)
    idx = np.argwhere(hit)
    return idx, ratio[hit]


def far_peakiness(a_tnk: Float[np.ndarray, "t n T"], min_lag: int) -> Float[np.ndarray, "t n"]:
    """Per step and head: max / sum of the mass on lags >= min_lag (1: one far frame takes it all; 0 at t < min_lag)."""
    far = a_tnk[:, :, min_lag:]
    total = far.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, far.max(-1, initial=0.0) / np.where(total > 0, total, 1.0), 0.0)
