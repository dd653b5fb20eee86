"""Ground-truth labels for probes, computed per step from an episode's recorded arrays.

Each `Label` declares what it reads (ground truth by name, MineRL action keys, policy outputs:
the `Episode` accessors `ground_truth(name)`, `minerl_action(key)`, `value`) and returns
`(values (N,), valid (N,))`: a float per step and a mask of the steps where the label is
defined (e.g. the distance to the crosshair's block is undefined when the crosshair is on
nothing). Values at invalid steps are NaN. Binary labels are 0/1 and get a logistic probe,
regression labels a linear one.

Timing (PROTOCOL.md): step t holds the frame seen at t and what the crosshair, pose and
visible mobs were then; the ground truth "events" are the events of the tick that produced
frame t (so the agent has seen their result); the actions are those chosen after seeing frame t.
"""

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
from jaxtyping import Bool, Float64

from vptlens.recordings import schema
from vptlens.recordings.store import Episode

LabelValues = tuple[Float64[np.ndarray, " n"], Bool[np.ndarray, " n"]]

ATTACK_CAP_STEPS = 128
"""`steps_since_attack` saturates here (the released agents' attention memory is 128 frames)."""

OUTPUTS = ("value",)
"""Policy outputs a label may read (beside ground truth and MineRL actions)."""


def _has(read: Callable[[], object]) -> bool:
    try:
        read()
    except KeyError:
        return False
    return True


class LabelSource:
    """An episode's arrays as labels read them: numpy arrays and parsed JSON rows, each read once.

    Built from an `Episode` (arrays read lazily through its accessors, only those a label asks for) or,
    for tests and other stores, from given arrays with `LabelSource.from_arrays`.
    """

    def __init__(self, episode: Episode):
        self._episode = episode
        self._given: dict[tuple[str, str], object] = {}
        self._frame_size: tuple[int, int] | None = None
        self.length = len(episode)
        self.where = str(episode.path)
        self._cache: dict[tuple[str, str], object] = {}

    @classmethod
    def from_arrays(
        cls,
        ground_truth: Mapping[str, object] | None = None,
        minerl: Mapping[str, object] | None = None,
        outputs: Mapping[str, object] | None = None,
        frame_size: tuple[int, int] | None = None,
    ) -> "LabelSource":
        """Given arrays: ground truth by name (JSON kinds as one JSON text per step), MineRL actions by key ("camera"
        included), policy outputs by name; `frame_size` (height, width) of the env frame for screen areas."""
        src = cls.__new__(cls)
        src._episode, src._frame_size, src._cache = None, frame_size, {}
        src._given = {("gt", k): v for k, v in (ground_truth or {}).items()}
        src._given |= {("minerl", k): v for k, v in (minerl or {}).items()}
        src._given |= {("output", k): v for k, v in (outputs or {}).items()}
        lengths = {key: len(value) for key, value in src._given.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"arrays of one episode must have the same number of steps, got {lengths}")
        src.length = next(iter(lengths.values()), 0)
        src.where = "given arrays"
        return src

    def _read(self, kind: str, key: str) -> object:
        if (kind, key) not in self._cache:
            if self._episode is None:
                if (kind, key) not in self._given:
                    raise KeyError(f"{self.where}: no {_what(kind, key)} (needed for this label)")
                value = self._given[(kind, key)]
                if kind == "gt" and schema.GROUND_TRUTH[key] == "json":
                    value = [json.loads(str(s)) for s in value]
                self._cache[(kind, key)] = value if isinstance(value, list) else np.asarray(value)
            else:
                read = {"gt": self._episode.ground_truth, "minerl": self._episode.minerl_action,
                        "output": lambda k: getattr(self._episode, k)}[kind]  # fmt: skip
                try:
                    arr = read(key)[:]
                except KeyError:
                    raise KeyError(f"{self.where} has no {_what(kind, key)} (needed for this label); it was not "
                                   "recorded") from None  # fmt: skip
                self._cache[(kind, key)] = arr if isinstance(arr, list) else np.asarray(arr)
        return self._cache[(kind, key)]

    def ground_truth(self, name: str):
        """Numeric ground truth as an array; JSON ground truth as a list of parsed rows."""
        return self._read("gt", name)

    def minerl_action(self, key: str) -> np.ndarray:
        return self._read("minerl", key)

    def output(self, name: str) -> np.ndarray:
        return self._read("output", name)

    def frame_area(self) -> float:
        """Pixels in the env frame (the unit of the visible entities' boxes and pixel counts)."""
        if self._frame_size is not None:
            return float(self._frame_size[0]) * float(self._frame_size[1])
        settings = self._episode.meta.env.settings if self._episode is not None else {}
        if "height" not in settings or "width" not in settings:
            raise ValueError(
                f"{self.where}: the episode attributes lack env.settings.height/width, needed for screen areas; "
                "record with a current vpt-lens or pass LabelSource.from_arrays(..., frame_size=(H, W))"
            )
        return float(settings["height"]) * float(settings["width"])


def _what(kind: str, key: str) -> str:
    """A need in words, with the store array it lives in (for messages)."""
    array = {"gt": schema.ground_truth_array, "minerl": schema.minerl_action_array, "output": lambda k: k}[kind](key)
    return {"gt": "ground truth", "minerl": "MineRL action", "output": "policy output"}[kind] + f" {key!r} ({array})"


@dataclass(frozen=True)
class Reads:
    """What a label reads from an episode, by accessor: ground truth names, MineRL action keys, policy outputs."""

    ground_truth: tuple[str, ...] = ()
    """`Episode.ground_truth` names."""
    minerl_keys: tuple[str, ...] = ()
    """`Episode.minerl_action` keys ("camera" included)."""
    outputs: tuple[str, ...] = ()
    """Policy outputs (names in `OUTPUTS`)."""

    def __post_init__(self):
        for name in self.ground_truth:
            schema.ground_truth_array(name)  # KeyError for an unknown name
        if not set(self.outputs) <= set(OUTPUTS):
            raise KeyError(f"outputs {self.outputs} not among {OUTPUTS}")

    @property
    def arrays(self) -> list[str]:
        """The store arrays read (as PROTOCOL.md names them)."""
        return ([schema.ground_truth_array(n) for n in self.ground_truth]
                + [schema.minerl_action_array(k) for k in self.minerl_keys] + list(self.outputs))  # fmt: skip

    def missing(self, episode: Episode) -> list[str]:
        """The store arrays read that `episode` did not record."""
        gt = [schema.ground_truth_array(n) for n in self.ground_truth if not episode.has_ground_truth(n)]
        keys = [
            schema.minerl_action_array(k) for k in self.minerl_keys if not _has(lambda k=k: episode.minerl_action(k))
        ]
        return gt + keys + [o for o in self.outputs if not _has(lambda o=o: getattr(episode, o))]


@dataclass(frozen=True)
class Label:
    """A per-step ground-truth quantity: name, kind, what it means, what it reads, and how to compute it."""

    name: str
    kind: Literal["binary", "regression"]
    description: str
    units: str
    reads: Reads
    fn: Callable[[LabelSource], tuple[np.ndarray, np.ndarray]]

    def __call__(self, episode: "Episode | LabelSource") -> LabelValues:
        return compute_label(self, episode)

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "description": self.description, "units": self.units,
                "arrays": self.reads.arrays}  # fmt: skip


def compute_label(label: "Label | str", episode: "Episode | LabelSource") -> LabelValues:
    """`(values, valid)` of one label over an episode; values are NaN where the label is undefined."""
    label = get_label(label) if isinstance(label, str) else label
    src = episode if isinstance(episode, LabelSource) else LabelSource(episode)
    values, valid = label.fn(src)
    values, valid = np.asarray(values, np.float64), np.asarray(valid, bool)
    assert values.shape == valid.shape == (src.length,), (label.name, values.shape, valid.shape, src.length)
    valid = valid & np.isfinite(values)
    values = np.where(valid, values, np.nan)
    if label.kind == "binary":
        assert np.all(np.isin(values[valid], (0.0, 1.0))), label.name
    return values, valid


# ---------------------------------------------------------------- label functions


def _crosshair(src: LabelSource, test: Callable[[dict], float]) -> tuple[np.ndarray, np.ndarray]:
    rows = src.ground_truth("crosshair")
    valid = np.array([isinstance(r, dict) and "kind" in r for r in rows], bool)
    values = np.array([float(test(r)) if ok else np.nan for r, ok in zip(rows, valid)], np.float64)
    return values, valid


def _on_block(suffix: str) -> Callable[[LabelSource], tuple[np.ndarray, np.ndarray]]:
    def fn(src):
        return _crosshair(src, lambda r: r["kind"] == "block" and str(r.get("block", "")).endswith(suffix))

    return fn


def _on_entity(entity_type: str | None) -> Callable[[LabelSource], tuple[np.ndarray, np.ndarray]]:
    def fn(src):
        return _crosshair(
            src, lambda r: r["kind"] == "entity" and (entity_type is None or r.get("entity_type") == entity_type)
        )

    return fn


def _crosshair_distance(block_suffix: str | None) -> Callable[[LabelSource], tuple[np.ndarray, np.ndarray]]:
    def fn(src):
        rows = src.ground_truth("crosshair")
        values = np.full(len(rows), np.nan)
        for i, r in enumerate(rows):
            if not isinstance(r, dict) or r.get("kind") not in ("block", "entity") or r.get("distance") is None:
                continue
            on_block = r["kind"] == "block" and str(r.get("block", "")).endswith(block_suffix or "")
            if block_suffix is not None and not on_block:
                continue
            values[i] = float(r["distance"])
        return values, np.isfinite(values)

    return fn


def _visible(src: LabelSource) -> list[list[dict]]:
    rows = src.ground_truth("visible_entities")
    return [r if isinstance(r, list) else [] for r in rows]


def _visible_any(entity_type: str | None) -> Callable[[LabelSource], tuple[np.ndarray, np.ndarray]]:
    def fn(src):
        rows = _visible(src)
        values = [any(entity_type is None or e.get("entity_type") == entity_type for e in r) for r in rows]
        return np.array(values, np.float64), np.ones(len(rows), bool)

    return fn


def _n_visible(src: LabelSource) -> tuple[np.ndarray, np.ndarray]:
    rows = _visible(src)
    return np.array([len(r) for r in rows], np.float64), np.ones(len(rows), bool)


def _villager_area(src: LabelSource) -> tuple[np.ndarray, np.ndarray]:
    rows = _visible(src)
    area = src.frame_area()
    pixels = [sum(int(e.get("pixels", 0)) for e in r if e.get("entity_type") == "villager") for r in rows]
    return np.array(pixels, np.float64) / area, np.ones(len(rows), bool)


def _nearest_villager(src: LabelSource) -> tuple[np.ndarray, np.ndarray]:
    rows = _visible(src)
    values = np.full(len(rows), np.nan)
    for i, r in enumerate(rows):
        d = [float(e["distance"]) for e in r if e.get("entity_type") == "villager" and e.get("distance") is not None]
        if d:
            values[i] = min(d)
    return values, np.isfinite(values)


def _event(event_type: str) -> Callable[[LabelSource], tuple[np.ndarray, np.ndarray]]:
    def fn(src):
        rows = src.ground_truth("events")
        values = [any(isinstance(e, dict) and e.get("type") == event_type for e in (r or [])) for r in rows]
        return np.array(values, np.float64), np.ones(len(rows), bool)

    return fn


def _action(key: str) -> Callable[[LabelSource], tuple[np.ndarray, np.ndarray]]:
    def fn(src):
        a = src.minerl_action(key).astype(np.float64)
        return (a > 0).astype(np.float64), np.ones(len(a), bool)

    return fn


def steps_since(flags: np.ndarray) -> np.ndarray:
    """For each step t, t - (the last s < t with flags[s]); NaN where there is none. Strictly past steps only."""
    flags = np.asarray(flags, bool)
    idx = np.arange(len(flags))
    last = np.where(flags, idx, -1)
    last = np.maximum.accumulate(last) if len(last) else last
    prev = np.concatenate([[-1], last[:-1]]) if len(last) else last  # last flagged step strictly before t
    return np.where(prev >= 0, idx - prev, np.nan).astype(np.float64)


def _since_attack(log: bool) -> Callable[[LabelSource], tuple[np.ndarray, np.ndarray]]:
    def fn(src):
        k = np.minimum(steps_since(src.minerl_action("attack") > 0), ATTACK_CAP_STEPS)
        return (np.log2(k) if log else k), np.isfinite(k)

    return fn


def _pose(column: int, transform: Callable[[np.ndarray], np.ndarray] = lambda x: x):
    def fn(src):
        pose = src.ground_truth("pose").astype(np.float64)
        values = transform(pose[:, column])
        return values, np.isfinite(values)

    return fn


def _nearest_log_distance(src: LabelSource) -> tuple[np.ndarray, np.ndarray]:
    d = src.ground_truth("nearest_log").astype(np.float64)[:, 3]
    return d, np.isfinite(d)


def _camera(column: int):
    def fn(src):
        cam = src.minerl_action("camera").astype(np.float64)
        return cam[:, column], np.isfinite(cam[:, column])

    return fn


def _scalar(name: str):
    def fn(src):
        a = src.output(name).astype(np.float64).reshape(-1)
        return a, np.isfinite(a)

    return fn


_CH, _VE, _EV = Reads(("crosshair",)), Reads(("visible_entities",)), Reads(("events",))
_POSE, _ATTACK = Reads(("pose",)), Reads(minerl_keys=("attack",))
_LABELS = [
    Label("crosshair_on_log", "binary", "the crosshair is on a log block (any *_log), at any distance", "0/1",
          _CH, _on_block("_log")),
    Label("crosshair_on_leaves", "binary", "the crosshair is on a leaves block (any *_leaves)", "0/1",
          _CH, _on_block("_leaves")),
    Label("crosshair_on_villager", "binary", "the crosshair is on a villager", "0/1", _CH, _on_entity("villager")),
    Label("crosshair_on_entity", "binary", "the crosshair is on any mob", "0/1", _CH, _on_entity(None)),
    Label("crosshair_on_nothing", "binary", "the crosshair hits nothing within 64 blocks (sky, far terrain)", "0/1",
          _CH, lambda src: _crosshair(src, lambda r: r["kind"] == "none")),
    Label("crosshair_distance", "regression", "distance from the eye to what the crosshair is on; masked when on "
          "nothing", "blocks", _CH, _crosshair_distance(None)),
    Label("crosshair_log_distance", "regression", "distance to the log block under the crosshair; masked when the "
          "crosshair is not on a log", "blocks", _CH, _crosshair_distance("_log")),
    Label("nearest_tree_distance", "regression", "distance from the eyes to the closest point of the nearest log "
          "block (a tree trunk), seen or not; masked where the world has none or the env does not report it "
          "(MineRL)", "blocks", Reads(("nearest_log",)), _nearest_log_distance),
    Label("villager_visible", "binary", "at least one villager has a pixel on screen", "0/1", _VE,
          _visible_any("villager")),
    Label("mob_visible", "binary", "at least one mob has a pixel on screen", "0/1", _VE, _visible_any(None)),
    Label("n_visible_mobs", "regression", "number of mobs with a pixel on screen", "count", _VE, _n_visible),
    Label("villager_screen_area", "regression", "screen pixels covered by villagers / env frame area (0 when none "
          "is visible)", "fraction of the frame", _VE, _villager_area),
    Label("nearest_villager_distance", "regression", "distance from the eye to the nearest visible villager's centre; "
          "masked when none is visible", "blocks", _VE, _nearest_villager),
    Label("steps_since_attack", "regression", "steps since the agent last pressed attack (strictly earlier steps), "
          f"capped at {ATTACK_CAP_STEPS}; masked before the first attack", "steps", _ATTACK,
          _since_attack(log=False)),
    Label("log_steps_since_attack", "regression", "log2 of steps_since_attack; masked before the first attack",
          "log2 steps", _ATTACK, _since_attack(log=True)),
    Label("attacking", "binary", "the agent presses attack at this step (the action it chose after this frame)",
          "0/1", _ATTACK, _action("attack")),
    Label("moving_forward", "binary", "the agent presses forward at this step", "0/1", Reads(minerl_keys=("forward",)),
          _action("forward")),
    Label("jumping", "binary", "the agent presses jump at this step", "0/1", Reads(minerl_keys=("jump",)),
          _action("jump")),
    Label("camera_pitch_action", "regression", "camera pitch change chosen at this step (positive looks down)",
          "degrees", Reads(minerl_keys=("camera",)), _camera(0)),
    Label("camera_yaw_action", "regression", "camera yaw change chosen at this step", "degrees",
          Reads(minerl_keys=("camera",)), _camera(1)),
    Label("pitch", "regression", "the player's pitch when the frame was seen (positive looks down)", "degrees",
          _POSE, _pose(3)),
    Label("yaw_sin", "regression", "sin of the player's yaw (yaw wraps at +-180, so it is probed as sin and cos)",
          "unitless", _POSE, _pose(4, lambda y: np.sin(np.radians(y)))),
    Label("yaw_cos", "regression", "cos of the player's yaw", "unitless", _POSE,
          _pose(4, lambda y: np.cos(np.radians(y)))),
    Label("height", "regression", "the player's feet height y", "blocks", _POSE, _pose(1)),
    Label("entity_attacked", "binary", "the tick that produced this frame hurt a mob (an entity_attacked event)",
          "0/1", _EV, _event("entity_attacked")),
    Label("block_broken", "binary", "the tick that produced this frame broke a block", "0/1", _EV,
          _event("block_broken")),
    Label("player_hurt", "binary", "the tick that produced this frame hurt the player", "0/1", _EV,
          _event("player_hurt")),
    Label("value", "regression", "the agent's value head output at this step (a sanity check: linear in the last "
          "layers)", "value", Reads(outputs=("value",)), _scalar("value")),
]  # fmt: skip
LABELS: dict[str, Label] = {label.name: label for label in _LABELS}
"""Every known label by name."""


def get_label(name: str) -> Label:
    if name not in LABELS:
        raise KeyError(f"unknown label {name!r}; known labels: {', '.join(sorted(LABELS))}")
    return LABELS[name]


def describe_labels() -> str:
    """One line per label: name, kind, description (for `--help` and error messages)."""
    width = max(map(len, LABELS))
    return "\n".join(f"{n:<{width}}  {lab.kind:<10}  {lab.description}" for n, lab in sorted(LABELS.items()))
