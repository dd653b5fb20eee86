"""Scenes: declarative edits of a Minecraft-like world, as data.

A `Scene` is a named list of edits (set a block, fill a box, summon a mob, teleport the
player, set the time), written in YAML or JSON:

    name: villager_in_open
    description: A farmer villager standing still 4 blocks ahead of the player.
    edits:
    - {op: teleport, pos: ['~', '~', '~'], pitch: 0, yaw: 0}      # face south (+z), level
    - {op: fill, from: [~-5, '~', ~1], to: [~5, ~7, ~10], block: air}
    - {op: summon, entity: villager, pos: ['~', '~', ~4], no_ai: true, profession: farmer, yaw: 180, tag: target}
    - {op: set_time, time: noon}

Coordinates are numbers (absolute) or offsets from the player's feet as in Minecraft: `'~'`,
`~2`, `~-1.5` (quote a bare `~`: YAML reads it as null). One file serves both worlds:
BlockWorld applies it natively through `SceneTarget` (`apply_scene`), the real game runs its
Minecraft 1.16 commands (`Scene.to_commands`), and both read it the same way:

- `~` resolves against the player's position when the edit runs: where the player stood at
  the start of the scene, or where the last teleport put it (commands run one by one).
- Block positions floor the resolved value; absolute block coordinates must be whole.
- Entity positions are exact: commands write absolute x and z as `10.0`, because Minecraft
  moves a whole `10` to the block centre (10.5) for /summon and /tp.
- Leaves compile to `[persistent=true]`: a trunkless canopy would otherwise decay in the game.

A scene is validated when built (names, attributes, absolute coordinates, fill sizes, command
lengths) and again, for every edit before any is applied, once `~` resolves against a world.

Longer than ~500 lines on purpose: parsing, validation and both compilations (BlockWorld and
Minecraft commands) must agree edit by edit, so they sit side by side; and loading a file (size,
alias and depth limits) is the first step of parsing, whose error messages it shares.
"""

import dataclasses
import difflib
import functools
import json
import math
import re
import reprlib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

import yaml

from vptlens.envs.vocab import BLOCKS, ENTITY_TYPES, PROFESSIONS, TICKS_PER_DAY, WORLD_HEIGHT, WORLD_SIZE_XZ

MAX_FILL_BLOCKS = 32768
"""Largest fill, in blocks: Minecraft's own /fill limit."""

MAX_COMMAND_CHARS = 256
"""Longest chat message Minecraft 1.16 accepts; compiled commands are sent as chat."""

TIME_NAMES: dict[str, int] = {"day": 1000, "noon": 6000, "night": 13000, "midnight": 18000}
"""The named times of `/time set`, in ticks."""

LIBRARY_DIR = Path(__file__).parent / "scene_library"
"""The built-in scenes, one YAML file each, shipped as package data."""

_NUMBER = re.compile(r"-?(\d+(\.\d*)?|\.\d+)")  # what Minecraft's command reader accepts: no exponent, no '+'
_TAG = re.compile(r"[A-Za-z0-9_.+-]+")  # the characters Minecraft allows in entity tags


_SCENE_KEYS = ("name", "description", "edits")


class SceneError(ValueError):
    """A scene that cannot be applied; the message names the edit and says how to fix it."""


# ----------------------------------------------------------------------------- coordinates


def _fmt(v: float) -> str:
    """Shortest exact positional form: 5.0 -> '5', 0.25 -> '0.25', 1e-05 -> '0.00001'."""
    text = format(Decimal(repr(float(v) + 0.0)), "f")  # + 0.0 turns -0.0 into 0.0
    return text.removesuffix(".0")


@dataclass(frozen=True)
class Component:
    """One coordinate: `value` itself, or the player's position plus `value` when `relative`."""

    value: float
    relative: bool = False

    def __post_init__(self):
        object.__setattr__(self, "value", float(self.value) + 0.0)  # Component(5) works; -0.0 is 0.0

    @staticmethod
    def parse(raw: object, where: str = "coordinate") -> "Component":
        """From a file: a number (absolute) or a string `'~'`, `'~2'`, `'~-1.5'` (or `'5'`)."""
        if raw is None:
            raise SceneError(f"{where} is null (YAML reads a bare ~ as null); quote it: '~' or '~2'")
        if isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw):
            return Component(float(raw))
        if isinstance(raw, str):
            relative = raw.startswith("~")
            number = raw[1:] if relative else raw
            if (relative and not number) or _NUMBER.fullmatch(number):
                return Component(float(number or 0), relative)
        raise SceneError(f"{where} {_short(raw)} is not a number or ~offset; write e.g. 5, '~' or '~-2'")

    def to_data(self) -> int | float | str:
        if self.relative:
            return f"~{_fmt(self.value)}" if self.value else "~"
        return int(self.value) if self.value.is_integer() else self.value

    def to_command(self, *, exact: bool = False) -> str:
        """As a command argument; `exact` keeps a decimal point so Minecraft does not centre it."""
        if self.relative:
            return str(self.to_data())
        text = _fmt(self.value)
        return f"{text}.0" if exact and "." not in text else text

    def resolve(self, origin: float) -> float:
        return origin + self.value if self.relative else self.value


@dataclass(frozen=True)
class Coord:
    """A position [x, y, z], each component absolute or relative to the player's feet."""

    x: Component
    y: Component
    z: Component

    @staticmethod
    def parse(raw: object, where: str = "position") -> "Coord":
        """From a file: a list of three coordinates, e.g. `['~', '~', '~4']` or `[10, 20, 30.5]`."""
        if not isinstance(raw, list | tuple) or len(raw) != 3:
            example = "['~', '~', '~4'] or [10, 20, 30]"
            raise SceneError(f"{where} {_short(raw)} is not three coordinates; write e.g. {example}")
        return Coord(*(Component.parse(r, f"{where} {axis}") for r, axis in zip(raw, "xyz")))

    @property
    def components(self) -> tuple[Component, Component, Component]:
        return (self.x, self.y, self.z)

    def to_data(self) -> list:
        return [c.to_data() for c in self.components]

    def to_command(self, *, exact: bool = False) -> str:
        # Minecraft centre-corrects whole absolute x and z of entity positions, never y
        return " ".join(c.to_command(exact=exact and axis != "y") for c, axis in zip(self.components, "xyz"))

    def resolve(self, origin: tuple[float, float, float]) -> tuple[float, float, float]:
        return (self.x.resolve(origin[0]), self.y.resolve(origin[1]), self.z.resolve(origin[2]))


# ----------------------------------------------------------------------------- edits


@dataclass(frozen=True)
class SetBlock:
    """Set one block (`/setblock`)."""

    op: ClassVar[str] = "set_block"
    pos: Coord
    block: str


@dataclass(frozen=True)
class Fill:
    """Fill the box between two corners, both included (`/fill`); `from_` is the file's `from`."""

    op: ClassVar[str] = "fill"
    from_: Coord
    to: Coord
    block: str


@dataclass(frozen=True)
class Summon:
    """Summon a mob (`/summon`)."""

    op: ClassVar[str] = "summon"
    entity: str
    pos: Coord
    no_ai: bool = False
    """Stands still, never walks or turns (Minecraft's NoAI)."""
    profession: str | None = None
    """Villagers only; sets the clothes (farmer brown, librarian white, cleric purple)."""
    health: float | None = None
    """Starting health; None keeps the mob's default (20 for a villager)."""
    yaw: float = 0.0
    """Facing in degrees: 0 south (+z), 90 west, 180 north, -90 east."""
    tag: str | None = None
    """Names the mob: a key of `apply_scene`'s result, and a Minecraft tag (`Tags`)."""


@dataclass(frozen=True)
class Teleport:
    """Move the player (feet position) and, when pitch or yaw are given, set its view (`/tp`)."""

    op: ClassVar[str] = "teleport"
    pos: Coord
    pitch: float | None = None
    """Degrees in [-90, 90], positive looks down; None keeps the current pitch."""
    yaw: float | None = None
    """Degrees, 0 faces south (+z); None keeps the current yaw."""


@dataclass(frozen=True)
class SetTime:
    """Set the time of day (`/time set`): ticks in [0, 24000] or day, noon, night, midnight."""

    op: ClassVar[str] = "set_time"
    time: int | str

    @property
    def ticks(self) -> int:
        return TIME_NAMES[self.time] if isinstance(self.time, str) else self.time


Edit = SetBlock | Fill | Summon | Teleport | SetTime
EDIT_TYPES: dict[str, type] = {cls.op: cls for cls in (SetBlock, Fill, Summon, Teleport, SetTime)}


def _suggest(name: object, valid) -> str:
    close = difflib.get_close_matches(str(name), [str(v) for v in valid], n=1)
    return (f"did you mean {close[0]!r}? " if close else "") + f"(valid: {', '.join(valid)})"


def _name(raw: object, where: str) -> str:
    if not isinstance(raw, str):
        raise SceneError(f"{where} {_short(raw)} must be a name in quotes, e.g. 'oak_log'")
    return raw


def _number(raw: object, where: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise SceneError(f"{where} {_short(raw)} must be a finite number, e.g. 90 or -12.5")
    return float(raw)


def _flag(raw: object, where: str) -> bool:
    if not isinstance(raw, bool):
        raise SceneError(f"{where} {_short(raw)} must be true or false")
    return raw


def _time(raw: object, where: str) -> int | str:
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        names = ", ".join(TIME_NAMES)
        raise SceneError(f"{where} {_short(raw)} must be whole ticks (0..{TICKS_PER_DAY}) or one of {names}")
    return raw


_PARSERS = {
    "pos": Coord.parse,
    "from": Coord.parse,
    "to": Coord.parse,
    "block": _name,
    "entity": _name,
    "profession": _name,
    "tag": _name,
    "no_ai": _flag,
    "health": _number,
    "yaw": _number,
    "pitch": _number,
    "time": _time,
}


def _key(f: dataclasses.Field) -> str:
    return f.name.rstrip("_")  # `from_` is written `from`


def _parse_edit(raw: object, index: int) -> Edit:
    if not isinstance(raw, dict):
        raise SceneError(
            f"edit {index}: {_short(raw)} is not an edit; write a mapping with an op, e.g. {{op: set_time, ...}}"
        )
    op = raw.get("op")
    if not isinstance(op, str) or op not in EDIT_TYPES:
        raise SceneError(f"edit {index}: unknown op {op!r}; {_suggest(op, EDIT_TYPES)}")
    where = f"edit {index} ({op})"
    fields = {_key(f): f for f in dataclasses.fields(EDIT_TYPES[op])}
    if unknown := sorted(set(raw) - {"op"} - set(fields), key=str):
        raise SceneError(f"{where}: unknown key {unknown[0]!r}; {_suggest(unknown[0], fields)}")
    if missing := [k for k, f in fields.items() if k not in raw and f.default is dataclasses.MISSING]:
        required = [k for k, f in fields.items() if f.default is dataclasses.MISSING]
        raise SceneError(f"{where}: missing {', '.join(missing)}; a {op} edit needs {', '.join(required)}")
    kwargs = {}
    for key, f in fields.items():
        if key in raw:
            value = raw[key]
            optional = f.default is None  # null means "not given"
            kwargs[f.name] = None if value is None and optional else _PARSERS[key](value, f"{where}: {key}")
    return EDIT_TYPES[op](**kwargs)


def _edit_to_dict(edit: Edit) -> dict:
    out = {"op": edit.op}
    for f in dataclasses.fields(edit):
        value = getattr(edit, f.name)
        if f.default is dataclasses.MISSING or value != f.default:  # defaults stay implicit
            if isinstance(value, Coord):
                value = value.to_data()
            elif isinstance(value, float) and value.is_integer():
                value = int(value)  # yaw: 180, not 180.0
            out[_key(f)] = value
    return out


def _positions(edit: Edit) -> list[tuple[str, Coord]]:
    if isinstance(edit, Fill):
        return [("from", edit.from_), ("to", edit.to)]
    return [("pos", edit.pos)] if isinstance(edit, SetBlock | Summon | Teleport) else []


def _check_name(name: str, valid: tuple[str, ...], kind: str, where: str) -> None:
    if name in valid:
        return
    if name.startswith("minecraft:") and name[10:] in valid:
        raise SceneError(f"{where}: write {kind} {name[10:]!r} without 'minecraft:' (commands add it)")
    raise SceneError(f"{where}: unknown {kind} {name!r}; {_suggest(name, valid)}")


def _check_edit(edit: Edit, where: str) -> None:
    """Everything that can be checked before the player's position is known."""
    if isinstance(edit, SetBlock | Fill):
        _check_name(edit.block, BLOCKS, "block", where)
    if isinstance(edit, Summon):
        _check_name(edit.entity, ENTITY_TYPES, "entity", where)
        if edit.profession is not None and edit.entity != "villager":
            raise SceneError(f"{where}: a {edit.entity} has no profession; remove 'profession' (villagers only)")
        if edit.profession is not None:
            _check_name(edit.profession, PROFESSIONS, "profession", where)
        if edit.health is not None and not edit.health > 0:
            raise SceneError(f"{where}: health must be > 0, got {edit.health:g}; leave it out for the default")
        if edit.tag is not None and not _TAG.fullmatch(edit.tag):
            raise SceneError(f"{where}: tag {edit.tag!r} may use only letters, digits and _ . + -, e.g. 'target'")
    if isinstance(edit, Teleport) and edit.pitch is not None and not -90 <= edit.pitch <= 90:
        raise SceneError(f"{where}: pitch {edit.pitch:g} is outside [-90, 90]; 0 looks level, 90 straight down")
    if isinstance(edit, SetTime) and isinstance(edit.time, str) and edit.time not in TIME_NAMES:
        hint = _suggest(edit.time, TIME_NAMES)
        raise SceneError(f"{where}: unknown time {edit.time!r}; use ticks 0..{TICKS_PER_DAY} or a name: {hint}")
    if isinstance(edit, SetTime) and isinstance(edit.time, int) and not 0 <= edit.time <= TICKS_PER_DAY:
        raise SceneError(f"{where}: time {edit.time} is outside 0..{TICKS_PER_DAY} ticks (1000 is morning, 6000 noon)")
    for key, coord in _positions(edit):
        for axis, c in zip("xyz", coord.components):
            if c.relative:
                continue
            high = WORLD_HEIGHT if axis == "y" else WORLD_SIZE_XZ
            if not 0 <= c.value < high:
                raise SceneError(
                    f"{where}: {key} {axis} {c.value:g} is outside the world ({axis} in [0, {high})); "
                    "move it inside, or write it relative to the player, e.g. '~2'"
                )
            if isinstance(edit, SetBlock | Fill) and not c.value.is_integer():
                whole = math.floor(c.value)
                raise SceneError(f"{where}: {key} {axis} {c.value:g} is not a whole block coordinate; write {whole}")
    if isinstance(edit, Fill):
        # smallest size the box can have: exact unless an axis mixes absolute and relative ends
        ends = zip(edit.from_.components, edit.to.components)
        n_blocks = math.prod(math.floor(abs(a.value - b.value)) + 1 if a.relative == b.relative else 1 for a, b in ends)
        _check_fill_size(n_blocks, where)


def _check_fill_size(n_blocks: int, where: str) -> None:
    if n_blocks > MAX_FILL_BLOCKS:
        raise SceneError(f"{where}: fills {n_blocks} blocks, more than {MAX_FILL_BLOCKS}; split it into smaller boxes")


def _block_state(block: str) -> str:
    # leaves placed by command default to distance=7,persistent=false and decay without a trunk
    return f"minecraft:{block}[persistent=true]" if block.endswith("_leaves") else f"minecraft:{block}"


def _nbt_float(v: float) -> str:
    text = _fmt(v)
    return f"{text}f" if "." in text else f"{text}.0f"


def _command(edit: Edit) -> str:
    if isinstance(edit, SetBlock):
        return f"/setblock {edit.pos.to_command()} {_block_state(edit.block)}"
    if isinstance(edit, Fill):
        return f"/fill {edit.from_.to_command()} {edit.to.to_command()} {_block_state(edit.block)}"
    if isinstance(edit, Summon):
        nbt = ["NoAI:1b"] if edit.no_ai else []
        nbt.append(f"Rotation:[{_nbt_float(edit.yaw)},0.0f]")  # [yaw, pitch]
        if edit.health is not None:
            nbt.append(f"Health:{_nbt_float(edit.health)}")
        if edit.profession is not None:
            nbt.append(f'VillagerData:{{profession:"minecraft:{edit.profession}",level:1,type:"minecraft:plains"}}')
        if edit.tag is not None:
            nbt.append(f'Tags:["{edit.tag}"]')
        return f"/summon minecraft:{edit.entity} {edit.pos.to_command(exact=True)} {{{','.join(nbt)}}}"
    if isinstance(edit, Teleport):
        command = f"/tp @p {edit.pos.to_command(exact=True)}"
        if edit.yaw is None and edit.pitch is None:
            return command
        yaw, pitch = ("~" if v is None else _fmt(v) for v in (edit.yaw, edit.pitch))  # '~' keeps the current one
        return f"{command} {yaw} {pitch}"  # /tp takes yaw, then pitch
    return f"/time set {edit.time}"


# ----------------------------------------------------------------------------- the scene


@dataclass(frozen=True)
class Scene:
    """A named sequence of edits, applied in order; validated when built."""

    name: str
    description: str
    """What the scene shows and, for a control, which factor it removes."""
    edits: tuple[Edit, ...]

    def __post_init__(self):
        self.validate()

    @staticmethod
    def from_dict(data: object) -> "Scene":
        if not isinstance(data, dict):
            raise SceneError(f"a scene is a mapping with name, description and edits; got {type(data).__name__}")
        if unknown := sorted(set(data) - set(_SCENE_KEYS), key=str):
            raise SceneError(f"scene: unknown key {unknown[0]!r}; {_suggest(unknown[0], _SCENE_KEYS)}")
        name, description, edits = data.get("name"), data.get("description") or "", data.get("edits") or []
        if not isinstance(name, str) or not name:
            raise SceneError(f"scene: name {name!r} must be a non-empty string, e.g. name: villager_in_open")
        if not isinstance(description, str):
            raise SceneError(f"scene {name}: description must be text, got {description!r}")
        if not isinstance(edits, list):
            raise SceneError(f"scene {name}: edits must be a list of edits, each a mapping with an op")
        return Scene(name, description, tuple(_parse_edit(raw, i) for i, raw in enumerate(edits)))

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "edits": [_edit_to_dict(e) for e in self.edits]}

    def save(self, path: str | Path) -> None:
        """Write YAML or JSON, chosen by the suffix (.yaml, .yml, .json)."""
        path = Path(path)
        text = json.dumps(self.to_dict(), indent=2) + "\n" if _file_format(path) == "json" else self.to_yaml()
        path.write_text(text, encoding="utf-8")

    def to_yaml(self) -> str:
        """The scene as YAML text, as `save` writes it (`Scene.from_dict(yaml.safe_load(text))` gives it back)."""
        data = self.to_dict()
        # flow style for leaves: one line per position, block style for edits with positions
        dump = functools.partial(yaml.safe_dump, data, sort_keys=False, default_flow_style=None, width=100)
        text = dump(allow_unicode=True)
        if yaml.safe_load(text) != data:  # PyYAML folds a raw NEL (U+0085) into a space: escape everything
            text = dump(allow_unicode=False)
        return text

    def validate(self) -> None:
        """Check names, attributes, absolute coordinates, fill sizes, tags and command lengths."""
        if not self.name:
            raise SceneError("scene: needs a non-empty name")
        tags: dict[str, int] = {}
        for i, edit in enumerate(self.edits):
            where = f"edit {i} ({edit.op})"
            _check_edit(edit, where)
            if isinstance(edit, Summon) and edit.tag is not None:
                if edit.tag in tags:
                    raise SceneError(f"{where}: tag {edit.tag!r} is taken by edit {tags[edit.tag]}; give each its own")
                tags[edit.tag] = i
        self.to_commands()

    def to_commands(self) -> list[str]:
        """Minecraft 1.16 commands, one per edit in order, to send as chat from the player."""
        commands = [_command(edit) for edit in self.edits]
        for i, (edit, command) in enumerate(zip(self.edits, commands)):
            if len(command) > MAX_COMMAND_CHARS:
                raise SceneError(
                    f"edit {i} ({edit.op}): its command has {len(command)} characters, more than the "
                    f"{MAX_COMMAND_CHARS} chat allows; shorten the tag or the coordinates"
                )
        return commands


# ----------------------------------------------------------------------------- applying


@runtime_checkable
class SceneTarget(Protocol):
    """What a world offers for scenes to be applied to it natively (BlockWorld's `World` does)."""

    def player_position(self) -> tuple[float, float, float]:
        """The player's feet position, which `~` is relative to."""
        ...

    def set_block(self, x: int, y: int, z: int, block: str) -> None: ...

    def summon(
        self,
        entity_type: str,
        x: float,
        y: float,
        z: float,
        *,
        no_ai: bool,
        profession: str | None,
        health: float | None,
        yaw: float,
        tag: str | None,
    ) -> int:
        """Returns the new entity's id."""
        ...

    def teleport(self, x: float, y: float, z: float, pitch: float | None, yaw: float | None) -> None:
        """Moves the player's feet to (x, y, z); a None pitch or yaw keeps the current one."""
        ...

    def set_time(self, ticks: int) -> None: ...


_Points = tuple[tuple[float, float, float] | tuple[int, int, int], ...]


def _resolve(scene: Scene, start: tuple[float, float, float]) -> list[_Points]:
    """Every edit's positions (blocks floored), all checked against the world; `~` follows teleports."""
    origin, out = start, []
    for i, edit in enumerate(scene.edits):
        where = f"edit {i} ({edit.op})"
        points = []
        for key, coord in _positions(edit):
            p = coord.resolve(origin)
            if isinstance(edit, SetBlock | Fill):
                p = tuple(math.floor(v) for v in p)
            if not (0 <= p[0] < WORLD_SIZE_XZ and 0 <= p[1] < WORLD_HEIGHT and 0 <= p[2] < WORLD_SIZE_XZ):
                at, here = ", ".join(f"{v:g}" for v in p), ", ".join(f"{v:g}" for v in origin)
                raise SceneError(
                    f"{where}: {key} resolves to ({at}) from the player at ({here}), outside the world "
                    f"(x, z in [0, {WORLD_SIZE_XZ}), y in [0, {WORLD_HEIGHT})); bring it closer to the player"
                )
            points.append(p)
        if isinstance(edit, Fill):
            _check_fill_size(math.prod(abs(a - b) + 1 for a, b in zip(*points)), where)
        if isinstance(edit, Teleport):
            origin = points[0]  # later `~` are relative to where the player now stands, as in the game
        out.append(tuple(points))
    return out


def apply_scene(scene: Scene, target: SceneTarget) -> dict:
    """Apply the scene's edits in order to `target`, after checking all of them against it.

    Returns `origin` (the player's feet at the start), `summoned` (entity ids by tag, or by
    `edit_<index>` for untagged mobs) and `n_blocks_set`. An invalid scene changes nothing.
    """
    start = tuple(float(v) for v in target.player_position())
    resolved = _resolve(scene, start)
    summoned, n_blocks = {}, 0
    for i, (edit, points) in enumerate(zip(scene.edits, resolved)):
        if isinstance(edit, SetBlock):
            target.set_block(*points[0], edit.block)
            n_blocks += 1
        elif isinstance(edit, Fill):
            (x0, y0, z0), (x1, y1, z1) = points
            for x in range(min(x0, x1), max(x0, x1) + 1):
                for y in range(min(y0, y1), max(y0, y1) + 1):
                    for z in range(min(z0, z1), max(z0, z1) + 1):
                        target.set_block(x, y, z, edit.block)
                        n_blocks += 1
        elif isinstance(edit, Summon):
            summoned[edit.tag or f"edit_{i}"] = target.summon(
                edit.entity,
                *points[0],
                no_ai=edit.no_ai,
                profession=edit.profession,
                health=edit.health,
                yaw=edit.yaw,
                tag=edit.tag,
            )
        elif isinstance(edit, Teleport):
            target.teleport(*points[0], pitch=edit.pitch, yaw=edit.yaw)
        else:
            target.set_time(edit.ticks)
    return {"origin": list(start), "summoned": summoned, "n_blocks_set": n_blocks}


# ----------------------------------------------------------------------------- files and the library


def _file_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise ValueError(f"{path}: a scene file ends in .yaml, .yml or .json")
    return "json" if suffix == ".json" else "yaml"


MAX_SCENE_BYTES = 1 << 20
"""A scene file is a few kB; a larger one is refused before it is parsed."""
MAX_SCENE_NODES = 100_000
"""Values in a scene after YAML aliases are expanded (an alias bomb expands to billions)."""
MAX_SCENE_DEPTH = 32
"""Nesting of a scene's values (a scene has 4 levels)."""

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict = 2, 40, 40, 4, 4


def _short(raw: object) -> str:
    """A value as a short prefix for an error message (bounded work, whatever its size or sharing)."""
    return _REPR.repr(raw)[:80]


def _check_yaml_size(node: yaml.Node, where: str) -> None:
    """Refuse a YAML document whose values, expanded through aliases, are too many or too deep (before building
    them: a billion-laughs file is a few hundred bytes)."""
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded count, depth), for shared (aliased) nodes

    def visit(node: yaml.Node, depth: int) -> tuple[int, int]:
        if depth > MAX_SCENE_DEPTH:
            raise SceneError(f"{where}: values nested over {MAX_SCENE_DEPTH} levels deep; a scene has 4")
        if id(node) in sizes:
            return sizes[id(node)]
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            children = []
        count, deepest = 1, 0
        for child in children:
            c, d = visit(child, depth + 1)
            count, deepest = count + c, max(deepest, d + 1)
            if count > MAX_SCENE_NODES:
                raise SceneError(
                    f"{where}: over {MAX_SCENE_NODES:,} values once YAML aliases are expanded; write the scene out "
                    "(a scene has tens of values)"
                )
        sizes[id(node)] = (count, deepest)
        return count, deepest

    visit(node, 0)


def _load_yaml(text: str, where: str):
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_yaml_size(node, where)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_scene(path: str | Path) -> Scene:
    """Read and validate a scene file (YAML or JSON by suffix)."""
    path = Path(path)
    file_format = _file_format(path)
    if not path.is_file():
        builtins = ", ".join(list_builtin_scenes())
        raise FileNotFoundError(f"{path}: no such scene file (built-in scenes load by name: {builtins})")
    size = path.stat().st_size
    if size > MAX_SCENE_BYTES:
        raise SceneError(f"{path}: {size:,} bytes is far too large for a scene file (at most {MAX_SCENE_BYTES:,})")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if file_format == "json" else _load_yaml(text, str(path))
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise SceneError(f"{path}: not valid {file_format.upper()}: {e}") from e
    try:
        return Scene.from_dict(data)
    except SceneError as e:
        raise SceneError(f"{path}: {e}") from None


def list_builtin_scenes() -> list[str]:
    return sorted(p.stem for p in LIBRARY_DIR.glob("*.yaml"))


def load_builtin_scene(name: str) -> Scene:
    names = list_builtin_scenes()
    if name not in names:
        raise KeyError(f"no built-in scene {name!r}; {_suggest(name, names)}")
    return load_scene(LIBRARY_DIR / f"{name}.yaml")


def as_scene(scene: "Scene | dict | str | Path") -> Scene:
    """A Scene from a Scene, a dict, a built-in scene's name, or a file path."""
    if isinstance(scene, Scene):
        return scene
    if isinstance(scene, dict):
        return Scene.from_dict(scene)
    if isinstance(scene, str) and "/" not in scene and Path(scene).suffix == "":
        return load_builtin_scene(scene)
    return load_scene(scene)
