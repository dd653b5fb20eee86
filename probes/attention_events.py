"""Attention around events: do key frames fall near an event, and does the agent keep looking back at it?

An event kind is a spec `TYPE[:PATTERN]` (`AttentionConfig.event`, e.g. `block_broken:*_log`): the events of that
type in an episode's ground truth (`gt/events`; PROTOCOL.md: step t holds the events of the tick that produced
frame t) whose name (the `block`, `entity_type`, `item` or `cause` field, with or without a `minecraft:` prefix)
matches the fnmatch PATTERN (case-sensitive). An event step is a step with at least one such event; both analyses
count event steps, not events. Episodes without `gt/events` (MineRL, older recordings) are left out.

1. Key-frame enrichment. A key frame (attention.py: the attended step s of one episode, any head) is near an event
   when some event step e has |s - e| <= event_window. Observed: the fraction of key frames near an event. Chance:
   each episode's event steps are shifted circularly by one random offset in [0, length) while the key frames stay
   (the events keep their number and spacing, and lose their timing relative to the key frames), n_permutations
   times. Expected fraction: the mean over shifts; p = (1 + #{shifts with at least as many key frames near}) /
   (1 + n_permutations), one-sided; enrichment = observed / expected.
2. Event-triggered attention. For an event step e and a lag d = 1..M-1 with e + d inside the episode, the weight
   that the query at step e + d puts on frame e (lag d; rows renormalised as for the lag profiles). Its mean over
   event steps, per head and over heads, divided by the same head's (or the head-mean) lag profile at d (the mean
   weight at lag d over all queries) is the ratio curve: 1 means the event frame draws what any frame d back draws.
   The band of the head-mean ratio is an expanded percentile bootstrap resampling event steps, the profile held
   fixed; event steps of one episode are not independent, so it is narrower than a band over episodes would be.
"""

import logging
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

import numpy as np
from jaxtyping import Float, Int
from tqdm import tqdm

from vptlens.probes import report
from vptlens.probes.attention_stats import bootstrap_ratio, lag_order

logger = logging.getLogger(__name__)

EVENT_TYPES = (
    "block_broken",
    "item_collected",
    "entity_attacked",
    "entity_killed",
    "player_hurt",
    "block_placed",
    "item_dropped",
)
"""The event types of `gt/events` (PROTOCOL.md)."""

NAME_FIELDS = ("block", "entity_type", "item", "cause")
"""Where an event names what it happened to; the first one present is matched against the pattern."""

PERMUTATION_BATCH = 256
"""Shifts tested at once (memory: batch x key frames of one episode)."""

_EXAMPLES = "e.g. --event block_broken:*_log (logs broken), --event entity_attacked:villager, or --event '' (off)"


@dataclass(frozen=True)
class EventSpec:
    """Which events count: a type and an optional fnmatch pattern on the event's name."""

    type: str
    pattern: str | None = None

    def matches(self, event: object) -> bool:
        if not isinstance(event, dict) or event.get("type") != self.type:
            return False
        if self.pattern is None:
            return True
        name = next((str(event[k]) for k in NAME_FIELDS if event.get(k) is not None), None)
        return name is not None and any(fnmatchcase(n, self.pattern) for n in (name, name.removeprefix("minecraft:")))

    def __str__(self) -> str:
        return self.type if self.pattern is None else f"{self.type}:{self.pattern}"


def parse_event(text: str) -> EventSpec | None:
    """`TYPE` or `TYPE:PATTERN` -> EventSpec; "" -> None (the events section is off). ValueError naming the fix."""
    if text == "":
        return None
    kind, colon, pattern = text.partition(":")
    if kind not in EVENT_TYPES:
        raise ValueError(f"event {text!r}: unknown event type {kind!r}; write TYPE or TYPE:PATTERN with TYPE one of "
                         f"{', '.join(EVENT_TYPES)} ({_EXAMPLES})")  # fmt: skip
    if colon and not pattern.strip():
        raise ValueError(f"event {text!r}: nothing after ':'; write {kind} for every {kind} event, or {kind}:PATTERN "
                         f"with an fnmatch pattern on the name ({_EXAMPLES})")  # fmt: skip
    return EventSpec(kind, pattern if colon else None)


def event_steps(rows: list, spec: EventSpec) -> Int[np.ndarray, " e"]:
    """The steps (sorted) whose events include one that `spec` matches; `rows` is an episode's parsed gt/events."""
    return np.array([t for t, row in enumerate(rows) if any(spec.matches(e) for e in row or [])], np.int64)


# ---------------------------------------------------------------------------------------------- 1. enrichment


def near_events(steps: Int[np.ndarray, " s"], events: Int[np.ndarray, " e"], window: int) -> np.ndarray:
    """near[i]: some event step e (sorted) has |steps[i] - e| <= window."""
    lo = np.searchsorted(events, steps - window, "left")
    return np.searchsorted(events, steps + window, "right") > lo


def n_near_shifted(
    steps: Int[np.ndarray, " s"],
    events: Int[np.ndarray, " e"],
    length: int,
    window: int,
    offsets: Int[np.ndarray, " p"],
) -> Int[np.ndarray, " p"]:
    """For each offset o: how many of `steps` are near the event steps shifted circularly by o (mod length)."""
    if len(steps) == 0 or len(events) == 0:
        return np.zeros(len(offsets), np.int64)
    shifted = np.sort((events[None, :] + offsets[:, None]) % length, axis=1)
    # one sorted array of all shifts: row r lives in [r * stride, r * stride + length), and its queries
    # (steps -+ window) cannot reach a neighbouring row's values
    base = np.arange(len(offsets))[:, None] * (length + 2 * window + 2)
    flat = (shifted + base).ravel()
    lo = np.searchsorted(flat, (steps[None, :] - window + base).ravel(), "left")
    hi = np.searchsorted(flat, (steps[None, :] + window + base).ravel(), "right")
    return (hi > lo).reshape(len(offsets), len(steps)).sum(1)


def enrichment_test(
    episodes: list[tuple[np.ndarray, np.ndarray, int]], window: int, n_permutations: int, rng: np.random.Generator
) -> tuple[dict, np.ndarray]:
    """Key frames near events against circular shifts of each episode's events.

    `episodes`: (key-frame steps, sorted event steps, length) per episode. Returns the statistics and the null
    distribution (key frames near, per shift).
    """
    n_key = sum(len(s) for s, _, _ in episodes)
    observed = sum(int(near_events(s, e, window).sum()) for s, e, _ in episodes)
    null = np.zeros(n_permutations, np.int64)
    for steps, events, length in episodes:
        offsets = rng.integers(0, length, n_permutations)
        for i in range(0, n_permutations, PERMUTATION_BATCH):
            batch = slice(i, i + PERMUTATION_BATCH)
            null[batch] += n_near_shifted(steps, events, length, window, offsets[batch])
    n_steps = sum(length for _, _, length in episodes)
    covered = sum(int(near_events(np.arange(length), e, window).sum()) for _, e, length in episodes)
    values, counts = np.unique(null, return_counts=True)
    if n_key:
        observed_fraction, expected = observed / n_key, float(null.mean()) / n_key
        quantiles = {q: float(np.quantile(null, float(q))) / n_key for q in ("0.05", "0.5", "0.95")}
        none_near = report.Null("no key frame is near an event under any shift")
        enrichment = observed_fraction / expected if expected > 0 else none_near
    else:
        observed_fraction = expected = enrichment = report.Null(
            "no key frames in the episodes with ground-truth events"
        )
        quantiles = {q: expected for q in ("0.05", "0.5", "0.95")}
    stats = {
        "window": window,
        "n_key_frames": n_key,
        "n_near": observed,
        "observed_fraction": observed_fraction,
        "expected_fraction": expected,
        "enrichment": enrichment,
        "p_value": (1 + int((null >= observed).sum())) / (1 + n_permutations),
        "n_permutations": n_permutations,
        "null_fraction_quantiles": quantiles,
        "null_distribution": {"n_near": values, "count": counts},
        "window_coverage": covered / n_steps,
    }
    return stats, null


# ---------------------------------------------------------------------------------------------- 2. triggered


def event_weights(
    a_tnk: Float[np.ndarray, "t n T"], first_step: int, events: Int[np.ndarray, " e"], length: int
) -> tuple[Float[np.ndarray, "e n d"], Float[np.ndarray, "e d"]]:
    """The weight the query at e + d puts on frame e, for lags d = 1..M-1: (weights, valid), 0 where not valid.

    `a_tnk` holds the steps first_step.. of an episode of `length` steps in lag order (index k = k back), reaching at
    least to min(length, last event + M); valid[e, d-1] says e + d < length.
    """
    lags = np.arange(1, a_tnk.shape[-1] - 1)
    t_ed = events[:, None] + lags[None, :]
    ok = t_ed < length
    w = a_tnk[np.where(ok, t_ed, first_step) - first_step, :, lags[None, :]]  # (e, d, n): advanced indices first
    return np.where(ok[:, None, :], w.transpose(0, 2, 1), 0.0), ok.astype(np.float64)


def triggered_curves(
    w_end: Float[np.ndarray, "e n d"],
    ok_ed: Float[np.ndarray, "e d"],
    profile_nk: Float[np.ndarray, "n T"],
    n_bootstrap: int,
    confidence: float,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Mean event-frame weight by lag and its ratio to the lag profile, per head and over heads (with a band).

    Lags with no event step are NaN. The head-mean band resamples event steps (`bootstrap_ratio`).
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        weight = w_end.sum(0) / ok_ed.sum(0)
        profile = profile_nk[:, 1 : w_end.shape[-1] + 1]
        mean, lo, hi = bootstrap_ratio(w_end.mean(1), ok_ed, n_bootstrap, confidence, rng)
        mean_profile = profile.mean(0)
        return {
            "n_events_per_lag": ok_ed.sum(0).astype(np.int64),
            "weight": weight,
            "ratio": weight / profile,
            "mean_weight": mean,
            "mean_profile": mean_profile,
            "mean_ratio": mean / mean_profile,
            "mean_ratio_ci_low": lo / mean_profile,
            "mean_ratio_ci_high": hi / mean_profile,
        }


# ---------------------------------------------------------------------------------------------- the pass


@dataclass
class EventsResult:
    """What `compute_events` finds; arrays by lag are indexed d - 1 for d = 1..M-1 (`lags`)."""

    event: str
    n_episodes: int
    """Episodes with ground-truth events (the others are left out)."""
    episodes_without_events: list[str]
    n_events: int
    """Event steps (steps with at least one matching event)."""
    n_event_records: int
    n_episodes_with_events: int
    lags: np.ndarray
    confidence: float
    enrichment: dict | None = None
    null_n_near: np.ndarray | None = None
    """The permutation distribution: key frames near the shifted events, per shift."""
    triggered: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def reason(self) -> str | None:
        """Why there is nothing to show, or None."""
        if self.n_episodes == 0:
            return "no episode has ground-truth events (gt/events): MineRL runs and older recordings lack them"
        if self.n_events == 0:
            return f"no {self.event} events in the {self.n_episodes} episodes with ground-truth events"
        return None


def compute_events(result, cfg) -> EventsResult:
    """Both analyses for `cfg.event` on an `AttentionResult` (its episodes, profiles and key frames) and an
    `AttentionConfig`; reads each episode's events and, around its event steps, its attention."""
    spec = parse_event(cfg.event)
    assert spec is not None, "compute_events with the events section off"
    rng = np.random.default_rng(cfg.seed)
    n_lags = result.memory_length + 1
    key_steps: dict[int, list[int]] = {}
    for kf in result.key_frames:
        key_steps.setdefault(kf["episode"], []).append(kf["step"])
    per_episode, missing, n_records = [], [], 0
    weights = {layer: ([], []) for layer in result.layers}
    for pos, episode in enumerate(tqdm(result.episodes, desc="attention: events", unit="episode")):
        if not episode.has_ground_truth("events"):
            missing.append(episode.path.name)
            continue
        rows = episode.ground_truth("events")[:]
        n_records += sum(spec.matches(e) for row in rows for e in row or [])
        events, length = event_steps(rows, spec), len(episode)
        per_episode.append((np.array(sorted(key_steps.get(pos, [])), np.int64), events, length))
        if len(events) == 0:
            continue
        first, last = int(events[0]), min(length, int(events[-1]) + n_lags - 1)
        for layer in result.layers:
            w, ok = event_weights(lag_order(episode.attention(layer)[first:last]), first, events, length)
            weights[layer][0].append(w)
            weights[layer][1].append(ok)
    if missing:
        logger.warning("%d episode(s) have no ground-truth events and are left out of the events section: %s",
                       len(missing), ", ".join(missing))  # fmt: skip
    n_events = sum(len(e) for _, e, _ in per_episode)
    out = EventsResult(
        event=str(spec),
        n_episodes=len(per_episode),
        episodes_without_events=missing,
        n_events=n_events,
        n_event_records=n_records,
        n_episodes_with_events=sum(len(e) > 0 for _, e, _ in per_episode),
        lags=np.arange(1, n_lags - 1),
        confidence=cfg.confidence,
    )
    if out.reason is not None:
        return out
    out.enrichment, out.null_n_near = enrichment_test(per_episode, cfg.event_window, cfg.n_permutations, rng)
    for layer in result.layers:
        w, ok = (np.concatenate(x) for x in weights[layer])
        profile = result.profiles[layer]["mean"]
        out.triggered[layer] = triggered_curves(w, ok, profile, cfg.n_bootstrap, cfg.confidence, rng)
    return out


def _by_lag(values: np.ndarray, n_per_lag: np.ndarray) -> list:
    never = report.Null("no event step had a query this many steps later (every event is too near its episode's end)")
    if values.ndim == 2:
        return [_by_lag(row, n_per_lag) for row in values]
    return [never if n == 0 else v for v, n in zip(values.tolist(), n_per_lag.tolist(), strict=True)]


def to_json(ev: EventsResult) -> dict:
    """The `events` section of attention.json (plain values; `report.Null` where a value does not exist)."""
    definition = " ".join(__doc__.split("\n\n", 1)[1].split())
    doc = {
        "event": ev.event,
        "definition": definition,
        "n_episodes": ev.n_episodes,
        "episodes_without_ground_truth": ev.episodes_without_events,
        "n_events": ev.n_events,
        "n_event_records": ev.n_event_records,
        "n_episodes_with_events": ev.n_episodes_with_events,
    }
    if ev.reason is not None:
        return doc | {"reason": ev.reason, "enrichment": report.Null(ev.reason), "triggered": report.Null(ev.reason)}
    triggered = {"lags": ev.lags, "confidence": ev.confidence}
    for layer, curves in ev.triggered.items():
        n = curves["n_events_per_lag"]
        triggered[f"L{layer}"] = {
            "n_events_per_lag": n,
            "head_mean": {k.removeprefix("mean_"): _by_lag(v, n) for k, v in curves.items() if k.startswith("mean_")},
            "per_head": {k: _by_lag(curves[k], n) for k in ("weight", "ratio")},
        }
    return doc | {"enrichment": ev.enrichment, "triggered": triggered}
