"""`vptlens attention`: where in time the agent looks. Lag profiles, head kinds and key frames of a recorded run.

Reads each episode's `attention(layer)` (PROTOCOL.md: (N, heads, M+1) float16, column M is the
current frame, column M-k is k frames back, masked keys exactly 0). Everything is computed in two
streaming passes over the episodes (one episode's attention in memory at a time); the statistics
are in `attention_stats.py`, the figures and the index page in `attention_plots.py`:

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

Around events (`--event`, default logs broken): whether key frames fall near them and whether later queries keep
looking back at the event frame; see `attention_events.py`.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tyro
from tqdm import tqdm

from vptlens.probes import attention_events, report
from vptlens.probes import attention_plots as plots
from vptlens.probes.attention_stats import (
    KINDS,
    bootstrap_ratio,
    classify_head,
    cluster_heads,
    detect_key_frames,
    episode_sums,
    far_peakiness,
    lag_order,
    profile_period,
)
from vptlens.recordings import schema
from vptlens.recordings.store import Episode, Run

logger = logging.getLogger(__name__)

__all__ = ["KINDS", "AttentionConfig", "AttentionResult", "compute", "main"]


@dataclass(frozen=True)
class AttentionConfig:
    """Attention over time: lag profiles per layer and head, head kinds, key frames; JSON and plots."""

    run: tyro.conf.Positional[Path]
    """A recorded run directory (the --out of `vptlens record`), or a single episode directory."""
    out: Path = Path("attention")
    """Directory to write attention.json, the PNG figures and index.html into (created)."""
    overwrite: bool = False
    """Replace an existing, non-empty --out directory (otherwise refused before any work)."""
    layers: tuple[int, ...] | None = None
    """Blocks to analyse (the layer indices `vptlens info` lists for attention); default: every block recorded."""
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
    event: str = "block_broken:*_log"
    """Events to look at attention around: TYPE or TYPE:PATTERN (fnmatch on the block, entity, item or cause name),
    e.g. block_broken:*_log, entity_attacked:villager; '' leaves the events section out."""
    event_window: int = 10
    """A key frame is near an event when their steps differ by at most this many steps."""
    n_permutations: int = 1000
    """Circular shifts of each episode's event times for the chance level of key frames near events."""

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
        if self.layers is not None and not self.layers:
            raise ValueError("--layers needs at least one layer (leave it out for every recorded layer)")
        if self.periodic_max_period is not None and self.periodic_max_period < 2:
            raise ValueError(f"periodic_max_period must be >= 2, got {self.periodic_max_period}")
        attention_events.parse_event(self.event)
        if self.event_window < 0 or self.n_permutations < 1:
            raise ValueError(f"event_window must be >= 0 and n_permutations >= 1; got {self.event_window}, "
                             f"{self.n_permutations}")  # fmt: skip


@dataclass
class AttentionResult:
    """What `compute` finds; `main` renders it. Arrays are float64, indexed [head, lag] or [head]."""

    episodes: list[Episode]
    layers: list[int]
    n_heads: int
    memory_length: int
    n_steps_per_lag: np.ndarray
    """Steps (over all episodes) at which the frame k back existed, per lag k."""
    n_share_steps: int
    n_far_steps: int
    profiles: dict[int, dict[str, np.ndarray]]
    """Per layer: mean, ci_low, ci_high (the lag profile with its band) and shape (mean / its sum)."""
    shares: dict[int, dict[str, np.ndarray]]
    """Per layer: mean, ci_low, ci_high of the share of mass on the last `recent_lags` frames, per head."""
    heads: list[dict]
    """One per (layer, head): layer, head, kind, reason, features, cluster."""
    clusters: list[dict]
    key_frames: list[dict]
    """Every key frame, most detected first."""
    n_detections: int
    events: attention_events.EventsResult | None = None
    """Attention around `cfg.event` (None: the section is off)."""
    head_kinds: dict[str, int] = field(init=False)

    def __post_init__(self):
        self.head_kinds = {kind: sum(h["kind"] == kind for h in self.heads) for kind in KINDS}

    @property
    def n_steps(self) -> int:
        return int(sum(len(e) for e in self.episodes))


# ---------------------------------------------------------------------------------------------- checks


def _check(cfg: AttentionConfig, run: Run) -> tuple[list[Episode], list[int]]:
    """Every check that needs the run but no work: episodes, layers, raster choices. Returns (episodes, layers)."""
    episodes = run.episodes()
    empty = [e.path.name for e in episodes if len(e) == 0]
    if empty:
        logger.warning("%d episode(s) have no committed steps and are left out: %s", len(empty), ", ".join(empty))
        episodes = [e for e in episodes if len(e) > 0]
    if not episodes:
        raise ValueError(f"{cfg.run}: no complete episodes with steps; record some with `vptlens record`")
    recorded = episodes[0].layers
    if not recorded:
        raise KeyError(f"{episodes[0].path} stores no attention; record the run with `vptlens record`")
    for episode in episodes[1:]:
        if episode.layers != recorded:
            raise ValueError(f"{episode.path} stores the attention of layers {episode.layers}, {episodes[0].path} "
                             f"of {recorded}; analyse a uniform run")  # fmt: skip
    missing = sorted(set(cfg.layers or ()) - set(recorded))
    if missing:
        raise KeyError(f"--layers {missing} are not recorded in {cfg.run}; it stores the attention of layers "
                       f"{recorded}")  # fmt: skip
    layers = recorded if cfg.layers is None else sorted(set(cfg.layers))
    n_heads, n_lags = episodes[0].attention(layers[0]).shape[1:]
    if cfg.key_min_lag >= n_lags or cfg.recent_lags >= n_lags:
        raise ValueError(f"key_min_lag and recent_lags must be < {n_lags} (the memory length M + 1)")
    if not 0 <= cfg.raster_episode < len(episodes):
        raise ValueError(f"raster_episode {cfg.raster_episode} out of range: the run has {len(episodes)} episodes")
    if cfg.raster_head is not None and not 0 <= cfg.raster_head < n_heads:
        raise ValueError(f"raster_head {cfg.raster_head} out of range: the policy has {n_heads} heads")
    if cfg.raster_layers is not None and not set(cfg.raster_layers) & set(layers):
        raise ValueError(f"raster_layers {cfg.raster_layers} are not among the analysed layers {layers}")
    return episodes, layers


# ---------------------------------------------------------------------------------------------- key-frame context


def _optional(read):
    """An episode's array if it was recorded (MineRL runs lack the ground truth, older ones the MineRL actions)."""
    try:
        return read()
    except KeyError:
        return None


def _step_contexts(episode: Episode, steps: list[int]) -> dict[int, dict]:
    """What happened at each step: env events, the MineRL action taken (keys pressed, camera degrees), crosshair."""
    if not steps:
        return {}
    gt = {n: episode.ground_truth(n)[:] for n in ("events", "crosshair") if episode.has_ground_truth(n)}
    keys = {k: np.asarray(episode.minerl_action(k)[:]) for k in episode.minerl_keys}
    camera = _optional(lambda: np.asarray(episode.minerl_action("camera")[:]))
    return {
        s: {
            "events": gt["events"][s] if "events" in gt else None,
            "keys": [k for k, v in keys.items() if v[s]],
            "camera": None if camera is None else [float(v) for v in camera[s]],
            "crosshair": gt["crosshair"][s] if "crosshair" in gt else None,
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
                "episode_index": episode.meta.episode_index,
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


def compute(cfg: AttentionConfig, run: Run | None = None) -> AttentionResult:
    """Both passes over the run's complete episodes: profiles with bands, recent shares, head features and kinds,
    clusters, key frames. Writes nothing."""
    episodes, layers = _check(cfg, Run.open(cfg.run) if run is None else run)
    logger.info("attention: %d episodes, %d steps", len(episodes), sum(len(e) for e in episodes))
    n_heads, n_lags = episodes[0].attention(layers[0]).shape[1:]
    sums = {layer: [] for layer in layers}
    counts, recent, recent_n = [], {layer: [] for layer in layers}, []
    for episode in tqdm(episodes, desc="attention: lag profiles", unit="episode"):
        for layer in layers:
            arr = episode.attention(layer)
            if arr.shape[1:] != (n_heads, n_lags):
                raise ValueError(f"{episode.path}: the attention of layer {layer} has shape {arr.shape}, other "
                                 f"episodes (*, {n_heads}, {n_lags})")  # fmt: skip
            s, c, r, n = episode_sums(lag_order(arr[:]), cfg.recent_lags)
            sums[layer].append(s)
            recent[layer].append(r)
        counts.append(c)
        recent_n.append(n)
    rng = np.random.default_rng(cfg.seed)
    counts_e, recent_n_e = np.stack(counts), np.asarray(recent_n, np.float64)
    profiles, shares = {}, {}
    for layer in layers:
        mean, lo, hi = bootstrap_ratio(np.stack(sums[layer]), counts_e[:, None, :], cfg.n_bootstrap, cfg.confidence,
                                       rng)  # fmt: skip
        with np.errstate(invalid="ignore", divide="ignore"):
            shape = mean / np.nansum(mean, -1, keepdims=True)
        profiles[layer] = {"mean": mean, "ci_low": lo, "ci_high": hi, "shape": shape}
        mean, lo, hi = bootstrap_ratio(np.stack(recent[layer]), recent_n_e[:, None], cfg.n_bootstrap, cfg.confidence,
                                       rng)  # fmt: skip
        shares[layer] = {"mean": mean, "ci_low": lo, "ci_high": hi}

    # pass 2: key frames against the profiles, and the per-step features of the heads
    step_hits = {layer: np.zeros(n_heads) for layer in layers}  # steps with >= 1 detection, per head
    peak_sum = {layer: np.zeros(n_heads) for layer in layers}  # far peakiness summed over those steps
    n_far_steps, n_detections, key_frames = 0, 0, []
    for pos, episode in enumerate(tqdm(episodes, desc="attention: key frames", unit="episode")):
        detections = []
        for layer in layers:
            a = lag_order(episode.attention(layer)[:])
            idx, ratios = detect_key_frames(a, profiles[layer]["mean"], cfg.key_ratio, cfg.key_floor, cfg.key_min_lag)
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
        clusters.append({
            "cluster": c,
            "heads": [head_name(h["layer"], h["head"]) for h in members],
            "kinds": {kind: sum(h["kind"] == kind for h in members) for kind in KINDS},
            "mean_recent_share": float(np.mean([h["features"]["recent_share"] for h in members])),
            "mean_shape": _nanmean(shapes[labels == c]),
        })  # fmt: skip
    result = AttentionResult(
        episodes=episodes,
        layers=layers,
        n_heads=int(n_heads),
        memory_length=int(n_lags - 1),
        n_steps_per_lag=counts_e.sum(0),
        n_share_steps=int(recent_n_e.sum()),
        n_far_steps=n_far_steps,
        profiles=profiles,
        shares=shares,
        heads=heads,
        clusters=clusters,
        key_frames=key_frames,
        n_detections=n_detections,
    )
    if cfg.event:
        result.events = attention_events.compute_events(result, cfg)
    return result


def _nanmean(rows: np.ndarray) -> np.ndarray:
    """Mean over rows ignoring NaN; NaN (quietly) where every row is NaN (lags no episode reached)."""
    n = np.isfinite(rows).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.nansum(rows, 0) / n, np.nan)


def head_name(layer: int, head: int) -> str:
    return f"L{layer}H{head}"


# ---------------------------------------------------------------------------------------------- the report


def _by_lag(values: np.ndarray, n_steps_per_lag: np.ndarray) -> list:
    """A [head, lag] array as JSON rows; lags no step reached are null with that reason."""
    never = report.Null("no step had a frame this many steps back: every episode is shorter")
    return [[never if n == 0 else v for v, n in zip(row.tolist(), n_steps_per_lag)] for row in values]


def to_json(result: AttentionResult, cfg: AttentionConfig, run: Run, figures: dict[str, str]) -> dict:
    """attention.json: the result, with the run's provenance and the figures' file names."""
    n_lag = result.n_steps_per_lag
    normalisation = __doc__.split("1. Lag profiles.")[1].split("2. Key frames.")[0].strip()
    manifest = run.manifest
    return {
        "schema": "vptlens.attention",
        "schema_version": 1,
        "provenance": schema.provenance(
            cfg,
            run=run,
            episodes=[e.path.name for e in result.episodes],
            n_steps=result.n_steps,
            policy_config=result.episodes[0].meta.policy_config,
            run_git_commit=result.episodes[0].meta.git_commit if manifest is None else manifest.git_commit,
        ),
        "memory_length": result.memory_length,
        "n_heads": result.n_heads,
        "layers": result.layers,
        "normalisation": normalisation,
        "n_steps_per_lag": n_lag,
        "profiles": {
            f"L{layer}": {k: _by_lag(v, n_lag) for k, v in result.profiles[layer].items()} for layer in result.layers
        },
        "recent_share": {
            "lags": list(range(cfg.recent_lags)),
            "n_steps": result.n_share_steps,
            **{f"L{layer}": result.shares[layer] for layer in result.layers},
        },
        "rest_share": {
            f"L{layer}": {
                "mean": 1.0 - result.shares[layer]["mean"],
                "ci_low": 1.0 - result.shares[layer]["ci_high"],
                "ci_high": 1.0 - result.shares[layer]["ci_low"],
            }
            for layer in result.layers
        },
        "head_kinds": result.heads,
        "head_clusters": result.clusters,
        "key_frames": {
            "n_key_frames": len(result.key_frames),
            "n_detections": result.n_detections,
            "n_listed": min(len(result.key_frames), cfg.max_key_frames),
            "items": result.key_frames[: cfg.max_key_frames],
        },
        "events": report.Null("off (--event '')") if result.events is None else attention_events.to_json(result.events),
        "figures": figures,
    }


def main(cfg: AttentionConfig) -> dict:
    """Analyse the run's attention; write attention.json, PNG figures and index.html into cfg.out; return a summary."""
    report.check_out_dir(cfg.out, cfg.overwrite)
    run = Run.open(cfg.run)
    result = compute(cfg, run)
    out = report.make_out_dir(cfg.out, cfg.overwrite)
    figures = plots.render_figures(result, cfg, out)
    json_path = report.write_json(out / "attention.json", to_json(result, cfg, run, figures))
    summary = {
        "out_dir": str(out),
        "json_path": str(json_path),
        "figures": [str(out / f) for f in figures.values()],
        "n_episodes": len(result.episodes),
        "n_steps": result.n_steps,
        "head_kinds": result.head_kinds,
        "recent_share_by_layer": {f"L{layer}": float(np.mean(result.shares[layer]["mean"])) for layer in result.layers},
        "n_key_frames": len(result.key_frames),
    }
    summary["index_html"] = str(plots.write_index(out, result, cfg, figures, summary))
    logger.info("attention: wrote %s (%d key frames; head kinds %s)", out, summary["n_key_frames"], result.head_kinds)
    return summary
