"""`vptlens attention`: where in time the agent looks. Lag profiles, head kinds and key frames of a recorded run.

Reads the `attention/L{l}` arrays of a run (PROTOCOL.md: (N, heads, M+1) float16, column M is
the current frame, column M-k is k frames back, masked keys exactly 0). Everything is computed
in two streaming passes over the episodes (one episode's attention in memory at a time):

1. Lag profiles. Rows are renormalised to sum 1 (undoing float16 rounding) and flipped to lag
   order (index k = k frames back). The profile of (layer l, head n) at lag k is

       profile[l, n, k] = sum_{episodes, steps t >= k} a[t, n, k] / #{(episode, t): t >= k},

   the mean mass on the frame k steps back among the steps at which that frame existed (a
   pooled ratio over episodes). Early steps spread their mass over fewer keys, so a profile
   need not sum to 1 over k; `shape` in the JSON (profile / its sum) is the normalised version.
   The share of mass on the last `recent_lags` frames is the pooled mean of the per-step share
   over steps t >= recent_lags (earlier steps have nothing older, so their share is 1 by
   construction). Confidence bands: percentile bootstrap that resamples whole EPISODES (steps
   inside an episode are not independent) and recomputes the pooled ratios, with Hesterberg's
   expanded percentiles (`expanded_alpha`): a plain percentile band over n episodes covers
   less than it claims when n is small (about 82% for a 95% band at n = 5).
2. Key frames. At step t, the frame t-k (k >= key_min_lag) is a key frame of head (l, n) when
   a[t, n, k] >= key_floor and a[t, n, k] / expected[t, n, k] >= key_ratio, where expected is the
   head's profile restricted to the keys that exist at step t and renormalised to 1 (`expected_mass`;
   at full memory it is profile / sum(profile)): the frame draws far more than the head usually puts
   at that lag. Detections are grouped per episode by absolute step s = t-k.

Head kinds are decided by documented rules on features of the profile and the detections; see
`classify_head`. Beside them, heads are clustered without rules by the shape of their lag
profiles (`cluster_heads`), and each cluster lists the rule kinds of its members.
"""

import datetime as dt
import html
import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import tyro
from jaxtyping import Bool, Float
from tqdm import tqdm

import vptlens
from vptlens.recordings.store import Episode, git_commit, open_episodes

logger = logging.getLogger(__name__)

KINDS = ("recent", "key-frame", "periodic", "other")


@dataclass(frozen=True)
class AttentionConfig:
    """Attention over time: lag profiles per layer and head, head kinds, key frames; JSON and plots."""

    run: tyro.conf.Positional[Path]
    """A recorded run directory (with run.json), or a single episode directory."""
    out: Path = Path("attention")
    """Directory to write attention.json, the PNG figures and index.html into (created)."""
    layers: tuple[int, ...] | None = None
    """Blocks to analyse (indices l of `attention/L{l}`); default: every block recorded."""
    recent_lags: int = 4
    """The 'last frames' of the recent-share statistic: lags 0..recent_lags-1 (the current frame is lag 0)."""
    n_bootstrap: int = 1000
    """Bootstrap resamples of episodes for the confidence bands (0: no bands, lower = upper = mean)."""
    confidence: float = 0.95
    """Coverage of the confidence bands (expanded percentile bootstrap over episodes)."""
    seed: int = 0
    """Seed of the bootstrap."""
    key_ratio: float = 4.0
    """A past frame is a key frame at a step when its mass is at least this many times the head's mean at that lag."""
    key_floor: float = 0.05
    """... and its mass is at least this much (absolute attention weight, 0..1)."""
    key_min_lag: int = 4
    """... and it is at least this many frames back (recent frames are never key frames)."""
    recent_head_min_share: float = 0.7
    """Head kind 'recent': mean share of mass on the last `recent_lags` frames at least this."""
    key_head_min_rate: float = 0.05
    """Head kind 'key-frame': at least this fraction of its steps (t >= key_min_lag) have a key-frame detection ..."""
    key_head_min_peakiness: float = 0.3
    """... and at those steps its far mass (lags >= key_min_lag) is peaked: mean of max / sum at least this."""
    periodic_min_acf: float = 0.5
    """Head kind 'periodic': the autocorrelation of its (detrended) lag profile peaks at a period >= 2 this high.

    Noise alone gives peaks of about 2 / sqrt(M): keep this well above that."""
    periodic_max_period: int | None = None
    """Longest period looked for, in frames (default: half the number of valid lags)."""
    raster_episode: int = 0
    """Position (0-based, in the run's complete episodes) of the episode drawn in the raster."""
    raster_layers: tuple[int, ...] | None = None
    """Layers drawn in the raster, one panel each (default: every analysed layer)."""
    raster_head: int | None = None
    """Head drawn in the raster (default: the mean over heads)."""
    n_gallery: int = 12
    """Key frames shown in the gallery (the most detected ones)."""
    max_key_frames: int = 500
    """Key frames listed in attention.json (the most detected ones; the totals count all)."""
    n_clusters: int = 4
    """Clusters of heads by the shape of their lag profiles (average linkage on Hellinger distance), beside the
    rule-based kinds; capped at the number of heads."""

    def __post_init__(self):
        for name in ("recent_lags", "key_min_lag"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_bootstrap < 0 or self.n_gallery < 0 or self.max_key_frames < 0:
            raise ValueError("n_bootstrap, n_gallery and max_key_frames must be >= 0")
        if self.n_clusters < 1:
            raise ValueError(f"n_clusters must be >= 1, got {self.n_clusters}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), e.g. 0.95; got {self.confidence}")
        if self.key_ratio <= 0 or not 0.0 <= self.key_floor <= 1.0:
            raise ValueError(f"key_ratio must be > 0 and key_floor in [0, 1]; got {self.key_ratio}, {self.key_floor}")
        for name in ("recent_head_min_share", "key_head_min_rate", "key_head_min_peakiness", "periodic_min_acf"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.periodic_max_period is not None and self.periodic_max_period < 2:
            raise ValueError(f"periodic_max_period must be >= 2, got {self.periodic_max_period}")


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


def expanded_alpha(n: int, confidence: float) -> float:
    """Two-sided tail mass for an expanded percentile bootstrap interval over n clusters (Hesterberg 2015).

    The percentiles are taken at alpha'/2 and 1 - alpha'/2 with Phi^-1(1 - alpha'/2) = sqrt(n / (n - 1)) *
    t_{n-1}(1 - alpha/2): the band widens as a t interval would for few episodes and tends to the plain
    percentile band as n grows.
    """
    from vptlens.probes.linear import t_quantile

    alpha = 1.0 - confidence
    if n < 2:
        return alpha
    z = math.sqrt(n / (n - 1)) * t_quantile(1.0 - alpha / 2, n - 1)
    return math.erfc(z / math.sqrt(2.0))  # 2 * (1 - Phi(z))


def bootstrap_ratio(
    num_e: Float[np.ndarray, "e ..."],
    den_e: Float[np.ndarray, "e ..."],
    n_bootstrap: int,
    confidence: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pooled ratio sum(num) / sum(den) over episodes, with an (expanded) percentile bootstrap band resampling
    episodes.

    `den_e` broadcasts against `num_e`. Entries whose denominator is 0 are NaN. Identical episodes give a
    band of zero width; one episode gives lower = upper = mean.
    """
    num_e, den_e = np.broadcast_arrays(np.asarray(num_e, np.float64), np.asarray(den_e, np.float64))
    n_episodes, shape = num_e.shape[0], num_e.shape[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = num_e.sum(0) / den_e.sum(0)
    if n_bootstrap == 0 or n_episodes == 1:
        return mean, mean.copy(), mean.copy()
    weights = rng.multinomial(n_episodes, np.full(n_episodes, 1.0 / n_episodes), size=n_bootstrap).astype(np.float64)
    num_b = weights @ num_e.reshape(n_episodes, -1)
    den_b = weights @ den_e.reshape(n_episodes, -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio_b = num_b / den_b
    alpha = expanded_alpha(n_episodes, confidence) / 2.0
    lo, hi = (np.full(ratio_b.shape[1], np.nan) for _ in range(2))
    ok = np.isfinite(ratio_b).any(0)
    if ok.any():
        lo[ok], hi[ok] = np.nanquantile(ratio_b[:, ok], [alpha, 1.0 - alpha], axis=0)
    # float rounding can leave the mean a hair outside a zero-width band
    lo, hi = np.fmin(lo, mean.reshape(-1)), np.fmax(hi, mean.reshape(-1))
    return mean, lo.reshape(shape), hi.reshape(shape)


def autocorrelation(x: Float[np.ndarray, " k"]) -> Float[np.ndarray, " k"]:
    """Biased sample autocorrelation r[p] = sum_i x'_i x'_{i+p} / sum_i x'_i^2 of the mean-removed series x'."""
    x = np.asarray(x, np.float64) - np.mean(x)
    denom = float(np.dot(x, x))
    if denom <= 0:
        return np.zeros_like(x)
    return np.array([np.dot(x[: len(x) - p], x[p:]) for p in range(len(x))]) / denom


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


def classify_head(features: dict, cfg: AttentionConfig) -> tuple[str, str]:
    """(kind, reason) of a head from its features; rules tried in order, the first that holds wins.

    Features: recent_share (mean share of mass on the last `recent_lags` frames), key_frame_rate (fraction
    of steps t >= key_min_lag with at least one key-frame detection), far_peakiness (at those steps, the
    mean of max / sum of the mass on lags >= key_min_lag: near 1 when one far frame takes the far mass),
    period and period_acf (`profile_period`), mean_lag (descriptive only).

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


def _as_distributions(shapes: Float[np.ndarray, "h T"]) -> Float[np.ndarray, "h T"]:
    """Lag profiles as distributions over lags: NaN and negative entries count as 0, each row sums to 1."""
    p = np.nan_to_num(np.asarray(shapes, np.float64)).clip(min=0)
    return p / np.maximum(p.sum(-1, keepdims=True), 1e-300)


def hellinger_distances(shapes: Float[np.ndarray, "h T"]) -> Float[np.ndarray, "h h"]:
    """Hellinger distance between lag profiles normalised to sum 1 (NaN lags count as 0): 0 same, 1 disjoint."""
    root = np.sqrt(_as_distributions(shapes))
    return np.sqrt(np.clip(1.0 - root @ root.T, 0.0, 1.0))


def cluster_heads(shapes: Float[np.ndarray, "h T"], n_clusters: int) -> np.ndarray:
    """Average-linkage agglomerative clusters of heads by lag-profile shape (Hellinger distance).

    Merges the two clusters with the smallest mean pairwise distance until `n_clusters` are left
    (ties: the lowest indices). Cluster ids are ordered by the mean lag of the cluster's mean
    profile, so cluster 0 is the most recent-looking. Returns one id per head.
    """
    n = len(shapes)
    d = hellinger_distances(shapes)
    clusters = [[i] for i in range(n)]
    while len(clusters) > max(1, min(n_clusters, n)):
        best, pair = np.inf, (0, 1)
        for a in range(len(clusters)):
            for b in range(a + 1, len(clusters)):
                link = d[np.ix_(clusters[a], clusters[b])].mean()
                if link < best - 1e-12:
                    best, pair = link, (a, b)
        a, b = pair
        clusters[a] = clusters[a] + clusters.pop(b)
    p = _as_distributions(shapes)
    lags = np.arange(p.shape[1])
    order = sorted(range(len(clusters)), key=lambda c: float(p[clusters[c]].mean(0) @ lags))
    labels = np.empty(n, np.int64)
    for new_id, c in enumerate(order):
        labels[clusters[c]] = new_id
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
    a_tnk: Float[np.ndarray, "t n T"], profile_nk: Float[np.ndarray, "n T"], cfg: AttentionConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Key-frame detections of one layer of one episode: (indices (d, 3) as rows [t, head, lag], ratios (d,)).

    Frame t-k is a key frame of head n at step t when k >= key_min_lag, a[t, n, k] >= key_floor and
    a[t, n, k] / expected_mass[t, n, k] >= key_ratio.
    """
    n_steps, _, n_lags = a_tnk.shape
    expected = expected_mass(profile_nk, n_steps)
    lag_ok = valid_lags(n_steps, n_lags) & (np.arange(n_lags) >= cfg.key_min_lag)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(expected > 0, a_tnk / np.where(expected > 0, expected, 1.0), 0.0)
    hit = lag_ok[:, None, :] & (a_tnk > 0) & (a_tnk >= cfg.key_floor) & (ratio >= cfg.key_ratio)
    idx = np.argwhere(hit)
    return idx, ratio[hit]


def far_peakiness(a_tnk: Float[np.ndarray, "t n T"], min_lag: int) -> Float[np.ndarray, "t n"]:
    """Per step and head: max / sum of the mass on lags >= min_lag (1: one far frame takes it all; 0 at t < min_lag)."""
    far = a_tnk[:, :, min_lag:]
    total = far.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, far.max(-1, initial=0.0) / np.where(total > 0, total, 1.0), 0.0)


def _finite(x) -> float | None:
    return float(x) if np.isfinite(x) else None


def _json_list(arr) -> list:
    value = np.asarray(arr, np.float64)
    return np.where(np.isfinite(value), value, None).tolist() if value.size else []


def _step_contexts(episode: Episode, steps: list[int]) -> dict[int, dict]:
    """What happened at each step: env events, the MineRL action taken (keys pressed, camera degrees), crosshair."""
    if not steps:
        return {}
    names = episode.names()
    text = {n: np.asarray(episode[n][:]) for n in ("gt/events", "gt/crosshair") if n in names}
    keys = {n.removeprefix("action/minerl/"): np.asarray(episode[n][:]) for n in names
            if n.startswith("action/minerl/") and n != "action/minerl/camera"}  # fmt: skip
    camera = np.asarray(episode["action/minerl/camera"][:]) if "action/minerl/camera" in names else None
    return {
        s: {
            "events": json.loads(str(text["gt/events"][s])) if "gt/events" in text else None,
            "keys": [k for k, v in keys.items() if v[s]],
            "camera": None if camera is None else [float(v) for v in camera[s]],
            "crosshair": json.loads(str(text["gt/crosshair"][s])) if "gt/crosshair" in text else None,
        }
        for s in steps
    }


def _group_detections(episode_pos: int, episode: Episode, detections: list[tuple]) -> list[dict]:
    """Group one episode's detections (per layer: layer, [t, head, lag] rows, ratios, masses) into key frames by s.

    Each key frame lists its detections as [t, layer, head, ratio] rows (the lag is t - step).
    """
    by_step: dict[int, dict] = {}
    for layer, idx, ratios, masses in detections:
        for (t, head, lag), ratio, mass in zip(idx.tolist(), ratios.tolist(), masses.tolist(), strict=True):
            s = t - lag
            kf = by_step.setdefault(s, {"steps": set(), "heads": set(), "detections": [], "max_ratio": -1.0})
            kf["steps"].add(t)
            kf["heads"].add((layer, head))
            kf["detections"].append([t, layer, head, ratio])
            if ratio > kf["max_ratio"]:
                kf.update(max_ratio=ratio, at_max={"step": t, "lag": lag, "layer": layer, "head": head, "mass": mass})
    contexts = _step_contexts(episode, sorted(by_step))
    out = []
    for s, kf in by_step.items():
        steps = sorted(kf["steps"])
        out.append(
            {
                "episode": episode_pos,
                "episode_index": episode.attrs.get("episode_index"),
                "episode_path": episode.path.name,
                "step": s,
                "first_step": steps[0],
                "last_step": steps[-1],
                "n_steps_attended": len(steps),
                "span": steps[-1] - steps[0] + 1,
                "attended_at": steps,
                "n_detections": len(kf["detections"]),
                "detections": sorted(kf["detections"]),
                "max_ratio": kf["max_ratio"],
                "at_max": kf["at_max"],
                "heads": sorted([list(h) for h in kf["heads"]]),
                **contexts[s],
            }
        )
    return out


# ---------------------------------------------------------------------------------------------- the two passes


def _layers_of(episode: Episode, wanted: tuple[int, ...] | None) -> list[int]:
    recorded = sorted(int(n.removeprefix("attention/L")) for n in episode.names() if n.startswith("attention/L"))
    if not recorded:
        raise KeyError(f"{episode.path} stores no attention/L* arrays; record the run with `vptlens record`")
    if wanted is None:
        return recorded
    missing = sorted(set(wanted) - set(recorded))
    if missing:
        raise KeyError(f"layers {missing} are not recorded in {episode.path}; it has {recorded}")
    return sorted(set(wanted))


def analyse(cfg: AttentionConfig, episodes: list[Episode]) -> dict:
    """Both passes over `episodes`: profiles with bands, recent shares, head features and kinds, key frames."""
    if not episodes:
        raise ValueError(f"{cfg.run}: no complete episodes to analyse")
    layers = _layers_of(episodes[0], cfg.layers)
    n_heads, n_lags = episodes[0][f"attention/L{layers[0]}"].shape[1:]
    if cfg.key_min_lag >= n_lags or cfg.recent_lags >= n_lags:
        raise ValueError(f"key_min_lag and recent_lags must be < {n_lags} (the memory length M + 1)")
    sums = {layer: [] for layer in layers}
    counts, recent, recent_n = [], {layer: [] for layer in layers}, []
    for episode in tqdm(episodes, desc="attention: lag profiles", unit="episode"):
        for layer in layers:
            arr = episode[f"attention/L{layer}"]
            if arr.shape[1:] != (n_heads, n_lags):
                raise ValueError(
                    f"{episode.path}: attention/L{layer} has shape {arr.shape}, other episodes (*, {n_heads}, {n_lags})"
                )
            s, c, r, n = episode_sums(lag_order(arr[:]), cfg.recent_lags)
            sums[layer].append(s)
            recent[layer].append(r)
        counts.append(c)
        recent_n.append(n)
    rng = np.random.default_rng(cfg.seed)
    counts_e, recent_n_e = np.stack(counts), np.asarray(recent_n, np.float64)
    profiles, shares = {}, {}
    for layer in layers:
        mean, lo, hi = bootstrap_ratio(
            np.stack(sums[layer]), counts_e[:, None, :], cfg.n_bootstrap, cfg.confidence, rng
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            shape = mean / np.nansum(mean, -1, keepdims=True)
        profiles[layer] = {"mean": mean, "ci_low": lo, "ci_high": hi, "shape": shape}
        mean, lo, hi = bootstrap_ratio(
            np.stack(recent[layer]), recent_n_e[:, None], cfg.n_bootstrap, cfg.confidence, rng
        )
        shares[layer] = {"mean": mean, "ci_low": lo, "ci_high": hi}

    # pass 2: key frames against the profiles, and the per-step features of the heads
    step_hits = {layer: np.zeros(n_heads) for layer in layers}  # steps with >= 1 detection, per head
    peak_sum = {layer: np.zeros(n_heads) for layer in layers}  # far peakiness summed over those steps
    n_far_steps, n_detections, key_frames = 0, 0, []
    for pos, episode in enumerate(tqdm(episodes, desc="attention: key frames", unit="episode")):
        detections = []
        for layer in layers:
            a = lag_order(episode[f"attention/L{layer}"][:])
            idx, ratios = detect_key_frames(a, profiles[layer]["mean"], cfg)
            detections.append((layer, idx, ratios, a[idx[:, 0], idx[:, 1], idx[:, 2]]))
            hit_tn = np.zeros(a.shape[:2], bool)
            hit_tn[idx[:, 0], idx[:, 1]] = True
            step_hits[layer] += hit_tn.sum(0)
            peak_sum[layer] += np.where(hit_tn, far_peakiness(a, cfg.key_min_lag), 0.0).sum(0)
            n_detections += len(idx)
        n_far_steps += max(len(episode) - cfg.key_min_lag, 0)
        key_frames += _group_detections(pos, episode, detections)
    key_frames.sort(key=lambda kf: (-kf["n_detections"], -kf["max_ratio"], kf["episode"], kf["step"]))

    heads = []
    for layer in layers:
        for head in range(n_heads):
            profile = profiles[layer]["mean"][head]
            finite = np.nan_to_num(profile)
            period, acf = profile_period(profile, cfg.periodic_max_period)
            features = {
                "recent_share": float(shares[layer]["mean"][head]),
                "mean_lag": float(np.dot(finite, np.arange(n_lags)) / finite.sum()) if finite.sum() > 0 else None,
                "key_frame_rate": float(step_hits[layer][head] / n_far_steps) if n_far_steps else 0.0,
                "far_peakiness": float(peak_sum[layer][head] / max(step_hits[layer][head], 1)),
                "period": period,
                "period_acf": acf,
            }
            features = {k: v if v is None or np.isfinite(v) else None for k, v in features.items()}
            kind, reason = classify_head(features, cfg)
            heads.append({"layer": layer, "head": head, "kind": kind, "reason": reason, "features": features})
    shapes = np.stack([profiles[h["layer"]]["shape"][h["head"]] for h in heads])
    labels = cluster_heads(shapes, cfg.n_clusters)
    clusters = []
    for c in range(int(labels.max()) + 1):
        members = [h for h, label in zip(heads, labels) if label == c]
        for h in members:
            h["cluster"] = c
        mean_shape = np.nanmean(shapes[labels == c], axis=0)
        clusters.append({
            "cluster": c,
            "heads": [f"L{h['layer']}H{h['head']}" for h in members],
            "kinds": {kind: sum(h["kind"] == kind for h in members) for kind in KINDS},
            "mean_recent_share": float(np.mean([h["features"]["recent_share"] for h in members])),
            "mean_shape": mean_shape,
        })  # fmt: skip
    return {
        "layers": layers,
        "n_heads": int(n_heads),
        "memory_length": int(n_lags - 1),
        "n_steps_per_lag": counts_e.sum(0),
        "n_share_steps": int(recent_n_e.sum()),
        "n_far_steps": n_far_steps,
        "profiles": profiles,
        "shares": shares,
        "heads": heads,
        "clusters": clusters,
        "key_frames": key_frames,
        "n_detections": n_detections,
    }


# ---------------------------------------------------------------------------------------------- figures


def _save(fig, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100)
    return path


def _positive(v: np.ndarray) -> np.ndarray:
    """NaN where not > 0: a log axis drops the masked lags instead of clipping them."""
    return np.where(v > 0, v, np.nan)


def plot_profiles(result: dict, layer: int, cfg: AttentionConfig, path: Path) -> Path:
    from matplotlib.figure import Figure
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    prof, n_heads = result["profiles"][layer], result["n_heads"]
    kinds = {h["head"]: h for h in result["heads"] if h["layer"] == layer}
    n_cols = min(n_heads, 4)
    n_rows = -(-n_heads // n_cols)
    fig = Figure(figsize=(3.6 * n_cols, 2.7 * n_rows + 0.6), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, sharex=True, sharey=True, squeeze=False).ravel()
    lags = np.arange(result["memory_length"] + 1)
    band = f"{cfg.confidence:.0%} CI, bootstrap over episodes"
    for head, ax in enumerate(axes):
        if head >= n_heads:
            ax.set_visible(False)
            continue
        ax.fill_between(
            lags, _positive(prof["ci_low"][head]), _positive(prof["ci_high"][head]), alpha=0.3, color="C0", lw=0
        )
        ax.plot(lags, _positive(prof["mean"][head]), color="C0", lw=1.4, marker=".", ms=3)
        ax.axvspan(-0.5, cfg.recent_lags - 0.5, color="C1", alpha=0.12, lw=0)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FormatStrFormatter("%.2g"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        share = kinds[head]["features"]["recent_share"]
        share = "n/a" if share is None else f"{share:.2f}"
        ax.set_title(f"head {head}: {kinds[head]['kind']} (last {cfg.recent_lags}: {share})", fontsize=10)
        ax.grid(alpha=0.3, which="both", lw=0.5)
    for ax in axes[-n_cols:]:
        ax.set_xlabel("lag (frames back)")
    for ax in axes[::n_cols]:
        ax.set_ylabel("mean attention")
    fig.suptitle(f"Layer {layer}: attention by lag (line: mean over valid steps; band: {band}; "
                 f"orange: last {cfg.recent_lags} frames)", fontsize=10)  # fmt: skip
    return _save(fig, path)


def plot_heatmap(result: dict, path: Path) -> Path:
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    layers, n_heads = result["layers"], result["n_heads"]
    stack = np.stack([result["profiles"][layer]["mean"] for layer in layers])
    positive = stack[np.isfinite(stack) & (stack > 0)]
    norm = LogNorm(vmin=max(positive.min(), positive.max() * 1e-4), vmax=positive.max()) if positive.size else None
    cmap = colormaps["magma"].with_extremes(bad="0.85")
    fig = Figure(figsize=(10, 0.9 + (0.28 * n_heads + 0.7) * len(layers)), layout="constrained")
    axes = fig.subplots(len(layers), 1, squeeze=False)[:, 0]
    for ax, layer, grid in zip(axes, layers, stack, strict=True):
        im = ax.imshow(np.where(grid > 0, grid, np.nan), aspect="auto", cmap=cmap, norm=norm, interpolation="nearest")
        ax.set_ylabel(f"L{layer} head")
        ax.set_yticks(range(n_heads))
        ax.tick_params(labelsize=8)
    axes[-1].set_xlabel("lag (frames back)")
    fig.colorbar(im, ax=list(axes), label="mean attention (log)", shrink=0.9)
    fig.suptitle("Mean attention by lag, heads x lag per layer (grey: no mass, e.g. the masked lag M)", fontsize=10)
    return _save(fig, path)


def plot_clusters(result: dict, path: Path) -> Path:
    """One panel per cluster of heads: each member's lag-profile shape (thin) and the cluster's mean (thick)."""
    from matplotlib.figure import Figure

    clusters = result["clusters"]
    fig = Figure(figsize=(3.6 * len(clusters), 3.2), layout="constrained")
    axes = fig.subplots(1, len(clusters), squeeze=False)[0]
    lags = np.arange(result["memory_length"] + 1)
    for ax, cluster in zip(axes, clusters, strict=True):
        for name in cluster["heads"]:
            layer, head = (int(x) for x in name[1:].split("H"))
            ax.plot(lags, _positive(result["profiles"][layer]["shape"][head]), lw=0.6, alpha=0.5, color="C0")
        ax.plot(lags, _positive(cluster["mean_shape"]), lw=2.0, color="C3")
        ax.set_yscale("log")
        kinds = ", ".join(f"{k} {n}" for k, n in cluster["kinds"].items() if n)
        n = len(cluster["heads"])
        ax.set_title(f"cluster {cluster['cluster']}: {n} head{'s' if n != 1 else ''}\n({kinds})", fontsize=9)
        ax.set_xlabel("lag (frames back)")
    axes[0].set_ylabel("share of the head's mass (log)")
    fig.suptitle("Heads clustered by lag-profile shape (average linkage, Hellinger distance); red: cluster mean",
                 fontsize=10)  # fmt: skip
    return _save(fig, path)


def plot_shares(result: dict, cfg: AttentionConfig, path: Path) -> Path:
    from matplotlib.figure import Figure

    layers, n_heads = result["layers"], result["n_heads"]
    fig = Figure(figsize=(max(6.0, 0.35 * n_heads * len(layers) + 2), 3.6), layout="constrained")
    ax = fig.subplots()
    x, labels = 0, []
    for i, layer in enumerate(layers):
        sh = result["shares"][layer]
        xs = np.arange(n_heads) + x
        err = np.stack([sh["mean"] - sh["ci_low"], sh["ci_high"] - sh["mean"]])
        ax.bar(xs, sh["mean"], yerr=err, color=f"C{i % 10}", capsize=2, label=f"layer {layer}")
        labels += [f"L{layer}h{h}" for h in range(n_heads)]
        x += n_heads + 1
    ticks = [j + (n_heads + 1) * i for i in range(len(layers)) for j in range(n_heads)]
    ax.set_xticks(ticks, labels, rotation=90, fontsize=7)
    ax.set_ylim(0, 1)
    ax.axhline(cfg.recent_head_min_share, color="grey", ls="--", lw=0.8)
    ax.set_ylabel(f"share on last {cfg.recent_lags} frames")
    ax.set_title(f"Share of attention on lags 0..{cfg.recent_lags - 1}\n(error bars: {cfg.confidence:.0%} CI, "
                 "bootstrap over episodes; dashed: 'recent' head threshold)", fontsize=10)  # fmt: skip
    ax.legend(fontsize=8, loc="upper right")
    return _save(fig, path)


def plot_raster(result: dict, episode: Episode, pos: int, cfg: AttentionConfig, path: Path) -> Path:
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    layers = [layer for layer in (cfg.raster_layers or result["layers"]) if layer in result["layers"]]
    if not layers:
        raise ValueError(f"raster_layers {cfg.raster_layers} are not among the analysed layers {result['layers']}")
    what = "mean over heads" if cfg.raster_head is None else f"head {cfg.raster_head}"
    fig = Figure(figsize=(11, 0.8 + 3.0 * len(layers)), layout="constrained")
    axes = fig.subplots(len(layers), 1, squeeze=False, sharex=True)[:, 0]
    for ax, layer in zip(axes, layers, strict=True):
        a = lag_order(episode[f"attention/L{layer}"][:])
        img = a.mean(1) if cfg.raster_head is None else a[:, cfg.raster_head]
        img = np.where(valid_lags(*img.shape) & (img > 0), img, np.nan)
        finite = img[np.isfinite(img)]
        norm = LogNorm(vmin=max(finite.min(), finite.max() * 1e-3), vmax=finite.max()) if finite.size else None
        im = ax.imshow(img.T, origin="lower", aspect="auto", cmap="viridis", norm=norm, interpolation="nearest")
        fig.colorbar(im, ax=ax, label="attention (log)", pad=0.01)
        hits = [
            (t, t - kf["step"])
            for kf in result["key_frames"]
            if kf["episode"] == pos
            for t, det_layer, det_head, _ in kf["detections"]
            if det_layer == layer and (cfg.raster_head is None or det_head == cfg.raster_head)
        ]
        if hits:
            ts, ks = np.array(hits).T
            ax.scatter(ts, ks, s=16, facecolors="none", edgecolors="red", lw=1.0, label="key-frame detection")
            ax.legend(fontsize=8, loc="upper left")
        ax.set_ylabel(f"L{layer}: lag (frames back)")
    axes[-1].set_xlabel("step t")
    fig.suptitle(f"{episode.path.name}: attention of each step over its memory ({what}); "
                 "a key frame shows as a diagonal (its lag grows with t)", fontsize=10)  # fmt: skip
    return _save(fig, path)


def _crosshair_text(crosshair: dict | None) -> str:
    if not crosshair:
        return "-"
    what = crosshair.get("block") or crosshair.get("type") or crosshair.get("entity_type") or ""
    dist = crosshair.get("distance")
    return f"{crosshair.get('kind', '?')} {what}" + (f" at {dist:.1f}" if isinstance(dist, float | int) else "")


def _caption(kf: dict) -> str:
    at = kf["at_max"]
    events = ", ".join(e.get("type", "?") for e in kf["events"] or []) or "none"
    keys = " ".join(kf["keys"] or []) or "-"
    cam = "-" if kf["camera"] is None else f"({kf['camera'][0]:+.0f}, {kf['camera'][1]:+.0f}) deg"
    return (
        f"ep {kf['episode_index']} step {kf['step']} <- t={at['step']} (lag {at['lag']})\n"
        f"ratio {kf['max_ratio']:.1f}, mass {at['mass']:.2f}, L{at['layer']}h{at['head']}\n"
        f"attended {kf['n_steps_attended']} steps, {kf['first_step']}..{kf['last_step']}\n"
        f"events: {events}\nkeys: {keys}, camera {cam}\ncrosshair: {_crosshair_text(kf['crosshair'])}"
    )


def plot_gallery(result: dict, episodes: list[Episode], cfg: AttentionConfig, path: Path) -> Path:
    from matplotlib.figure import Figure

    items = result["key_frames"][: cfg.n_gallery]
    if not items:
        fig = Figure(figsize=(6, 1.5))
        fig.text(0.5, 0.5, f"No key frames (ratio >= {cfg.key_ratio}, mass >= {cfg.key_floor}, lag >= "
                 f"{cfg.key_min_lag}).", ha="center", va="center")  # fmt: skip
        return _save(fig, path)
    n_cols = min(len(items), 3)
    n_rows = -(-len(items) // n_cols)
    fig = Figure(figsize=(4.6 * n_cols, 3.5 * n_rows + 0.5), layout="constrained")
    grids = fig.subfigures(n_rows, n_cols, squeeze=False).ravel()
    for sub, kf in zip(grids, items + [None] * (len(grids) - len(items)), strict=True):
        if kf is None:
            continue
        episode = episodes[kf["episode"]]
        left, right = sub.subplots(1, 2)
        for ax, step, title in ((left, kf["step"], "key frame"), (right, kf["at_max"]["step"], "attended from")):
            ax.imshow(np.asarray(episode["frames"][step]))
            ax.set_title(f"{title} s={step}" if ax is left else f"{title} t={step}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        sub.supxlabel(_caption(kf), fontsize=8, ha="center")
    fig.suptitle(f"Key frames: past frames drawing >= {cfg.key_ratio}x the head's mean at that lag "
                 f"(and >= {cfg.key_floor}), most detected first", fontsize=11)  # fmt: skip
    return _save(fig, path)


def _write_index(out_dir: Path, figures: dict[str, str], summary: dict) -> Path:
    parts = [f"<h2>{html.escape(name)}</h2><p><img src='{html.escape(file)}' style='max-width:100%'></p>"
             for name, file in figures.items()]  # fmt: skip
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>vpt-lens attention</title></head><body>"
        f"<h1>Attention over time</h1><pre>{html.escape(json.dumps(summary, indent=2))}</pre>"
        "<p>All numbers: <a href='attention.json'>attention.json</a></p>" + "".join(parts) + "</body></html>"
    )
    path = out_dir / "index.html"
    path.write_text(page)
    return path


# ---------------------------------------------------------------------------------------------- entry point


def _provenance(cfg: AttentionConfig, episodes: list[Episode]) -> dict:
    manifest_path = cfg.run / "run.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    return {
        "run_path": str(cfg.run.resolve()),
        "policy_config": episodes[0].attrs.get("policy_config") or (manifest.get("agent") or {}).get("config"),
        "agent": episodes[0].attrs.get("agent"),
        "run_git_commit": manifest.get("git_commit", episodes[0].attrs.get("git_commit")),
        "package_version": vptlens.__version__,
        "git_commit": git_commit(),
        "config": json.loads(json.dumps(asdict(cfg), default=str)),
        "episodes": [e.path.name for e in episodes],
        "n_steps": int(sum(len(e) for e in episodes)),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def main(cfg: AttentionConfig) -> dict:
    """Analyse the run's attention; write attention.json, PNG figures and index.html into cfg.out; return a summary."""
    episodes = open_episodes(cfg.run)
    if not episodes:
        raise ValueError(f"{cfg.run}: no complete episodes; record some with `vptlens record`")
    if not 0 <= cfg.raster_episode < len(episodes):
        raise ValueError(f"raster_episode {cfg.raster_episode} out of range: the run has {len(episodes)} episodes")
    logger.info("attention: %d episodes, %d steps", len(episodes), sum(len(e) for e in episodes))
    result = analyse(cfg, episodes)
    if cfg.raster_head is not None and not 0 <= cfg.raster_head < result["n_heads"]:
        raise ValueError(f"raster_head {cfg.raster_head} out of range: the policy has {result['n_heads']} heads")
    cfg.out.mkdir(parents=True, exist_ok=True)

    figures = {}
    for layer in result["layers"]:
        figures[f"lag profiles, layer {layer}"] = plot_profiles(
            result, layer, cfg, cfg.out / f"lag_profiles_L{layer}.png"
        ).name
    figures["lag heatmap"] = plot_heatmap(result, cfg.out / "lag_heatmap.png").name
    figures["head clusters"] = plot_clusters(result, cfg.out / "head_clusters.png").name
    figures["recent share"] = plot_shares(result, cfg, cfg.out / "recent_share.png").name
    raster_path = cfg.out / f"raster_episode{cfg.raster_episode}.png"
    figures["raster"] = plot_raster(result, episodes[cfg.raster_episode], cfg.raster_episode, cfg, raster_path).name
    figures["key-frame gallery"] = plot_gallery(result, episodes, cfg, cfg.out / "key_frames.png").name

    kinds = {kind: sum(h["kind"] == kind for h in result["heads"]) for kind in KINDS}
    report = {
        "schema": "vptlens.attention",
        "schema_version": 1,
        "provenance": _provenance(cfg, episodes),
        "memory_length": result["memory_length"],
        "n_heads": result["n_heads"],
        "layers": result["layers"],
        "normalisation": __doc__.split("1. Lag profiles.")[1].split("2. Key frames.")[0].strip(),
        "n_steps_per_lag": _json_list(result["n_steps_per_lag"]),
        "profiles": {
            f"L{layer}": {k: [_json_list(row) for row in v] for k, v in result["profiles"][layer].items()}
            for layer in result["layers"]
        },
        "recent_share": {
            "lags": list(range(cfg.recent_lags)),
            "n_steps": result["n_share_steps"],
            **{
                f"L{layer}": {k: _json_list(v) for k, v in result["shares"][layer].items()}
                for layer in result["layers"]
            },
        },
        "rest_share": {
            f"L{layer}": {
                "mean": _json_list(1.0 - result["shares"][layer]["mean"]),
                "ci_low": _json_list(1.0 - result["shares"][layer]["ci_high"]),
                "ci_high": _json_list(1.0 - result["shares"][layer]["ci_low"]),
            }
            for layer in result["layers"]
        },
        "head_kinds": result["heads"],
        "head_clusters": [{**c, "mean_shape": _json_list(c["mean_shape"])} for c in result["clusters"]],
        "key_frames": {
            "n_key_frames": len(result["key_frames"]),
            "n_detections": result["n_detections"],
            "n_listed": min(len(result["key_frames"]), cfg.max_key_frames),
            "items": result["key_frames"][: cfg.max_key_frames],
        },
        "figures": figures,
    }
    (cfg.out / "attention.json").write_text(json.dumps(report, indent=1, allow_nan=False))
    summary = {
        "out_dir": str(cfg.out),
        "json_path": str(cfg.out / "attention.json"),
        "figures": [str(cfg.out / f) for f in figures.values()],
        "n_episodes": len(episodes),
        "n_steps": report["provenance"]["n_steps"],
        "head_kinds": kinds,
        "recent_share_by_layer": {
            f"L{layer}": _finite(np.mean(result["shares"][layer]["mean"])) for layer in result["layers"]
        },
        "n_key_frames": len(result["key_frames"]),
    }
    _write_index(cfg.out, figures, summary)
    summary["index_html"] = str(cfg.out / "index.html")
    logger.info("attention: wrote %s (%d key frames; head kinds %s)", cfg.out, summary["n_key_frames"], kinds)
    return summary
