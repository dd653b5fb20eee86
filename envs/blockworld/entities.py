"""Mobs: villagers (dressed by profession), cows, pigs, sheep, zombies, as boxes with Minecraft's proportions."""

from dataclasses import dataclass, field

import numpy as np

# Pattern ids the renderer knows: flat colour, cow patches, wool.
FLAT, PATCHES, WOOL = 0, 1, 2
WHITE = (0.92, 0.92, 0.90)

# type: (hitbox width, hitbox height, max health)
BODY = {
    "villager": (0.6, 1.95, 20.0),
    "zombie": (0.6, 1.95, 20.0),
    "cow": (0.9, 1.4, 10.0),
    "pig": (0.9, 0.9, 10.0),
    "sheep": (0.9, 1.3, 8.0),
}

SKIN = (0.74, 0.55, 0.43)
ROBE = {
    # Minecraft 1.16 plains villagers: a brown robe, the profession's clothing on top.
    "none": ((0.47, 0.33, 0.20), None),
    "farmer": ((0.47, 0.33, 0.20), (0.86, 0.76, 0.42)),  # brown robe, straw hat
    "librarian": ((0.92, 0.91, 0.87), (0.70, 0.15, 0.12)),  # white robe, red trim
    "cleric": ((0.45, 0.20, 0.55), (0.80, 0.65, 0.15)),  # purple robe, gold trim
    "nitwit": ((0.30, 0.55, 0.25), None),  # green robe
    "armorer": ((0.20, 0.20, 0.22), (0.45, 0.45, 0.48)),
    "butcher": ((0.92, 0.92, 0.90), (0.70, 0.12, 0.12)),
    "cartographer": ((0.88, 0.86, 0.78), (0.25, 0.40, 0.70)),
    "fisherman": ((0.62, 0.52, 0.28), (0.30, 0.45, 0.30)),
    "fletcher": ((0.47, 0.33, 0.20), (0.25, 0.55, 0.25)),
    "leatherworker": ((0.50, 0.30, 0.15), (0.35, 0.20, 0.10)),
    "mason": ((0.50, 0.50, 0.52), (0.30, 0.30, 0.32)),
    "shepherd": ((0.75, 0.60, 0.40), (0.55, 0.40, 0.25)),
    "toolsmith": ((0.35, 0.35, 0.38), (0.20, 0.20, 0.22)),
    "weaponsmith": ((0.15, 0.15, 0.16), (0.35, 0.35, 0.37)),
}


@dataclass
class Entity:
    """A mob. `pos` is the feet centre; yaw follows Minecraft (0 faces +z)."""

    id: int
    type: str
    pos: np.ndarray
    yaw: float = 0.0
    no_ai: bool = False
    profession: str | None = None
    tag: str | None = None
    health: float = 0.0
    vel: np.ndarray = field(default_factory=lambda: np.zeros(3))
    on_ground: bool = False
    hurt_ticks: int = 0
    """Ticks left of the red flash after damage (and of Minecraft's 10-tick invulnerability)."""
    death_ticks: int = -1
    """-1 while alive; counts the 20 ticks of the death animation, then the entity is removed."""
    wander_ticks: int = 0
    wander_yaw: float = 0.0
    attack_cooldown: int = 0

    def __post_init__(self):
        if self.health <= 0:
            self.health = BODY[self.type][2]

    @property
    def width(self) -> float:
        return BODY[self.type][0]

    @property
    def height(self) -> float:
        return BODY[self.type][1]

    @property
    def alive(self) -> bool:
        return self.death_ticks < 0


def _box(lo, hi, color, pattern=FLAT):
    """A model box in entity space (x right, y up, z forward; units of 1/16 block) -> metres."""
    lo, hi = np.array(lo, float) / 16, np.array(hi, float) / 16
    return (lo + hi) / 2, (hi - lo) / 2, color, pattern


def _eyes(y0, y1, z, pupil, half_width=3.2, inner=0.8):
    """Two eyes on a face at depth z: white outer halves, coloured inner halves (the pupils)."""
    mid = (half_width + inner) / 2
    boxes = []
    for sign in (-1, 1):
        boxes.append(
            _box((min(sign * half_width, sign * mid), y0, z), (max(sign * half_width, sign * mid), y1, z + 0.3), WHITE)
        )
        boxes.append(_box((min(sign * mid, sign * inner), y0, z), (max(sign * mid, sign * inner), y1, z + 0.3), pupil))
    return boxes


def model_boxes(entity: Entity) -> list[tuple[np.ndarray, np.ndarray, tuple, int]]:
    """The entity's boxes (centre, half size, colour, pattern) in its own frame, feet at the origin."""
    t = entity.type
    if t in ("villager", "zombie"):
        if t == "villager":
            robe, trim = ROBE.get(entity.profession or "none", ROBE["none"])
            skin, legs, arms = SKIN, robe, robe
        else:
            skin, robe, trim, legs, arms = (0.33, 0.55, 0.30), (0.15, 0.55, 0.60), None, (0.20, 0.22, 0.55), None
        top = 34 if t == "villager" else 32  # a villager's head is 10 px tall, a zombie's 8
        boxes = [
            _box((-4, 0, -2), (4, 12, 2), legs),
            _box((-4, 12, -3), (4, 24, 3), robe),  # body
            _box((-4, 24, -4), (4, top, 4), skin),  # head
            *_eyes(top - 6, top - 4, 4, (0.20, 0.45, 0.20) if t == "villager" else (0.05, 0.05, 0.05)),
        ]
        if t == "villager":
            boxes += [
                _box((-1, 23, 4), (1, 27, 6), skin),  # the nose
                _box((-4.5, 6, -3.3), (4.5, 24, 3.3), robe),  # robe over the legs
                _box((-6, 15, 1), (6, 19, 5), arms),  # crossed arms
            ]
            if trim is not None:
                boxes.append(_box((-4.6, 20, -3.4), (4.6, 21.5, 3.4), trim))
            if entity.profession == "farmer":
                boxes.append(_box((-8, 33, -8), (8, 34.5, 8), trim))  # straw hat brim
                boxes.append(_box((-4.3, 34, -4.3), (4.3, 37, 4.3), trim))
            # Minecraft draws villagers at 15/16 scale: 34 px -> 1.99 blocks, inside the 1.95 hitbox + hat
            return [(c * 0.9375, h * 0.9375, color, pattern) for c, h, color, pattern in boxes]
        else:
            boxes += [
                _box((-8, 20, -2), (-4, 24, 12), skin),  # arms reaching forward
                _box((4, 20, -2), (8, 24, 12), skin),
            ]
        return boxes
    if t == "cow":
        hide, white = (0.26, 0.20, 0.16), (0.92, 0.92, 0.90)
        return [
            _box((-6, 12, -9), (6, 22, 9), hide, PATCHES),
            _box((-4, 16, 9), (4, 24, 15), hide, PATCHES),
            _box((-2.5, 16, 15), (2.5, 19, 16), white),  # muzzle
            *_eyes(20.5, 22, 15, (0.05, 0.05, 0.05), half_width=3.5, inner=1.5),
            *[_box((x - 2, 0, z - 2), (x + 2, 12, z + 2), hide) for x in (-4, 4) for z in (-6, 6)],
        ]
    if t == "pig":
        pink = (0.94, 0.64, 0.62)
        return [
            _box((-5, 6, -8), (5, 14, 8), pink),
            _box((-4, 8, 8), (4, 16, 14), pink),
            _box((-2, 9, 14), (2, 12, 15), (0.90, 0.52, 0.52)),  # snout
            *_eyes(13, 14.5, 14, (0.05, 0.05, 0.05), half_width=3.5, inner=1.5),
            *[_box((x - 2, 0, z - 2), (x + 2, 6, z + 2), pink) for x in (-3, 3) for z in (-5, 5)],
        ]
    if t == "sheep":
        wool, face = (0.93, 0.93, 0.91), (0.55, 0.45, 0.40)
        return [
            _box((-6, 9, -8), (6, 19, 8), wool, WOOL),
            _box((-3, 14, 8), (3, 20, 14), face),
            _box((-3.5, 18, 8), (3.5, 21, 11), wool, WOOL),
            *[_box((x - 2, 0, z - 2), (x + 2, 10, z + 2), face) for x in (-3, 3) for z in (-5, 5)],
        ]
    raise ValueError(f"no model for entity type {t!r}")
