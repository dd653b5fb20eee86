"""Scenes: coordinates, file round trips, validation messages, Minecraft commands, native application, library."""

import dataclasses
import json

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from vptlens.envs.scenes import (
    LIBRARY_DIR,
    Component,
    Coord,
    Fill,
    Scene,
    SceneError,
    SceneTarget,
    SetBlock,
    SetTime,
    Summon,
    Teleport,
    apply_scene,
    as_scene,
    list_builtin_scenes,
    load_builtin_scene,
    load_scene,
)
from vptlens.envs.vocab import BLOCKS, ENTITY_TYPES, PROFESSIONS


class RecordingTargetDouble:
    """Test double of a world behind the SceneTarget protocol: records every call, changes nothing."""

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
        self.player = (x, y, z)

    def set_time(self, ticks):
        self.calls.append(("set_time", ticks))


def _scene(*edits, name="s"):
    return Scene.from_dict({"name": name, "description": "", "edits": list(edits)})


# ----------------------------------------------------------------------------- coordinates


@pytest.mark.parametrize(
    ("raw", "component", "text"),
    [
        ("~", Component(0.0, relative=True), "~"),
        ("~2", Component(2.0, relative=True), "~2"),
        ("~-1.5", Component(-1.5, relative=True), "~-1.5"),
        ("~0.25", Component(0.25, relative=True), "~0.25"),
        (5, Component(5.0), 5),
        (30.5, Component(30.5), 30.5),
        ("7", Component(7.0), 7),  # a number written as a string reads as the number
    ],
)
def test_coordinate_components_parse_and_format(raw, component, text):
    assert Component.parse(raw) == component
    assert component.to_data() == text


@given(st.integers(-8000, 8000), st.integers(0, 3), st.booleans())
def test_coordinate_text_round_trips(n, decimals, relative):
    value = n / 10**decimals
    component = Component(float(value), relative)
    assert Component.parse(component.to_data()) == component
    assert Component.parse(component.to_data()).to_data() == component.to_data()


def test_a_coordinate_that_is_not_one_says_how_to_write_it():
    message = r"^edit 3 \(summon\): pos z '~x' is not a number or ~offset; write e\.g\. 5, '~' or '~-2'$"
    with pytest.raises(SceneError, match=message):
        _scene(*[{"op": "set_time", "time": 0}] * 3, {"op": "summon", "entity": "cow", "pos": [1, 2, "~x"]})
    with pytest.raises(SceneError, match=r"edit 0 \(set_block\): pos x '1e3' is not a number"):
        _scene({"op": "set_block", "pos": ["1e3", 2, 3], "block": "dirt"})  # commands take no exponents


def test_a_bare_yaml_tilde_is_explained(tmp_path):
    path = tmp_path / "tilde.yaml"
    path.write_text("name: t\nedits:\n- {op: summon, entity: cow, pos: [~, ~, ~4]}\n")
    with pytest.raises(SceneError, match=r"edit 0 \(summon\): pos x is null .*quote it: '~'"):
        load_scene(path)


# ----------------------------------------------------------------------------- round trips

_absolute_block = st.integers(0, 63).map(lambda v: Component(float(v)))
_absolute_point = st.integers(0, 6300).map(lambda v: Component(v / 100))
_relative = st.integers(-8000, 8000).map(lambda v: Component(v / 1000, relative=True))
_block_pos = st.builds(Coord, *[st.one_of(_absolute_block, _relative)] * 3)
_corner = st.builds(
    Coord, *[st.one_of(_absolute_block.filter(lambda c: c.value < 16), _relative)] * 3
)  # fills stay small
_point = st.builds(Coord, *[st.one_of(_absolute_point, _relative)] * 3)
_angle = st.integers(-18000, 18000).map(lambda v: v / 100)


@st.composite
def _summons(draw):
    entity = draw(st.sampled_from(ENTITY_TYPES))
    profession = draw(st.none() | st.sampled_from(PROFESSIONS)) if entity == "villager" else None
    health = draw(st.none() | st.integers(1, 400).map(lambda v: v / 4))
    return Summon(entity, draw(_point), draw(st.booleans()), profession, health, draw(_angle), None)


_edits = st.one_of(
    st.builds(SetBlock, _block_pos, st.sampled_from(BLOCKS)),
    st.builds(Fill, _corner, _corner, st.sampled_from(BLOCKS)),
    _summons(),
    st.builds(Teleport, _point, st.none() | st.integers(-90, 90).map(float), st.none() | _angle),
    st.builds(SetTime, st.integers(0, 24000) | st.sampled_from(["day", "noon", "night", "midnight"])),
)


@st.composite
def _scenes(draw):
    edits = draw(st.lists(_edits, max_size=8))
    tags = draw(st.lists(st.booleans(), min_size=len(edits), max_size=len(edits)))
    edits = [  # tags are unique within a scene
        dataclasses.replace(e, tag=f"mob{i}") if isinstance(e, Summon) and tagged else e
        for i, (e, tagged) in enumerate(zip(edits, tags))
    ]
    name = draw(st.text(st.characters(codec="utf-8", categories=["L", "N", "P"]), min_size=1, max_size=20))
    return name, draw(st.text(max_size=80)), tuple(edits)  # built into a Scene in the test, not in the strategy


@given(_scenes())
def test_dict_round_trip_is_exact(parts):
    scene = Scene(*parts)
    data = scene.to_dict()
    assert Scene.from_dict(data) == scene
    assert Scene.from_dict(json.loads(json.dumps(data))).to_dict() == data


@settings(max_examples=50)
@given(_scenes(), st.sampled_from([".yaml", ".yml", ".json"]))
def test_file_round_trip_is_exact(tmp_path_factory, parts, suffix):
    scene = Scene(*parts)
    path = tmp_path_factory.mktemp("scenes") / f"scene{suffix}"
    scene.save(path)
    again = load_scene(path)
    assert again == scene and again.to_commands() == scene.to_commands()
    text = path.read_text(encoding="utf-8")
    again.save(path)
    assert path.read_text(encoding="utf-8") == text  # saving is stable


def test_saved_yaml_reads_like_a_hand_written_file(tmp_path):
    scene = _scene(
        {"op": "summon", "entity": "villager", "pos": ["~", "~", "~4"], "no_ai": True, "yaw": 180},
        {"op": "set_time", "time": "noon"},
    )
    scene.save(tmp_path / "s.yaml")
    assert (tmp_path / "s.yaml").read_text() == (
        "name: s\ndescription: ''\nedits:\n"
        "- op: summon\n  entity: villager\n  pos: ['~', '~', ~4]\n  no_ai: true\n  yaw: 180\n"
        "- {op: set_time, time: noon}\n"
    )


# ----------------------------------------------------------------------------- validation

_VILLAGER = {"op": "summon", "entity": "villager", "pos": ["~", "~", "~4"]}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            {"op": "set_block", "pos": [1, 2, 3], "block": "oak_logg"},
            r"\(set_block\): unknown block 'oak_logg'; did you mean 'oak_log'\?",
        ),
        (
            {"op": "fill", "from": [1, 2, 3], "to": [1, 2, 3], "block": "minecraft:stone"},
            r"\(fill\): write block 'stone' without 'minecraft:'",
        ),
        ({**_VILLAGER, "entity": "vilager"}, r"\(summon\): unknown entity 'vilager'; did you mean 'villager'\?"),
        ({**_VILLAGER, "profession": "farmr"}, r"\(summon\): unknown profession 'farmr'; did you mean 'farmer'\?"),
        (
            {**_VILLAGER, "entity": "cow", "profession": "farmer"},
            r"\(summon\): a cow has no profession; remove 'profession' \(villagers only\)",
        ),
        ({**_VILLAGER, "health": 0}, r"\(summon\): health must be > 0, got 0; leave it out for the default"),
        ({**_VILLAGER, "health": "lots"}, r"\(summon\): health 'lots' must be a finite number"),
        ({**_VILLAGER, "no_ai": "yes please"}, r"\(summon\): no_ai 'yes please' must be true or false"),
        ({**_VILLAGER, "tag": "my target"}, r"\(summon\): tag 'my target' may use only letters, digits"),
        (
            {"op": "teleport", "pos": ["~", "~", "~"], "pitch": 120},
            r"\(teleport\): pitch 120 is outside \[-90, 90\]; 0 looks level",
        ),
        ({"op": "set_time", "time": 30000}, r"\(set_time\): time 30000 is outside 0..24000 ticks"),
        ({"op": "set_time", "time": "dusk"}, r"\(set_time\): unknown time 'dusk'; use ticks 0..24000 or a name"),
        ({"op": "set_time", "time": 12.5}, r"\(set_time\): time 12.5 must be whole ticks"),
        ({"op": "explode", "pos": [1, 2, 3]}, r"^edit 1: unknown op 'explode'; \(valid: set_block, fill, summon"),
        ({"op": "sumon", "entity": "cow"}, r"^edit 1: unknown op 'sumon'; did you mean 'summon'\?"),
        ("set_block", r"^edit 1: 'set_block' is not an edit; write a mapping with an op"),
        ({"op": "set_block", "pos": [1, 2, 3]}, r"\(set_block\): missing block; a set_block edit needs pos, block"),
        ({**_VILLAGER, "profesion": "farmer"}, r"\(summon\): unknown key 'profesion'; did you mean 'profession'\?"),
        (
            {"op": "set_block", "pos": [1, 2], "block": "dirt"},
            r"\(set_block\): pos \[1, 2\] is not three coordinates; write e.g.",
        ),
        (
            {"op": "set_block", "pos": [1, 99, 3], "block": "dirt"},
            r"\(set_block\): pos y 99 is outside the world \(y in \[0, 64\)\); move it inside, or write it relative",
        ),
        (
            {"op": "summon", "entity": "cow", "pos": [-1, "~", "~"]},
            r"\(summon\): pos x -1 is outside the world \(x in \[0, 128\)\)",
        ),
        (
            {"op": "set_block", "pos": [1.5, 2, 3], "block": "dirt"},
            r"\(set_block\): pos x 1.5 is not a whole block coordinate; write 1",
        ),
        (
            {"op": "fill", "from": [0, 0, 0], "to": [100, 40, 100], "block": "air"},
            r"\(fill\): fills 418241 blocks, more than 32768; split it",
        ),
        (
            {"op": "fill", "from": ["~-40", "~", "~-40"], "to": ["~40", "~10", "~40"], "block": "air"},
            r"\(fill\): fills 72171 blocks",
        ),
        (
            {**_VILLAGER, "tag": "t" * 200},
            r"\(summon\): its command has \d+ characters, more than the 256 chat allows",
        ),
    ],
)
def test_each_invalid_edit_is_named_with_its_fix(edit, message):
    with pytest.raises(SceneError, match=message) as caught:
        _scene({"op": "set_time", "time": 0}, edit)
    assert str(caught.value).startswith("edit 1")  # the edit's index in the file


def test_tags_name_one_mob_each():
    with pytest.raises(SceneError, match=r"edit 1 \(summon\): tag 'target' is taken by edit 0"):
        _scene({**_VILLAGER, "tag": "target"}, {**_VILLAGER, "tag": "target"})


def test_scene_level_mistakes():
    with pytest.raises(SceneError, match="unknown key 'edit'; did you mean 'edits'"):
        Scene.from_dict({"name": "s", "edit": []})
    with pytest.raises(SceneError, match="name None must be a non-empty string"):
        Scene.from_dict({"edits": []})
    with pytest.raises(SceneError, match="edits must be a list"):
        Scene.from_dict({"name": "s", "edits": {"op": "set_time", "time": 0}})
    with pytest.raises(SceneError, match=r"edit 0 \(fill\): unknown block"):  # built in Python, checked the same
        Scene("s", "", (Fill(Coord.parse([0, 0, 0]), Coord.parse([1, 1, 1]), "lava"),))


# ----------------------------------------------------------------------------- Minecraft commands


@pytest.mark.parametrize(
    ("edit", "command"),
    [
        ({"op": "set_block", "pos": ["~2", "~", "~5"], "block": "oak_log"}, "/setblock ~2 ~ ~5 minecraft:oak_log"),
        ({"op": "set_block", "pos": [10, 20, 30], "block": "air"}, "/setblock 10 20 30 minecraft:air"),
        (
            {"op": "fill", "from": ["~-2", "~3", "~3"], "to": ["~2", "~4", "~7"], "block": "stone"},
            "/fill ~-2 ~3 ~3 ~2 ~4 ~7 minecraft:stone",
        ),
        # leaves made by command would decay without a trunk nearby
        (
            {"op": "fill", "from": ["~-2", "~3", "~3"], "to": ["~2", "~4", "~7"], "block": "oak_leaves"},
            "/fill ~-2 ~3 ~3 ~2 ~4 ~7 minecraft:oak_leaves[persistent=true]",
        ),
        (
            {**_VILLAGER, "pos": ["~", "~", "~5"], "no_ai": True, "profession": "farmer", "yaw": 180, "tag": "target"},
            "/summon minecraft:villager ~ ~ ~5 {NoAI:1b,Rotation:[180.0f,0.0f],"
            'VillagerData:{profession:"minecraft:farmer",level:1,type:"minecraft:plains"},Tags:["target"]}',
        ),
        (
            {"op": "summon", "entity": "cow", "pos": ["~1.5", "~", "~-2"]},
            "/summon minecraft:cow ~1.5 ~ ~-2 {Rotation:[0.0f,0.0f]}",
        ),
        # a whole absolute x or z would be moved to the block centre by Minecraft: written 10.0
        (
            {"op": "summon", "entity": "zombie", "pos": [10, 20, 30.25], "health": 20, "yaw": -45.5},
            "/summon minecraft:zombie 10.0 20 30.25 {Rotation:[-45.5f,0.0f],Health:20.0f}",
        ),
        ({"op": "teleport", "pos": [10, 40, 10], "pitch": 0, "yaw": 90}, "/tp @p 10.0 40 10.0 90 0"),
        ({"op": "teleport", "pos": ["~", "~", "~"], "pitch": 30.5, "yaw": -90}, "/tp @p ~ ~ ~ -90 30.5"),
        ({"op": "teleport", "pos": ["~", "~1", "~"], "pitch": 45}, "/tp @p ~ ~1 ~ ~ 45"),
        ({"op": "teleport", "pos": ["~", "~1", "~"]}, "/tp @p ~ ~1 ~"),
        ({"op": "set_time", "time": 1000}, "/time set 1000"),
        ({"op": "set_time", "time": "midnight"}, "/time set midnight"),
    ],
)
def test_commands_are_minecraft_1_16(edit, command):
    assert _scene(edit).to_commands() == [command]


def test_the_probe_compiles_to_these_commands():
    assert load_builtin_scene("villager_under_leaves").to_commands() == [
        "/tp @p ~ ~ ~ 0 0",
        "/time set noon",
        "/fill ~-5 ~ ~1 ~5 ~7 ~10 minecraft:air",
        "/fill ~-5 ~-1 ~-1 ~5 ~-1 ~10 minecraft:grass_block",
        "/fill ~-2 ~2 ~2 ~2 ~3 ~6 minecraft:oak_leaves[persistent=true]",
        "/summon minecraft:villager ~ ~ ~4 {NoAI:1b,Rotation:[180.0f,0.0f],"
        'VillagerData:{profession:"minecraft:farmer",level:1,type:"minecraft:plains"},Tags:["target"]}',
    ]


# ----------------------------------------------------------------------------- applying


def test_the_test_double_is_a_scene_target():
    assert isinstance(RecordingTargetDouble(), SceneTarget)


def test_apply_resolves_relative_coordinates_and_keeps_the_order():
    scene = _scene(
        {"op": "teleport", "pos": ["~", "~", "~"], "pitch": 0, "yaw": 0},
        {"op": "fill", "from": ["~-1", "~2", "~1.6"], "to": ["~", "~2", "~1.4"], "block": "oak_leaves"},
        {"op": "set_block", "pos": ["~-0.6", "~-1", 5], "block": "dirt"},  # 9.9 floors to 9; absolute z stays
        {**_VILLAGER, "no_ai": True, "profession": "farmer", "yaw": 180, "tag": "target"},
        {"op": "summon", "entity": "cow", "pos": [3.25, "~", "~-0.5"], "health": 4},
        {"op": "set_time", "time": "night"},
    )
    target = RecordingTargetDouble(player=(10.5, 20.0, 30.5))
    result = apply_scene(scene, target)
    assert target.calls == [
        ("teleport", 10.5, 20.0, 30.5, 0.0, 0.0),
        ("set_block", 9, 22, 31, "oak_leaves"),  # x 9.5..10.5 -> blocks 9, 10; z 32.1 and 31.9 -> 32, 31
        ("set_block", 9, 22, 32, "oak_leaves"),
        ("set_block", 10, 22, 31, "oak_leaves"),
        ("set_block", 10, 22, 32, "oak_leaves"),
        ("set_block", 9, 19, 5, "dirt"),
        ("summon", "villager", 10.5, 20.0, 34.5, True, "farmer", None, 180.0, "target"),
        ("summon", "cow", 3.25, 20.0, 30.0, False, None, 4.0, 0.0, None),
        ("set_time", 13000),
    ]
    assert result == {"origin": [10.5, 20.0, 30.5], "summoned": {"target": 107, "edit_4": 108}, "n_blocks_set": 5}


def test_a_teleport_moves_the_origin_of_later_edits_as_in_the_game():
    scene = _scene(
        {"op": "set_block", "pos": ["~", "~", "~1"], "block": "stone"},
        {"op": "teleport", "pos": ["~2", "~", "~"]},
        {"op": "set_block", "pos": ["~", "~", "~1"], "block": "stone"},
        {"op": "teleport", "pos": [50.5, 10, 50.5]},
        {"op": "set_block", "pos": ["~", "~", "~1"], "block": "stone"},
    )
    target = RecordingTargetDouble(player=(10.5, 20.0, 30.5))
    apply_scene(scene, target)
    blocks = [call[1:4] for call in target.calls if call[0] == "set_block"]
    assert blocks == [(10, 20, 31), (12, 20, 31), (50, 10, 51)]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            {"op": "set_block", "pos": ["~200", "~", "~"], "block": "dirt"},
            r"^edit 2 \(set_block\): pos resolves to \(210, 20, 30\) from the player at \(10.5, 20, 30.5\), "
            r"outside the world \(x, z in \[0, 128\), y in \[0, 64\)\); bring it closer to the player$",
        ),
        (
            {"op": "summon", "entity": "cow", "pos": ["~", "~50", "~"]},
            r"^edit 2 \(summon\): pos resolves to \(10.5, 70, 30.5\)",
        ),
        (
            {"op": "fill", "from": [0, 0, 0], "to": ["~60", "~", "~60"], "block": "air"},
            r"^edit 2 \(fill\): fills 135681 blocks, more than 32768",
        ),
    ],
)
def test_a_scene_with_one_bad_edit_applies_nothing(bad, message):
    scene = _scene(
        {"op": "set_block", "pos": ["~", "~", "~1"], "block": "dirt"},
        {"op": "summon", "entity": "pig", "pos": ["~", "~", "~2"]},
        bad,
        {"op": "set_time", "time": 0},
    )
    target = RecordingTargetDouble()
    with pytest.raises(SceneError, match=message):
        apply_scene(scene, target)
    assert target.calls == []


# ----------------------------------------------------------------------------- files and the library

_LIBRARY = [
    "canopy_only",
    "open_world",
    "tree_at_spot",
    "villager_cleric_in_open",
    "villager_cleric_under_leaves",
    "villager_in_open",
    "villager_other_clothes_under_leaves",
    "villager_under_leaves",
    "villager_walking_under_leaves",
]


def test_every_builtin_scene_loads_validates_compiles_and_applies():
    assert list_builtin_scenes() == _LIBRARY
    for name in _LIBRARY:
        scene = load_builtin_scene(name)
        assert scene.name == name and len(scene.description) > 80
        scene.validate()
        assert all(command.startswith("/") and len(command) <= 256 for command in scene.to_commands())
        assert yaml.safe_load((LIBRARY_DIR / f"{name}.yaml").read_text()) is not None
        target = RecordingTargetDouble(player=(64.5, 10.0, 40.5))
        apply_scene(scene, target)
        if name == "open_world":  # the seed's world as it is: only the clock set
            assert target.calls == [("set_time", 6000)]
        else:
            assert target.calls[0] == ("teleport", 64.5, 10.0, 40.5, 0.0, 0.0)  # facing south, level, first


def test_the_controls_share_the_probe_geometry():
    probe = load_builtin_scene("villager_under_leaves").edits
    canopy, villager = probe[4], probe[5]
    assert canopy == Fill(Coord.parse(["~-2", "~2", "~2"]), Coord.parse(["~2", "~3", "~6"]), "oak_leaves")
    assert (villager.entity, villager.profession, villager.no_ai, villager.yaw) == ("villager", "farmer", True, 180.0)
    assert villager.pos == Coord.parse(["~", "~", "~4"])
    trunk = Fill(Coord.parse(["~", "~", "~4"]), Coord.parse(["~", "~3", "~4"]), "oak_log")
    librarian = dataclasses.replace(villager, profession="librarian")
    assert load_builtin_scene("villager_in_open").edits == probe[:4] + (villager,)
    assert load_builtin_scene("villager_other_clothes_under_leaves").edits == probe[:5] + (librarian,)
    cleric = dataclasses.replace(villager, profession="cleric")
    assert load_builtin_scene("villager_cleric_under_leaves").edits == probe[:5] + (cleric,)
    assert load_builtin_scene("villager_cleric_in_open").edits == probe[:4] + (cleric,)
    assert load_builtin_scene("tree_at_spot").edits == probe[:5] + (trunk,)
    assert load_builtin_scene("canopy_only").edits == probe[:5]
    walking = dataclasses.replace(villager, no_ai=False)
    assert load_builtin_scene("villager_walking_under_leaves").edits == probe[:5] + (walking,)


def test_the_canopy_hangs_just_above_the_villagers_head():
    target = RecordingTargetDouble(player=(64.5, 10.0, 40.5))
    result = apply_scene(load_builtin_scene("villager_under_leaves"), target)
    (summon,) = [c for c in target.calls if c[0] == "summon"]
    leaves = {c[1:4] for c in target.calls if c[0] == "set_block" and c[4] == "oak_leaves"}
    x, y, z = summon[2:5]
    assert (x, y, z) == (64.5, 10.0, 44.5) and result["summoned"] == {"target": 100 + len(target.calls)}
    assert min(b[1] for b in leaves) == 12 and y + 1.95 < 12  # underside just above a 1.95-tall villager
    assert {(bx, bz) for bx, _, bz in leaves} == {(bx, bz) for bx in range(62, 67) for bz in range(42, 47)}
    assert all((int(x), by, int(z)) in leaves for by in (12, 13))  # centred over it


def test_file_errors_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(ValueError, match=r"scene\.txt: a scene file ends in \.yaml, \.yml or \.json"):
        load_scene(tmp_path / "scene.txt")
    with pytest.raises(FileNotFoundError, match="no such scene file .*villager_under_leaves"):
        load_scene(tmp_path / "missing.yaml")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(SceneError, match="broken.json: not valid JSON"):
        load_scene(tmp_path / "broken.json")
    (tmp_path / "bad.yaml").write_text("name: b\nedits:\n- {op: set_block, pos: [1, 2, 3], block: lava}\n")
    with pytest.raises(SceneError, match=r"bad\.yaml: edit 0 \(set_block\): unknown block 'lava'"):
        load_scene(tmp_path / "bad.yaml")


def test_as_scene_takes_a_scene_a_dict_a_name_or_a_path(tmp_path):
    probe = load_builtin_scene("villager_under_leaves")
    probe.save(tmp_path / "probe.json")
    assert as_scene(probe) is probe
    assert as_scene(probe.to_dict()) == as_scene("villager_under_leaves") == as_scene(tmp_path / "probe.json") == probe
    with pytest.raises(
        KeyError, match="no built-in scene 'villager_under_leave'; did you mean 'villager_under_leaves'"
    ):
        as_scene("villager_under_leave")


def test_yaml_keeps_characters_pyyaml_would_fold(tmp_path):
    """A raw NEL (U+0085) written by PyYAML with allow_unicode comes back as a space; the writer escapes it."""
    scene = Scene("nel", "line\x85break \u2028 and é", ())
    scene.save(tmp_path / "s.yaml")
    assert load_scene(tmp_path / "s.yaml") == scene


def test_a_yaml_alias_bomb_is_refused_quickly_and_errors_stay_short(tmp_path):
    import time

    from vptlens.envs.scenes import SceneError, load_scene

    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    bomb = tmp_path / "bomb.yaml"
    for key in ("pos", "op", "tag"):  # the expanded value lands where an error message quotes it
        edit = {"pos": "{op: summon, entity: villager, pos: *a8}", "op": "{op: *a8}", "tag": "{op: summon, tag: *a8}"}
        bomb.write_text("\n".join(lines) + f"\nname: bomb\nedits:\n- {edit[key]}\n")
        start = time.monotonic()
        with pytest.raises(SceneError, match="aliases are expanded") as err:
            load_scene(bomb)
        assert time.monotonic() - start < 5 and len(str(err.value)) < 300
    deep = tmp_path / "deep.yaml"
    deep.write_text("name: deep\nedits: " + "[" * 100 + "]" * 100 + "\n")
    with pytest.raises(SceneError, match="nested over 32 levels"):
        load_scene(deep)
    big = tmp_path / "big.yaml"
    big.write_text("name: big\n#" + "x" * (2 << 20) + "\n")
    with pytest.raises(SceneError, match="far too large"):
        load_scene(big)


def test_errors_quote_a_short_prefix_of_a_long_value(tmp_path):
    from vptlens.envs.scenes import SceneError, load_scene

    path = tmp_path / "long.yaml"
    path.write_text("name: long\nedits:\n- {op: summon, entity: villager, pos: [" + ", ".join(["1"] * 5000) + "]}\n")
    with pytest.raises(SceneError, match="not three coordinates") as err:
        load_scene(path)
    assert len(str(err.value)) < 300
