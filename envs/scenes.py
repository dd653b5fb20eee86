"""Scenes: declarative edits of a Minecraft-like world, as data.

A `Scene` is a list of edits (set a block, fill a box, summon a mob, teleport the player,
set the time) written in YAML or JSON. Coordinates are absolute or relative to the
player's feet as in Minecraft (`"~"`, `"~2"`, `"~-1.5"`), so one scene file serves both
BlockWorld (applied natively through `SceneTarget`) and the real game (compiled to
Minecraft 1.16 commands). Every edit is validated before anything is applied.

    name: villager_in_open
    description: ...
    edits:
      - {op: teleport, pos: ["~", "~", "~"], pitch: 0, yaw: 0}
      - {op: summon, entity: villager, pos: ["~", "~", "~4"], no_ai: true, profession: farmer, yaw: 180}
"""

import difflib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import yaml

from vptlens.envs.vocab import BLOCKS, ENTITY_TYPES, PROFESSIONS, TICKS_PER_DAY, WORLD_HEIGHT, WORLD_SIZE_XZ

MAX_FILL_BLOCKS = 32768
"""Minecraft's /fill limit."""
TIME_NAMES = {"day": 1000, "noon": 6000, "night": 13000, "midnight": 18000}


class SceneError(ValueError):
    """A scene that cannot be applied; the message names the edit and the fix."""


# ----------------------------------------------------------------------------- coordinates


@dataclass(frozen=True)
class Component:
    """One coordinate: an absolute value, or an offset from the player's position when `relative`."""

    value: float
    relative: bool = False

    @staticmethod
    def parse(raw, where: str) -> "Component":
        if isinstance(raw, bool):
            raise SceneError(f"{where}: {raw!r} is not a coordinate; write e.g. 5, '~' or '~-2'")
        if isinstance(raw, int | float):
            return Component(float(raw))
        if isinstance(raw, str):
            text = raw.strip()
            try:
                if text.startswith("~"):
                    return Component(float(text[1:]) if text[1:] else 0.0, relative=True)
                return Component(float(text))
            except ValueError:
                pass
        raise SceneError(f"{where}: {raw!r} is not a number or ~offset; write e.g. 5, '~' or '~-2'")

    def to_data(self):
        if self.relative:
            return "~" if self.value == 0 else f"~{_num(self.value)}"
        return int(self.value) if self.value == int(self.value) else self.value

    def command(self) -> str:
        if self.relative:
            return "~" if self.value == 0 else f"~{_num(self.value)}"
        return _num(self.value)

    def resolve(self, origin: float) -> float:
        return origin + self.value if self.relative else self.value


def _num(v: float) -> str:
    return str(int(v)) if float(v) == int(v) else repr(float(v))


@dataclass(frozen=True)
class Coord:
    x: Component
    y: Component
    z: Component

    @staticmethod
    def parse(raw, where: str) -> "Coord":
        if not isinstance(raw, list | tuple) or len(raw) != 3:
            raise SceneError(f"{where}: a position is a list of three coordinates [x, y, z], got {raw!r}")
        return Coord(*(Component.parse(r, f"{where} {axis}") for r, axis in zip(raw, "xyz")))

    def to_data(self) -> list:
        return [self.x.to_data(), self.y.to_data(), self.z.to_data()]

    def command(self) -> str:
        return f"{self.x.command()} {self.y.command()} {self.z.command()}"

    def resolve(self, origin: tuple[float, float, float]) -> tuple[float, float, float]:
        return (self.x.resolve(origin[0]), self.y.resolve(origin[1]), self.z.resolve(origin[2]))

    @property
    def is_absolute(self) -> bool:
        return not (self.x.relative or self.y.relative or self.z.relative)


def _block_pos(p: tuple[float, float, float]) -> tuple[int, int, int]:
    return tuple(int(math.floor(v)) for v in p)


# ----------------------------------------------------------------------------- edits


@dataclass(frozen=True)
class SetBlock:
    pos: Coord
    block: str
    op: str = field(default="set_block", init=False)


@dataclass(frozen=True)
class Fill:
    start: Coord
    end: Coord
    block: str
    op: str = field(default="fill", init=False)


@dataclass(frozen=True)
class Summon:
    entity: str
    pos: Coord
    no_ai: bool = False
    profession: str | None = None
    health: float | None = None
    yaw: float = 0.0
    tag: str | None = None
    op: str = field(default="summon", init=False)


@dataclass(frozen=True)
class Teleport:
    pos: Coord
    pitch: float | None = None
    yaw: float | None = None
    op: str = field(default="teleport", init=False)


@dataclass(frozen=True)
class SetTime:
    ticks: int
    op: str = field(default="set_time", init=False)


Edit = SetBlock | Fill | Summon | Teleport | SetTime

_FIELDS = {
    "set_block": ({"pos", "block"}, set()),
    "fill": ({"from", "to", "block"}, set()),
    "summon": ({"entity", "pos"}, {"no_ai", "profession", "health", "yaw", "tag"}),
    "teleport": ({"pos"}, {"pitch", "yaw"}),
    "set_time": ({"time"}, set()),
}


def _suggest(name: str, valid) -> str:
    close = difflib.get_close_matches(str(name), list(valid), n=1)
    return f"did you mean '{close[0]}'?" if close else f"valid: {', '.join(valid)}"


def _parse_edit(raw: dict, index: int) -> Edit:
    if not isinstance(raw, dict) or "op" not in raw:
        raise SceneError(f"edit {index}: each edit is a mapping with an 'op' ({', '.join(_FIELDS)}), got {raw!r}")
    op = raw["op"]
    if op not in _FIELDS:
        raise SceneError(f"edit {index}: unknown op {op!r}; {_suggest(op, _FIELDS)}")
    where = f"edit {index} ({op})"
    required, optional = _FIELDS[op]
    keys = set(raw) - {"op"}
    if missing := required - keys:
        raise SceneError(f"{where}: missing {', '.join(sorted(missing))}")
    if extra := keys - required - optional:
        raise SceneError(
            f"{where}: unknown key {', '.join(sorted(extra))}; allowed: {', '.join(sorted(required | optional))}"
        )
    try:
        if op == "set_block":
            return SetBlock(Coord.parse(raw["pos"], f"{where} pos"), str(raw["block"]))
        if op == "fill":
            return Fill(
                Coord.parse(raw["from"], f"{where} from"), Coord.parse(raw["to"], f"{where} to"), str(raw["block"])
            )
        if op == "summon":
            return Summon(
                str(raw["entity"]),
                Coord.parse(raw["pos"], f"{where} pos"),
                no_ai=bool(raw.get("no_ai", False)),
                profession=None if raw.get("profession") is None else str(raw["profession"]),
                health=None if raw.get("health") is None else float(raw["health"]),
                yaw=float(raw.get("yaw", 0.0)),
                tag=None if raw.get("tag") is None else str(raw["tag"]),
            )
        if op == "teleport":
            return Teleport(
                Coord.parse(raw["pos"], f"{where} pos"),
                pitch=None if raw.get("pitch") is None else float(raw["pitch"]),
                yaw=None if raw.get("yaw") is None else float(raw["yaw"]),
            )
        time = raw["time"]
        if isinstance(time, str):
            if time not in TIME_NAMES:
                raise SceneError(
                    f"{where}: time {time!r} unknown; use ticks 0..{TICKS_PER_DAY} or {', '.join(TIME_NAMES)}"
                )
            return SetTime(TIME_NAMES[time])
        return SetTime(int(time))
    except (TypeError, ValueError) as e:
        if isinstance(e, SceneError):
            raise
        raise SceneError(f"{where}: {e}") from e


def _edit_to_data(edit: Edit) -> dict:
    if isinstance(edit, SetBlock):
        return {"op": edit.op, "pos": edit.pos.to_data(), "block": edit.block}
    if isinstance(edit, Fill):
        return {"op": edit.op, "from": edit.start.to_data(), "to": edit.end.to_data(), "block": edit.block}
    if isinstance(edit, Summon):
        out = {"op": edit.op, "entity": edit.entity, "pos": edit.pos.to_data(), "no_ai": edit.no_ai, "yaw": edit.yaw}
        out |= {k: v for k in ("profession", "health", "tag") if (v := getattr(edit, k)) is not None}
        return out
    if isinstance(edit, Teleport):
        out = {"op": edit.op, "pos": edit.pos.to_data()}
        return out | {k: v for k in ("pitch", "yaw") if (v := getattr(edit, k)) is not None}
    return {"op": edit.op, "time": edit.ticks}


# ----------------------------------------------------------------------------- the scene


@dataclass(frozen=True)
class Scene:
    name: str
    edits: tuple[Edit, ...]
    description: str = ""

    def __post_init__(self):
        self.validate()

    @staticmethod
    def from_dict(data: dict) -> "Scene":
        if not isinstance(data, dict):
            raise SceneError(f"a scene is a mapping with name, description and edits; got {type(data).__name__}")
        if extra := set(data) - {"name", "description", "edits"}:
            raise SceneError(f"scene: unknown key {', '.join(sorted(extra))}; allowed: name, description, edits")
        if "name" not in data or not isinstance(data.get("edits", []), list):
            raise SceneError("scene: needs a 'name' and a list of 'edits'")
        edits = tuple(_parse_edit(raw, i) for i, raw in enumerate(data.get("edits", [])))
        return Scene(str(data["name"]), edits, str(data.get("description", "")))

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "edits": [_edit_to_data(e) for e in self.edits]}

    def save(self, path: str | Path) -> None:
        path = Path(path)
        text = (
            json.dumps(self.to_dict(), indent=2)
            if path.suffix == ".json"
            else yaml.safe_dump(self.to_dict(), sort_keys=False)
        )
        path.write_text(text)

    def validate(self) -> None:
        """Check what can be checked without a world: names, attributes, absolute coordinates."""
        for i, edit in enumerate(self.edits):
            where = f"edit {i} ({edit.op})"
            if isinstance(edit, SetBlock | Fill) and edit.block not in BLOCKS:
                raise SceneError(f"{where}: unknown block '{edit.block}'; {_suggest(edit.block, BLOCKS)}")
            if isinstance(edit, Summon):
                if edit.entity not in ENTITY_TYPES:
                    raise SceneError(f"{where}: unknown entity '{edit.entity}'; {_suggest(edit.entity, ENTITY_TYPES)}")
                if edit.profession is not None:
                    if edit.entity != "villager":
                        raise SceneError(f"{where}: profession is for villagers only; remove it from the {edit.entity}")
                    if edit.profession not in PROFESSIONS:
                        raise SceneError(
                            f"{where}: unknown profession '{edit.profession}'; {_suggest(edit.profession, PROFESSIONS)}"
                        )
                if edit.health is not None and not edit.health > 0:
                    raise SceneError(f"{where}: health must be > 0, got {edit.health}")
            if isinstance(edit, Teleport) and edit.pitch is not None and not -90 <= edit.pitch <= 90:
                raise SceneError(f"{where}: pitch {edit.pitch} is outside -90..90 (positive looks down)")
            if isinstance(edit, SetTime) and not 0 <= edit.ticks <= TICKS_PER_DAY:
                raise SceneError(f"{where}: time {edit.ticks} is outside 0..{TICKS_PER_DAY} ticks")
            if isinstance(edit, Fill):
                dims = [abs(a.value - b.value) + 1 for a, b in zip((edit.start.x, edit.start.y, edit.start.z),
                                                                   (edit.end.x, edit.end.y, edit.end.z))]  # fmt: skip
                both_same_kind = all(a.relative == b.relative for a, b in zip(
                    (edit.start.x, edit.start.y, edit.start.z), (edit.end.x, edit.end.y, edit.end.z)))  # fmt: skip
                if both_same_kind and math.prod(dims) > MAX_FILL_BLOCKS:
                    raise SceneError(
                        f"{where}: fills {int(math.prod(dims))} blocks, more than {MAX_FILL_BLOCKS}; split it"
                    )
            for coord in _coords(edit):
                if coord.is_absolute:
                    _check_inside(coord.resolve((0.0, 0.0, 0.0)), where)

    def to_commands(self) -> list[str]:
        """Minecraft 1.16 commands, one per edit, in order (run as the player, so `~` is the player's feet)."""
        return [_command(edit) for edit in self.edits]


def _coords(edit: Edit) -> list[Coord]:
    if isinstance(edit, Fill):
        return [edit.start, edit.end]
    return [edit.pos] if hasattr(edit, "pos") else []


def _check_inside(p: tuple[float, float, float], where: str) -> None:
    x, y, z = p
    if not (0 <= x < WORLD_SIZE_XZ and 0 <= z < WORLD_SIZE_XZ and 0 <= y < WORLD_HEIGHT):
        raise SceneError(
            f"{where}: position ({x:g}, {y:g}, {z:g}) is outside BlockWorld (x, z in 0..{WORLD_SIZE_XZ - 1}, "
            f"y in 0..{WORLD_HEIGHT - 1}); use coordinates relative to the player ('~') or move it inside"
        )


def _float(v: float) -> str:
    return f"{float(v):.1f}f" if float(v) == round(float(v), 1) else f"{float(v)}f"


def _command(edit: Edit) -> str:
    if isinstance(edit, SetBlock):
        return f"/setblock {edit.pos.command()} minecraft:{edit.block}"
    if isinstance(edit, Fill):
        return f"/fill {edit.start.command()} {edit.end.command()} minecraft:{edit.block}"
    if isinstance(edit, Summon):
        nbt = []
        if edit.no_ai:
            nbt.append("NoAI:1b")
        nbt.append(f"Rotation:[{_float(edit.yaw)},0.0f]")
        if edit.health is not None:
            nbt.append(f"Health:{_float(edit.health)}")
        if edit.profession is not None:
            nbt.append(f'VillagerData:{{profession:"minecraft:{edit.profession}",level:1,type:"minecraft:plains"}}')
        if edit.tag is not None:
            nbt.append(f'Tags:["{edit.tag}"]')
        return f"/summon minecraft:{edit.entity} {edit.pos.command()} {{{','.join(nbt)}}}"
    if isinstance(edit, Teleport):
        rotation = ""
        if edit.yaw is not None or edit.pitch is not None:  # /tp takes yaw then pitch; ~ keeps the current one
            yaw = _num(edit.yaw) if edit.yaw is not None else "~"
            rotation = f" {yaw} {_num(edit.pitch) if edit.pitch is not None else '~'}"
        return f"/tp @p {edit.pos.command()}{rotation}"
    return f"/time set {edit.ticks}"


# ----------------------------------------------------------------------------- applying


@runtime_checkable
class SceneTarget(Protocol):
    """What a world must offer for scenes to be applied to it natively (BlockWorld's `World` does)."""

    def player_position(self) -> tuple[float, float, float]: ...
    def set_block(self, x: int, y: int, z: int, block: str) -> None: ...
    def summon(self, entity_type: str, x: float, y: float, z: float, *, no_ai: bool, profession: str | None,
               health: float | None, yaw: float, tag: str | None) -> int: ...  # fmt: skip
    def teleport(self, x: float, y: float, z: float, pitch: float | None, yaw: float | None) -> None: ...
    def set_time(self, ticks: int) -> None: ...


def apply_scene(scene: Scene, target: SceneTarget) -> dict:
    """Apply every edit in order; relative coordinates resolve against the player's feet at the start.

    All positions are checked against the world before the first edit is applied, so an
    invalid scene changes nothing. Returns the ids of summoned mobs by tag (or by edit index).
    """
    origin = target.player_position()
    for i, edit in enumerate(scene.edits):
        for coord in _coords(edit):
            _check_inside(coord.resolve(origin), f"edit {i} ({edit.op}) resolved from the player at {origin}")
    summoned = {}
    for i, edit in enumerate(scene.edits):
        if isinstance(edit, SetBlock):
            target.set_block(*_block_pos(edit.pos.resolve(origin)), edit.block)
        elif isinstance(edit, Fill):
            a, b = _block_pos(edit.start.resolve(origin)), _block_pos(edit.end.resolve(origin))
            for x in range(min(a[0], b[0]), max(a[0], b[0]) + 1):
                for y in range(min(a[1], b[1]), max(a[1], b[1]) + 1):
                    for z in range(min(a[2], b[2]), max(a[2], b[2]) + 1):
                        target.set_block(x, y, z, edit.block)
        elif isinstance(edit, Summon):
            x, y, z = edit.pos.resolve(origin)
            entity_id = target.summon(edit.entity, x, y, z, no_ai=edit.no_ai, profession=edit.profession,
                                      health=edit.health, yaw=edit.yaw, tag=edit.tag)  # fmt: skip
            summoned[edit.tag or f"edit_{i}"] = entity_id
        elif isinstance(edit, Teleport):
            target.teleport(*edit.pos.resolve(origin), pitch=edit.pitch, yaw=edit.yaw)
        else:
            target.set_time(edit.ticks)
    return {"summoned": summoned}


# ----------------------------------------------------------------------------- files and the library

LIBRARY_DIR = Path(__file__).parent / "scene_library"


def load_scene(path: str | Path) -> Scene:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such scene file (built-in scenes: {', '.join(list_builtin_scenes())})")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise SceneError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {e}") from e
    return Scene.from_dict(data)


def list_builtin_scenes() -> list[str]:
    return sorted(p.stem for p in LIBRARY_DIR.glob("*.yaml"))


def load_builtin_scene(name: str) -> Scene:
    names = list_builtin_scenes()
    if name not in names:
        raise KeyError(f"no built-in scene '{name}'; {_suggest(name, names)}")
    return load_scene(LIBRARY_DIR / f"{name}.yaml")


def as_scene(scene: "Scene | dict | str | Path") -> Scene:
    """A Scene from a Scene, a dict, a built-in name or a file path."""
    if isinstance(scene, Scene):
        return scene
    if isinstance(scene, dict):
        return Scene.from_dict(scene)
    if isinstance(scene, str) and scene in list_builtin_scenes():
        return load_builtin_scene(scene)
    return load_scene(scene)
