"""Outcome metrics of interventions: hand-written episodes with known events, and a real BlockWorld run."""

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from vptlens.interventions import metrics as M
from vptlens.interventions.metrics import Target, TimeToEvent, compute_metrics
from vptlens.recordings import schema as S
from vptlens.recordings.schema import AgentRecord, EnvRecord, EpisodeMeta
from vptlens.recordings.store import Episode, Run
from vptlens.recordings.writer import TEXT, ArraySpec, EpisodeWriter

BUILT_INS = (
    "target_hit",
    "target_killed",
    "steps_to_first_hit",
    "hits",
    "crosshair_on_target_steps",
    "logs_broken",
    "mobs_attacked",
    "leaves_punched",
    "closest_approach",
    "attack_on_log",
    "longest_log_hold",
)
TARGET, OTHER = 7, 3


def leaves(distance: float, name: str = "oak_leaves") -> dict:
    return {"kind": "block", "block": name, "pos": [0, 0, 0], "face": "north", "distance": distance}


def on(entity_id: int) -> dict:
    return {"kind": "entity", "entity_id": entity_id, "entity_type": "villager", "profession": None, "distance": 2.0}


def mob(entity_id: int, distance: float, tag: str | None) -> dict:
    return {"entity_id": entity_id, "entity_type": "villager", "tag": tag, "distance": distance, "box": [0, 0, 1, 1]}


def attacked(entity_id: int) -> dict:
    return {"type": "entity_attacked", "entity_id": entity_id, "entity_type": "villager", "damage": 1.0}


NONE = {"kind": "none", "distance": None}
STEPS = [  # (events, crosshair, attack, visible entities) of each row
    ([], leaves(2.0), 1, []),  # leaves punched
    ([{"type": "block_broken", "block": "oak_leaves"}], leaves(6.0), 1, []),  # out of reach: not punched
    (
        [{"type": "block_broken", "block": "oak_log"}],
        on(TARGET),
        1,
        [mob(TARGET, 3.5, "target"), mob(OTHER, 1.0, None)],
    ),
    ([attacked(OTHER)], on(OTHER), 0, [mob(OTHER, 1.5, None)]),  # another mob's hit
    ([attacked(TARGET)], on(TARGET), 1, [mob(TARGET, 2.25, "target")]),  # the first hit: after 4 actions
    ([{"type": "block_broken", "block": "birch_log"}, attacked(TARGET)], leaves(1.0, "birch_leaves"), 0, []),
    ([attacked(TARGET), {"type": "entity_killed", "entity_id": TARGET}], leaves(4.5, "minecraft:oak_leaves"), 1, []),
    ([], NONE, 0, []),
    ([], NONE, 1, []),
    ([], NONE, 0, []),
]
EXPECTED = {
    "target_hit": True,
    "target_killed": True,
    "steps_to_first_hit": TimeToEvent(4, True),
    "hits": 3,
    "crosshair_on_target_steps": 2,
    "logs_broken": 2,
    "mobs_attacked": 4,  # the target's 3 hits and the other mob's one
    "leaves_punched": 2,
    "closest_approach": 2.25,
    "attack_on_log": None,  # the crosshair is never on a log
    "longest_log_hold": 0,
}


def write_episode(path: Path, steps, reset_info: dict) -> Episode:
    specs = {
        S.ground_truth_array(name): ArraySpec((), TEXT) for name in ("events", "crosshair", "visible_entities")
    } | {S.minerl_action_array("attack"): ArraySpec((), "uint8")}
    env = EnvRecord("handmade", {"height": 16, "width": 16})
    attrs = EpisodeMeta(0, 0, AgentRecord(), {}, env, reset_info, None, {}, (), "0.1.0", None, "sample").to_dict()
    with EpisodeWriter(path, specs, attrs) as writer:
        for events, crosshair, attack, visible in steps:
            writer.append(
                {
                    S.ground_truth_array("events"): json.dumps(events),
                    S.ground_truth_array("crosshair"): json.dumps(crosshair),
                    S.ground_truth_array("visible_entities"): json.dumps(visible),
                    S.minerl_action_array("attack"): np.uint8(attack),
                }
            )
        writer.close("complete")
    return Episode(path)


SCENE_INFO = {"scene": {"name": "handmade", "origin": [0.5, 10.0, 0.5], "summoned": {"target": TARGET, "edit_3": 3}}}


def test_built_in_metrics_are_registered_in_order():
    assert M.list_metrics()[: len(BUILT_INS)] == list(BUILT_INS)
    assert M.get_metric("steps_to_first_hit").kind == "time_to_event"
    assert M.get_metric("closest_approach").description


def test_every_built_in_on_a_hand_written_episode(tmp_path):
    episode = write_episode(tmp_path / "e.zarr", STEPS, SCENE_INFO)
    assert M.resolve_target(episode) == TARGET
    values = compute_metrics(episode, BUILT_INS)
    assert values == EXPECTED
    assert isinstance(values["hits"], int) and isinstance(values["target_hit"], bool)
    assert compute_metrics(episode).keys() >= set(BUILT_INS)  # default: every registered metric


def test_an_episode_without_its_target_is_censored_and_zero(tmp_path):
    no_target = [(ev, ch, at, [m for m in vis if m["entity_id"] != TARGET]) for ev, ch, at, vis in STEPS]
    episode = write_episode(tmp_path / "e.zarr", no_target, {})
    assert M.resolve_target(episode) is None
    assert compute_metrics(episode, BUILT_INS) == {
        "target_hit": False,
        "target_killed": False,
        "steps_to_first_hit": TimeToEvent(len(STEPS) - 1, False),  # censored at the last recorded step
        "hits": 0,
        "crosshair_on_target_steps": 0,
        "logs_broken": 2,  # not about the target
        "mobs_attacked": 4,
        "leaves_punched": 2,
        "closest_approach": None,  # never seen: undefined, not a made-up distance
        "attack_on_log": None,
        "longest_log_hold": 0,
    }
    # another tag: the target is the mob carrying it on screen (no scene info here)
    assert M.resolve_target(write_episode(tmp_path / "f.zarr", STEPS, {}), Target("target")) == TARGET
    assert compute_metrics(episode, ["hits"], Target("nothing")) == {"hits": 0}


def test_a_hit_never_recorded_is_censored_at_the_end(tmp_path):
    quiet = [([], NONE, 0, []) for _ in range(5)]
    episode = write_episode(tmp_path / "e.zarr", quiet, SCENE_INFO)
    values = compute_metrics(episode, ["steps_to_first_hit", "target_hit", "closest_approach"])
    assert values == {"steps_to_first_hit": TimeToEvent(4, False), "target_hit": False, "closest_approach": None}


def log(pos: list[int], distance: float = 2.0) -> dict:
    return {"kind": "block", "block": "oak_log", "pos": pos, "face": "north", "distance": distance}


def in_reach_log(c: dict) -> bool:
    return c["kind"] == "block" and c["block"] in ("oak_log", "birch_log") and c["distance"] <= 4.5


def test_the_chop_reflex_metrics_count_unbroken_holds_on_one_log(tmp_path):
    a, b = [1, 2, 3], [1, 3, 3]
    rows = [(log(a), 1), (log(a), 1), (log(a), 1), (log(a), 0),  # a gap resets the hold
            (log(a), 1), (log(a), 1), (log(b), 1), (log(b), 1), (log(b), 1), (log(b), 1),  # another block: anew
            (log(b, 6.0), 1), (log(b, 6.0), 1), (leaves(2.0), 1), (NONE, 0)]  # fmt: skip
    episode = write_episode(tmp_path / "e.zarr", [([], c, at, []) for c, at in rows], {})
    assert compute_metrics(episode, ["attack_on_log", "longest_log_hold"]) == {
        "attack_on_log": 9 / 10,  # 10 steps on a log within reach (the two at 6 blocks are out of it), 9 attacking
        "longest_log_hold": 4,
    }


def test_user_metrics_register_compute_and_are_checked(tmp_path):
    episode = write_episode(tmp_path / "e.zarr", STEPS, SCENE_INFO)

    @M.register_metric("attack_steps", kind="count")
    def attack_steps(gt: M.EpisodeGroundTruth) -> int:
        """Steps with attack pressed."""
        return int(gt.attack.sum())

    @M.register_metric("returns_nan", kind="continuous")
    def returns_nan(gt):
        return math.nan

    try:
        assert "attack_steps" in M.list_metrics()
        assert M.get_metric("attack_steps").description == "Steps with attack pressed."
        assert compute_metrics(episode, ["hits", "attack_steps"]) == {"hits": 3, "attack_steps": 6}
        with pytest.raises(ValueError, match="already registered"):
            M.register_metric("attack_steps", kind="count")(attack_steps)
        M.register_metric("attack_steps", kind="count", replace=True)(lambda gt: 1)
        assert compute_metrics(episode, ["attack_steps"]) == {"attack_steps": 1}
        with pytest.raises(TypeError, match="returns_nan.*finite"):
            compute_metrics(episode, ["returns_nan"])
    finally:
        M.unregister_metric("attack_steps")
        M.unregister_metric("returns_nan")
    assert "attack_steps" not in M.list_metrics()


def test_bad_names_and_kinds_say_how_to_fix_them(tmp_path):
    with pytest.raises(KeyError, match="did you mean 'target_hit'.*registered"):
        M.get_metric("target_hti")
    episode = write_episode(tmp_path / "e.zarr", STEPS[:2], SCENE_INFO)
    with pytest.raises(KeyError, match="did you mean 'logs_broken'"):
        compute_metrics(episode, ["hits", "log_broken"])
    with pytest.raises(ValueError, match="kind 'bool' unknown"):
        M.register_metric("x", kind="bool")
    with pytest.raises(ValueError, match="identifier"):
        M.register_metric("two words", kind="count")
    with pytest.raises(TypeError, match="return a bool"):
        M._check_value(M.Metric("m", "binary", lambda gt: 1, ""), 1)
    with pytest.raises(ValueError, match=">= 0"):
        TimeToEvent(-1, True)


def test_metrics_of_a_recorded_run_match_its_raw_ground_truth(tiny_run):
    episodes = Run.open(tiny_run).episodes()
    assert len(episodes) == 4
    seen = {"crosshair": 0, "leaves": 0, "approach": 0}
    for episode in episodes:
        events = episode.ground_truth("events")[:]
        crosshair = episode.ground_truth("crosshair")[:]
        visible = episode.ground_truth("visible_entities")[:]
        attack = np.asarray(episode.minerl_action("attack")[:])
        tagged = {m["entity_id"] for row in visible for m in row if m["tag"] == "target"}
        assert len(tagged) == 1  # the villager of the scene, on screen at reset
        (target,) = tagged
        assert episode.meta.env_reset_info["scene"]["summoned"]["target"] == target
        hit_steps = [t for t, row in enumerate(events) for e in row
                     if e["type"] == "entity_attacked" and e["entity_id"] == target]  # fmt: skip
        distances = [m["distance"] for row in visible for m in row if m["entity_id"] == target]
        expected = {
            "target_hit": bool(hit_steps),
            "target_killed": any(e["type"] == "entity_killed" and e["entity_id"] == target for r in events for e in r),
            "steps_to_first_hit": TimeToEvent(hit_steps[0], True) if hit_steps else TimeToEvent(127, False),
            "hits": len(hit_steps),
            "crosshair_on_target_steps": sum(c["kind"] == "entity" and c["entity_id"] == target for c in crosshair),
            "logs_broken": sum(
                e["type"] == "block_broken" and e["block"] in ("oak_log", "birch_log") for r in events for e in r
            ),  # fmt: skip
            "mobs_attacked": sum(e["type"] == "entity_attacked" for r in events for e in r),
            "leaves_punched": sum(
                bool(a)
                and c["kind"] == "block"
                and c["block"] in ("oak_leaves", "birch_leaves")
                and c["distance"] <= 4.5
                for a, c in zip(attack, crosshair)
            ),  # fmt: skip
            "closest_approach": min(distances),
            "attack_on_log": (
                float(np.mean([bool(a) for a, c in zip(attack, crosshair) if in_reach_log(c)]))
                if any(in_reach_log(c) for c in crosshair)
                else None
            ),  # fmt: skip
            "longest_log_hold": max(
                (
                    len(list(run))
                    for key, run in itertools.groupby(
                        tuple(c["pos"]) if a and in_reach_log(c) else None for a, c in zip(attack, crosshair)
                    )
                    if key is not None
                ),
                default=0,
            ),  # fmt: skip
        }
        assert compute_metrics(episode, BUILT_INS) == expected
        seen["crosshair"] += expected["crosshair_on_target_steps"]
        seen["leaves"] += expected["leaves_punched"]
        seen["approach"] += expected["closest_approach"] < 5
    assert all(seen.values()), seen  # the run exercises the counts, not only zeros
