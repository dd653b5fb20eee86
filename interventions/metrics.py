"""Behavioural outcomes of a recorded episode, from its ground truth: pluggable named metrics.

A metric is a function of one episode's ground truth (`EpisodeGroundTruth`) that returns a value of its
declared kind; `compute_metrics` runs named metrics over an episode. Register your own from Python:

>>> @register_metric("looked_up", kind="binary")
... def looked_up(gt: EpisodeGroundTruth) -> bool:
...     "Any step with the pitch above the horizon."
...     return bool((gt.episode.ground_truth("pose")[:, 3] < 0).any())
>>> compute_metrics(episode, ["target_hit", "looked_up"])

Kinds and their values: "binary" (bool), "count" (int >= 0), "continuous" (a finite float, or None where the
episode does not define it: never NaN, so results stay strict JSON) and "time_to_event" (`TimeToEvent`).

Step alignment (recordings/PROTOCOL.md): row t holds the frame seen before action t, what the crosshair was on
then, and the events of the env step that produced that frame (row 0: the reset, no events). An event in row t
therefore happened after t actions, and the events of the last action are not recorded.

The target is the mob a scene summons with a tag (`tag: target` in the built-in scenes); see `Target`.
"""

import dataclasses
import difflib
import math
from collections.abc import Callable, Sequence
from functools import cached_property

import numpy as np

from vptlens.envs.blockworld.world import BLOCK_REACH
from vptlens.recordings.store import Episode

KINDS = ("binary", "count", "continuous", "time_to_event")
"""The kinds of value a metric returns; statistics are chosen by kind."""


@dataclasses.dataclass(frozen=True)
class TimeToEvent:
    """Steps until an event, right-censored when it was not seen before the episode ended."""

    steps: int
    """Actions taken when the event happened (observed), or when observation stopped (censored)."""
    observed: bool
    """True: the event happened at `steps`; False: censored (it had not happened by `steps`)."""

    def __post_init__(self):
        if self.steps < 0:
            raise ValueError(f"TimeToEvent.steps must be >= 0, got {self.steps}")


@dataclasses.dataclass(frozen=True)
class Target:
    """The studied mob: the one the scene summoned with this tag.

    Resolved per episode to an entity id: first from the scene's reset info (`env_reset_info["scene"]
    ["summoned"][tag]`, written by `apply_scene`), else from the first on-screen mob carrying the tag in
    `visible_entities`. An episode without such a mob has no target: its binary metrics are False, its counts
    about the target 0, `steps_to_first_hit` is censored at the episode's end and `closest_approach` is None.
    """

    tag: str = "target"
    """The `tag` of the scene's summon edit."""


def resolve_target(episode: Episode, target: Target = Target()) -> int | None:
    """The entity id of `target` in `episode`, or None when the episode has no mob with that tag."""
    summoned = ((episode.meta.env_reset_info or {}).get("scene") or {}).get("summoned") or {}
    if target.tag in summoned:
        return int(summoned[target.tag])
    if episode.has_ground_truth("visible_entities"):
        for row in episode.ground_truth("visible_entities")[:]:
            for mob in row or []:
                if mob.get("tag") == target.tag:
                    return int(mob["entity_id"])
    return None


class EpisodeGroundTruth:
    """What a metric reads: the episode, its resolved target, and the JSON ground truth parsed once (cached)."""

    def __init__(self, episode: Episode, target: Target = Target()):
        self.episode = episode
        self.target = target

    @cached_property
    def target_id(self) -> int | None:
        """The target's entity id, or None when the episode has none (see `Target`)."""
        return resolve_target(self.episode, self.target)

    @property
    def n_steps(self) -> int:
        return len(self.episode)

    @property
    def last_step(self) -> int:
        """The last row whose events are recorded: where a time to event is censored."""
        return max(len(self.episode) - 1, 0)

    @cached_property
    def events(self) -> list[list[dict]]:
        """Per step, the events of the env step that produced the frame (`block_broken`, `entity_attacked`...)."""
        return [row or [] for row in self.episode.ground_truth("events")[:]]

    @cached_property
    def crosshair(self) -> list[dict]:
        """Per step, what the crosshair was on: {"kind": "block"|"entity"|"none", "block"|"entity_id", ...}."""
        return [row or {"kind": "none"} for row in self.episode.ground_truth("crosshair")[:]]

    @cached_property
    def visible_entities(self) -> list[list[dict]]:
        """Per step, the mobs on screen: entity_id, tag, distance (eye to body centre), box..."""
        return [row or [] for row in self.episode.ground_truth("visible_entities")[:]]

    @cached_property
    def attack(self) -> np.ndarray:
        """(N,) bool: the attack key sent to the env."""
        return np.asarray(self.episode.minerl_action("attack")[:]).astype(bool)

    def target_events(self, event_type: str) -> list[int]:
        """The steps (one entry per event) of the events of `event_type` on the target."""
        if self.target_id is None:
            return []
        return [
            t
            for t, row in enumerate(self.events)
            for e in row
            if e.get("type") == event_type and e.get("entity_id") == self.target_id
        ]


MetricFn = Callable[[EpisodeGroundTruth], object]


@dataclasses.dataclass(frozen=True)
class Metric:
    """A registered metric: its name, the kind of value it returns and the function computing it."""

    name: str
    kind: str
    fn: MetricFn
    description: str


_REGISTRY: dict[str, Metric] = {}


def register_metric(name: str, kind: str, *, replace: bool = False) -> Callable[[MetricFn], MetricFn]:
    """Decorator: register `fn(gt: EpisodeGroundTruth) -> value` as the metric `name` of `kind` (see `KINDS`).

    Its docstring's first line is its description. Registering a taken name raises unless `replace=True`.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"metric name {name!r} must be an identifier (it names a results column), e.g. 'target_hit'")
    if kind not in KINDS:
        raise ValueError(f"metric {name!r}: kind {kind!r} unknown; use one of {list(KINDS)}")
    if name in _REGISTRY and not replace:
        raise ValueError(f"metric {name!r} is already registered; pick another name or pass replace=True")

    def decorate(fn: MetricFn) -> MetricFn:
        doc = (fn.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = Metric(name, kind, fn, doc[0] if doc else "")
        return fn

    return decorate


def unregister_metric(name: str) -> None:
    """Remove a registered metric (KeyError when there is none of that name)."""
    get_metric(name)
    del _REGISTRY[name]


def get_metric(name: str) -> Metric:
    """The registered metric `name`; a KeyError names the registered ones and the closest match."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    close = difflib.get_close_matches(str(name), list(_REGISTRY), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise KeyError(
        f"unknown metric {name!r}; {hint}registered: {list_metrics()}. "
        "Add your own with @register_metric(name, kind=...) from vptlens.interventions.metrics"
    )


def list_metrics() -> list[str]:
    """The registered metrics' names, in registration order (the built-ins first)."""
    return list(_REGISTRY)


def compute_metrics(
    episode: Episode, names: Sequence[str] | None = None, target: Target = Target()
) -> dict[str, object]:
    """The metrics `names` (default: every registered one) of one episode, by name.

    Unknown names raise before anything is read. Each value is checked against its metric's kind (a TypeError
    names the metric whose function returned something else).
    """
    metrics = [get_metric(n) for n in (list_metrics() if names is None else names)]
    gt = EpisodeGroundTruth(episode, target)
    return {m.name: _check_value(m, m.fn(gt)) for m in metrics}


def _check_value(metric: Metric, value: object) -> object:
    bad = f"metric {metric.name!r} ({metric.kind}) returned {value!r} ({type(value).__name__}); "
    if metric.kind == "binary":
        if not isinstance(value, bool | np.bool_):
            raise TypeError(bad + "return a bool")
        return bool(value)
    if metric.kind == "count":
        if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer) or value < 0:
            raise TypeError(bad + "return an int >= 0")
        return int(value)
    if metric.kind == "continuous":
        if value is None:
            return None
        if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
            raise TypeError(bad + "return a float, or None where the episode does not define it")
        if not math.isfinite(float(value)):
            raise TypeError(bad + "return a finite float; use None where the episode does not define it")
        return float(value)
    if not isinstance(value, TimeToEvent):
        raise TypeError(bad + "return a TimeToEvent(steps, observed)")
    return value


# ------------------------------------------------------------------------------------------------ built-ins


def _block_name(name: object) -> str:
    return str(name).removeprefix("minecraft:")


def _in_reach(c: dict, suffix: str) -> bool:
    """The crosshair is on a block whose name ends with `suffix` (e.g. "_log"), within reach."""
    return (
        c.get("kind") == "block"
        and _block_name(c.get("block")).endswith(suffix)
        and c.get("distance") is not None
        and c["distance"] <= BLOCK_REACH
    )


@register_metric("target_hit", kind="binary")
def target_hit(gt: EpisodeGroundTruth) -> bool:
    """The agent hit the target at least once (an `entity_attacked` event on it)."""
    return bool(gt.target_events("entity_attacked"))


@register_metric("target_killed", kind="binary")
def target_killed(gt: EpisodeGroundTruth) -> bool:
    """The target died (an `entity_killed` event on it)."""
    return bool(gt.target_events("entity_killed"))


@register_metric("steps_to_first_hit", kind="time_to_event")
def steps_to_first_hit(gt: EpisodeGroundTruth) -> TimeToEvent:
    """Actions taken until the first hit on the target; censored at the last recorded step (len - 1)."""
    hits = gt.target_events("entity_attacked")
    return TimeToEvent(hits[0], True) if hits else TimeToEvent(gt.last_step, False)


@register_metric("hits", kind="count")
def hits(gt: EpisodeGroundTruth) -> int:
    """Hits on the target (`entity_attacked` events; a mob is invulnerable for 10 ticks after a hit)."""
    return len(gt.target_events("entity_attacked"))


@register_metric("crosshair_on_target_steps", kind="count")
def crosshair_on_target_steps(gt: EpisodeGroundTruth) -> int:
    """Steps whose crosshair was on the target, at any distance."""
    if gt.target_id is None:
        return 0
    return sum(c.get("kind") == "entity" and c.get("entity_id") == gt.target_id for c in gt.crosshair)


@register_metric("logs_broken", kind="count")
def logs_broken(gt: EpisodeGroundTruth) -> int:
    """Log blocks broken (`block_broken` events of a `*_log` block, e.g. oak_log)."""
    return sum(
        e.get("type") == "block_broken" and _block_name(e.get("block")).endswith("_log")
        for row in gt.events
        for e in row
    )


@register_metric("mobs_attacked", kind="count")
def mobs_attacked(gt: EpisodeGroundTruth) -> int:
    """Hits on any mob (`entity_attacked` events, whatever the target): a chopper should make none."""
    return sum(e.get("type") == "entity_attacked" for row in gt.events for e in row)


@register_metric("leaves_punched", kind="count")
def leaves_punched(gt: EpisodeGroundTruth) -> int:
    """Steps with attack pressed while the crosshair was on a `*_leaves` block within reach (4.5 blocks)."""
    return sum(bool(attack) and _in_reach(c, "_leaves") for attack, c in zip(gt.attack, gt.crosshair, strict=True))


@register_metric("closest_approach", kind="continuous")
def closest_approach(gt: EpisodeGroundTruth) -> float | None:
    """Smallest distance (blocks, eye to body centre) to the target over the steps it was on screen.

    None when the target was never on screen (or the episode has none): the ground truth gives its distance only
    while it is visible, and a made-up number would bias means; statistics drop None values and count them.
    """
    if gt.target_id is None:
        return None
    seen = [m["distance"] for row in gt.visible_entities for m in row if m.get("entity_id") == gt.target_id]
    return float(min(seen)) if seen else None


@register_metric("attack_on_log", kind="continuous")
def attack_on_log(gt: EpisodeGroundTruth) -> float | None:
    """Of the steps whose crosshair was on a log within reach, the share with attack pressed (None if there were
    none): how sure a chopper's "attack the log in front" reflex is. A log breaks only under an unbroken hold (60
    ticks by hand; a released key resets it), so a reflex at 0.95 rarely breaks one (0.95 ** 60 < 0.05): see
    `longest_log_hold`."""
    pressed = [bool(a) for a, c in zip(gt.attack, gt.crosshair, strict=True) if _in_reach(c, "_log")]
    return float(np.mean(pressed)) if pressed else None


@register_metric("longest_log_hold", kind="count")
def longest_log_hold(gt: EpisodeGroundTruth) -> int:
    """The longest run of consecutive steps attacking one log block within reach (the same block position). A hand
    breaks a log in 60 held ticks; here a break shows as a run of 59 or 60, since a row's crosshair is the one seen
    before that step's camera move."""
    best = run = 0
    held = None
    for attack, c in zip(gt.attack, gt.crosshair, strict=True):
        pos = tuple(c["pos"]) if attack and _in_reach(c, "_log") and c.get("pos") is not None else None
        run = run + 1 if pos is not None and pos == held else (1 if pos is not None else 0)
        held = pos
        best = max(best, run)
    return best
