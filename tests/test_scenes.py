"""Scenes: parsing, validation, round trips, Minecraft commands, native application."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vptlens.envs.scenes import (
    Scene,
    SceneError,
    apply_scene,
    list_builtin_scenes,
    load_builtin_scene,
    load_scene,
)


class RecordingTargetDouble:
    """Test double of a world behind the SceneTarget protocol: records every call."""

    def __init__(self, player=(10.5, 20.0, 30.5)):
        self.player = player
        self.calls = []

    def player_position(self):
        return self.player

    def set_block(self, x, y, z, block):
        self.calls.append(("set_block", x, y, z, block))

    def summon(self, entity_type, x, y, z, *, no_ai, profession, health, yaw, tag):
        self.calls.append(("summon", entity_type, x, y, z, no_ai, profession, health, yaw, tag))
        return 100 + len(self.calls)

    def teleport(self, x, y, z, pitch, yaw):
        self.calls.append(("teleport", x, y, z, pitch, yaw))

    def set_time(self, ticks):
        self.calls.append(("set_time", ticks))


def _scene(*edits, name="s"):
    return Scene.from_dict({"name": name, "edits": list(edits)})


def test_commands_are_minecraft_1_16_syntax():
    scene = _scene(
        {"op": "set_block", "pos": ["~2", "~", "~5"], "block": "oak_log"},
        {"op": "fill", "from": ["~-2", "~3", "~3"], "to": ["~2", "~4", "~7"], "block": "oak_leaves"},
        {
            "op": "summon",
            "entity": "villager",
            "pos": ["~", "~", "~5"],
            "no_ai": True,
            "profession": "farmer",
            "yaw": 180,
            "tag": "target",
        },  # fmt: skip
        {"op": "summon", "entity": "cow", "pos": [10, 20.5, 30], "health": 4},
        {"op": "teleport", "pos": [10, 40, 10], "pitch": 0, "yaw": 90},
        {"op": "teleport", "pos": ["~", "~1", "~"]},
        {"op": "set_time", "time": "noon"},
    )
    assert scene.to_commands() == [
        "/setblock ~2 ~ ~5 minecraft:oak_log",
        "/fill ~-2 ~3 ~3 ~2 ~4 ~7 minecraft:oak_leaves",
        "/summon minecraft:villager ~ ~ ~5 {NoAI:1b,Rotation:[180.0f,0.0f],"
        'VillagerData:{profession:"minecraft:farmer",level:1,type:"minecraft:plains"},Tags:["target"]}',
        "/summon minecraft:cow 10 20.5 30 {Rotation:[0.0f,0.0f],Health:4.0f}",
        "/tp @p 10 40 10 90 0",
        "/tp @p ~ ~1 ~",
        "/time set 6000",
    ]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            {"op": "set_block", "pos": [1, 2, 3], "block": "oak_logg"},
            r"edit 1 \(set_block\): unknown block 'oak_logg'; did you mean 'oak_log'",
        ),
        ({"op": "summon", "entity": "vilager", "pos": [1, 2, 3]}, "did you mean 'villager'"),
        ({"op": "summon", "entity": "cow", "pos": [1, 2, 3], "profession": "farmer"}, "villagers only"),
        ({"op": "summon", "entity": "villager", "pos": [1, 2, 3], "profession": "wizard"}, "unknown profession"),
        ({"op": "summon", "entity": "villager", "pos": [1, 2, 3], "health": -1}, "health must be > 0"),
        ({"op": "teleport", "pos": [1, 2, 3], "pitch": 120}, "pitch 120.0 is outside -90..90"),
        ({"op": "set_time", "time": 30000}, "outside 0..24000"),
        ({"op": "set_time", "time": "dusk"}, "unknown; use ticks"),
        ({"op": "explode", "pos": [1, 2, 3]}, "unknown op 'explode'"),
        ({"op": "set_block", "pos": [1, 2, 3]}, "missing block"),
        ({"op": "set_block", "pos": [1, 2, 3], "block": "dirt", "colour": "red"}, "unknown key colour"),
        ({"op": "set_block", "pos": ["~x", 2, 3], "block": "dirt"}, r"'~x' is not a number or ~offset; write e.g. 5"),
        ({"op": "set_block", "pos": [1, 2], "block": "dirt"}, "three coordinates"),
        ({"op": "set_block", "pos": [1, 99, 3], "block": "dirt"}, "outside BlockWorld"),
        ({"op": "fill", "from": [0, 0, 0], "to": [100, 40, 100], "block": "dirt"}, "more than 32768"),
    ],
)
def test_validation_names_the_edit_and_the_fix(edit, message):
    with pytest.raises(SceneError, match=message):
        _scene({"op": "set_time", "time": 0}, edit)


def test_apply_resolves_relative_coordinates_in_order():
    scene = _scene(
        {"op": "teleport", "pos": ["~", "~", "~"], "pitch": 0, "yaw": 0},
        {"op": "fill", "from": ["~-1", "~2", "~2"], "to": ["~", "~2", "~2"], "block": "oak_leaves"},
        {"op": "summon", "entity": "villager", "pos": ["~", "~", "~4"], "no_ai": True, "tag": "target"},
        {"op": "set_time", "time": 6000},
    )
    target = RecordingTargetDouble()
    result = apply_scene(scene, target)
    assert target.calls == [
        ("teleport", 10.5, 20.0, 30.5, 0.0, 0.0),
        ("set_block", 9, 22, 32, "oak_leaves"),
        ("set_block", 10, 22, 32, "oak_leaves"),
        ("summon", "villager", 10.5, 20.0, 34.5, True, None, None, 0.0, "target"),
        ("set_time", 6000),
    ]
    assert result["summoned"] == {"target": 104}


def test_a_scene_that_leaves_the_world_applies_nothing():
    scene = _scene(
        {"op": "set_block", "pos": ["~", "~", "~1"], "block": "dirt"},
        {"op": "set_block", "pos": ["~200", "~", "~"], "block": "dirt"},
    )
    target = RecordingTargetDouble()
    with pytest.raises(SceneError, match="edit 1 .* outside BlockWorld"):
        apply_scene(scene, target)
    assert target.calls == []


_component = st.one_of(
    st.integers(0, 60),
    st.sampled_from(["~", "~1", "~-2", "~0.5", "~-1.5"]),
)
_pos = st.lists(_component, min_size=3, max_size=3)
_edit = st.one_of(
    st.builds(
        lambda p, b: {"op": "set_block", "pos": p, "block": b}, _pos, st.sampled_from(["dirt", "oak_log", "air"])
    ),
    st.builds(
        lambda p, e, ai, yaw: {"op": "summon", "entity": e, "pos": p, "no_ai": ai, "yaw": yaw},
        _pos,
        st.sampled_from(["cow", "pig", "zombie"]),
        st.booleans(),
        st.floats(-180, 180, allow_nan=False),
    ),  # fmt: skip
    st.builds(lambda p, pitch: {"op": "teleport", "pos": p, "pitch": pitch}, _pos, st.integers(-90, 90)),
    st.builds(lambda t: {"op": "set_time", "time": t}, st.integers(0, 24000)),
)


@given(st.lists(_edit, max_size=6), st.sampled_from([".yaml", ".json"]))
def test_file_round_trip(tmp_path_factory, edits, suffix):
    scene = _scene(*edits, name="rt")
    path = tmp_path_factory.mktemp("scenes") / f"scene{suffix}"
    scene.save(path)
    again = load_scene(path)
    assert again == scene
    assert again.to_commands() == scene.to_commands()


def test_builtin_library_loads_validates_and_compiles():
    names = list_builtin_scenes()
    assert {
        "villager_under_leaves",
        "villager_in_open",
        "villager_other_clothes_under_leaves",
        "tree_at_spot",
        "canopy_only",
    } <= set(names)
    for name in names:
        scene = load_builtin_scene(name)
        assert scene.description and all(c.startswith("/") for c in scene.to_commands())
    probe = load_builtin_scene("villager_under_leaves")
    summons = [c for c in probe.to_commands() if c.startswith("/summon")]
    assert summons == [
        "/summon minecraft:villager ~ ~ ~4 {NoAI:1b,Rotation:[180.0f,0.0f],"
        'VillagerData:{profession:"minecraft:farmer",level:1,type:"minecraft:plains"},Tags:["target"]}'
    ]
    with pytest.raises(KeyError, match="villager_under_leaves"):
        load_builtin_scene("villager_under_leave")
