"""BlockWorld's state and rules: terrain from a seed, the player, mobs, breaking and placing, one tick at a time.

`World` also implements the scene protocol (`vptlens.envs.scenes.SceneTarget`): set
blocks, summon mobs, teleport the player, set the time.

Longer than ~500 lines on purpose: the world's state and every rule that changes it (physics,
breaking, combat, food) share one tick; split, each part would reach into the others' state.
"""

import functools
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from vptlens.envs.blockworld import physics
from vptlens.envs.blockworld.accel import Accel
from vptlens.envs.blockworld.entities import BODY, Entity, model_boxes
from vptlens.envs.blockworld.render import raycast_block, raycast_boxes
from vptlens.envs.blockworld.textures import PLANT, break_ticks, collides, drop_of, occludes, render_kinds
from vptlens.envs.vocab import BLOCK_ID, BLOCKS, ENTITY_TYPES, PROFESSIONS, TICKS_PER_DAY, WORLD_HEIGHT, WORLD_SIZE_XZ

EYE_HEIGHT = 1.62
PLAYER_HALF_WIDTH = 0.3
PLAYER_HEIGHT = 1.8
BLOCK_REACH = 4.5
ENTITY_REACH = 3.0
SEA_LEVEL = 20
SWING_TICKS = 6
TERRAINS = ("hills", "forest", "flat")
"""'hills': seeded hills with patches of forest, plains and beaches; 'forest': the same hills wooded
everywhere; 'flat': a superflat grass world (controlled experiments)."""
EXHAUSTION = {"sprint_per_block": 0.1, "swim_per_block": 0.01, "jump": 0.05, "sprint_jump": 0.2, "attack": 0.1,
              "break_block": 0.005, "hurt": 0.1, "heal_per_point": 6.0}  # fmt: skip
"""Minecraft 1.16's food exhaustion (Java edition, per action); 4.0 exhaustion costs a saturation or food point."""
SPRINT_MIN_FOOD = 6
"""Sprinting needs more than this much food."""
ITEMS: tuple[str, ...] = tuple(name for name in BLOCKS if name not in ("air", "water"))
"""Everything that can be in the inventory."""
FACE_NAMES = {(0, 1): "east", (0, -1): "west", (1, 1): "up", (1, -1): "down", (2, 1): "south", (2, -1): "north"}


@dataclass
class Player:
    pos: np.ndarray
    yaw: float = 0.0
    pitch: float = 0.0
    vel: np.ndarray = field(default_factory=lambda: np.zeros(3))
    on_ground: bool = False
    health: float = 20.0
    food: float = 20.0
    saturation: float = 5.0
    exhaustion: float = 0.0
    food_timer: int = 0
    """Ticks towards the next natural heal (or starvation damage), as Minecraft's FoodStats counts them."""
    hotbar: list = field(default_factory=lambda: [["", 0] for _ in range(9)])
    selected: int = 0
    fall_distance: float = 0.0
    break_target: tuple | None = None
    break_progress: int = 0
    break_cooldown: int = 0
    ticks_since_swing: int = 100
    swing_ticks: int = -1
    """Ticks into the arm's swing (6 long), -1 when at rest; holding attack swings it again and again."""
    use_cooldown: int = 0
    prev_drop: bool = False

    @property
    def swing(self) -> float:
        """How far through its swing the arm is, in [0, 1), or -1 at rest."""
        return self.swing_ticks / SWING_TICKS if self.swing_ticks >= 0 else -1.0

    def count(self, item: str) -> int:
        return sum(n for name, n in self.hotbar if name == item)

    def add_item(self, item: str, n: int = 1) -> int:
        """Stack into the hotbar (64 per slot); returns how many fit."""
        added = 0
        for slot in sorted(range(9), key=lambda s: (self.hotbar[s][0] != item, s)):
            name, have = self.hotbar[slot]
            if name in (item, "") and have < 64:
                take = min(64 - have, n - added)
                self.hotbar[slot] = [item, have + take]
                added += take
            if added == n:
                break
        return added


def _value_noise(rng: np.random.Generator, size: int, cell: int) -> np.ndarray:
    grid = rng.random((size // cell + 3, size // cell + 3)).astype(np.float32)
    up = cv2.resize(grid, (grid.shape[1] * cell, grid.shape[0] * cell), interpolation=cv2.INTER_CUBIC)
    return up[cell : cell + size, cell : cell + size]


LOG_IDS = frozenset(i for i, name in enumerate(BLOCKS) if name.endswith("_log"))
"""Block ids of tree trunks (oak and birch logs)."""


class World:
    """The voxel grid `blocks[x, y, z]`, the player, the mobs and the time of day."""

    def __init__(self, seed: int, terrain: str = "hills", mobs: bool = True):
        self.rng = np.random.default_rng(seed)
        self._logs: np.ndarray | None = None  # positions of every log block, found again after a log changes
        self.blocks = np.zeros((WORLD_SIZE_XZ, WORLD_HEIGHT, WORLD_SIZE_XZ), np.uint8)
        self.kinds = render_kinds()
        self.solid = collides()
        self.entities: dict[int, Entity] = {}
        self._next_id = 1
        self.time = 1000  # morning
        self.player = Player(pos=np.array([WORLD_SIZE_XZ / 2, 40.0, WORLD_SIZE_XZ / 2]))
        self.events: list[dict] = []
        if terrain in ("hills", "forest"):
            self._generate(mobs, forest_everywhere=terrain == "forest")
        elif terrain == "flat":
            self._flat(mobs)
        else:
            raise ValueError(f"unknown terrain {terrain!r}; use {' or '.join(map(repr, TERRAINS))}")
        self.accel = Accel(self.blocks, BLOCK_ID["water"], occludes())
        """The renderer's grids; `_put` keeps them in step."""

    def _put(self, x: int, y: int, z: int, block_id: int) -> None:
        """Change one block, and mark it for the renderer's grids."""
        if block_id in LOG_IDS or self.blocks[x, y, z] in LOG_IDS:
            self._logs = None
        self.blocks[x, y, z] = block_id
        self.accel.mark(x, y, z)

    def nearest_log(self) -> dict | None:
        """The log block (a tree trunk) nearest the player's eyes, or None if the world has none.

        `distance` is from the eyes to the block's closest point (0 inside it), in blocks: the
        label behind "distance to the nearest tree".
        """
        if self._logs is None:
            self._logs = np.argwhere(np.isin(self.blocks, list(LOG_IDS)))
        if len(self._logs) == 0:
            return None
        eye = self.eye
        distance = np.linalg.norm(np.clip(eye, self._logs, self._logs + 1) - eye, axis=1)
        i = int(np.argmin(distance))
        x, y, z = (int(v) for v in self._logs[i])
        return {"block": BLOCKS[self.blocks[x, y, z]], "pos": [x, y, z], "distance": float(distance[i])}

    # ------------------------------------------------------------------ terrain

    def _flat(self, mobs: bool) -> None:
        """A superflat world: bedrock, stone, dirt, and grass at y = SEA_LEVEL - 1; the player in the middle."""
        self.blocks[:, 0] = BLOCK_ID["bedrock"]
        self.blocks[:, 1 : SEA_LEVEL - 3] = BLOCK_ID["stone"]
        self.blocks[:, SEA_LEVEL - 3 : SEA_LEVEL - 1] = BLOCK_ID["dirt"]
        self.blocks[:, SEA_LEVEL - 1] = BLOCK_ID["grass_block"]
        self.player.pos = np.array([WORLD_SIZE_XZ / 2 + 0.5, float(SEA_LEVEL), WORLD_SIZE_XZ / 2 + 0.5])
        if mobs:
            self._spawn_animals()

    def _generate(self, mobs: bool, forest_everywhere: bool = False) -> None:
        """Seeded hills; `forest_everywhere` plants the forest's tree density on every grass column (the
        same hills, water and beaches as 'hills' for a seed, so the player always spawns among trees)."""
        rng, n = self.rng, WORLD_SIZE_XZ
        height = 21 + 9 * (_value_noise(rng, n, 32) - 0.5) * 2 + 2.5 * (_value_noise(rng, n, 8) - 0.5) * 2
        height = np.clip(np.round(height), 6, WORLD_HEIGHT - 16).astype(int)
        forest = (_value_noise(rng, n, 40) > 0.55) | forest_everywhere
        ids = BLOCK_ID
        ys = np.arange(WORLD_HEIGHT)[None, None, :]
        h = height[:, :, None]
        grid = np.where(
            ys < h - 3, ids["stone"], np.where(ys < h, ids["dirt"], np.where(ys == h, ids["grass_block"], 0))
        )
        near_water = cv2.dilate((height < SEA_LEVEL).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        beach = near_water & (height <= SEA_LEVEL + 1)
        grid = np.where(beach[:, :, None] & (ys <= h) & (ys >= h - 3), ids["sand"], grid)
        grid = np.where((ys > h) & (ys <= SEA_LEVEL), ids["water"], grid)
        grid[:, :, 0] = ids["bedrock"]
        self.blocks[...] = grid.transpose(0, 2, 1).astype(np.uint8)
        self.height = height
        # vegetation
        for x in range(2, n - 2):
            for z in range(2, n - 2):
                y = int(height[x, z])
                if self.blocks[x, y, z] != ids["grass_block"]:
                    continue
                r = rng.random()
                if r < (0.035 if forest[x, z] else 0.003):
                    self._tree(x, y + 1, z, birch=rng.random() < 0.3)
                elif r < 0.12 and self.blocks[x, y + 1, z] == 0:
                    self.blocks[x, y + 1, z] = ids["grass"] if r < 0.10 else ids[rng.choice(["dandelion", "poppy"])]
        self._place_player_on_land()
        if mobs:
            self._spawn_animals()

    def _tree(self, x: int, y: int, z: int, birch: bool = False) -> None:
        ids, b = BLOCK_ID, self.blocks
        near = b[x - 2 : x + 3, y : y + 4, z - 2 : z + 3]
        if y + 7 >= WORLD_HEIGHT or np.isin(near, (ids["oak_log"], ids["birch_log"])).any():
            return  # too high, or another trunk too close
        log, leaves = (ids["birch_log"], ids["birch_leaves"]) if birch else (ids["oak_log"], ids["oak_leaves"])
        trunk = int(self.rng.integers(4, 7))
        top = y + trunk - 1
        for dy, radius in ((-2, 2), (-1, 2), (0, 1), (1, 1)):
            for dx in range(-radius, radius + 1):
                for dz in range(-radius, radius + 1):
                    corner = abs(dx) == radius and abs(dz) == radius
                    if corner and (radius == 1 and dy == 1 or self.rng.random() < 0.5):
                        continue
                    if b[x + dx, top + dy, z + dz] == 0 or self.kinds[b[x + dx, top + dy, z + dz]] == PLANT:
                        b[x + dx, top + dy, z + dz] = leaves
        b[x, y : y + trunk, z] = log
        b[x, y - 1, z] = ids["dirt"]

    def surface_y(self, x: int, z: int) -> int:
        """The y just above the highest solid or water block of a column."""
        column = self.blocks[x, :, z]
        filled = np.nonzero(self.solid[column] | (column == BLOCK_ID["water"]))[0]
        return int(filled[-1]) + 1 if len(filled) else 0

    def _place_player_on_land(self) -> None:
        c = WORLD_SIZE_XZ // 2
        for radius in range(0, 40):
            for dx in range(-radius, radius + 1):
                for dz in (-radius, radius):
                    x, z = c + dx, c + dz
                    y = self.surface_y(x, z)
                    ground = self.blocks[x, y - 1, z] in (BLOCK_ID["grass_block"], BLOCK_ID["sand"], BLOCK_ID["dirt"])
                    if ground and y + 2 < WORLD_HEIGHT and not self.solid[self.blocks[x, y : y + 2, z]].any():
                        self.player.pos = np.array([x + 0.5, float(y), z + 0.5])
                        self.player.yaw = float(self.rng.uniform(-180, 180))
                        return

    def _spawn_animals(self) -> None:
        kinds = ["cow", "pig", "sheep", "cow", "pig", "sheep", "villager"]
        for _ in range(int(self.rng.integers(4, 9))):
            for _try in range(20):
                x = int(np.clip(self.player.pos[0] + self.rng.integers(-24, 25), 2, WORLD_SIZE_XZ - 3))
                z = int(np.clip(self.player.pos[2] + self.rng.integers(-24, 25), 2, WORLD_SIZE_XZ - 3))
                y = self.surface_y(x, z)
                if (
                    self.blocks[x, y - 1, z] == BLOCK_ID["grass_block"]
                    and not self.solid[self.blocks[x, y : y + 2, z]].any()
                ):
                    kind = kinds[int(self.rng.integers(len(kinds)))]
                    prof = (
                        str(self.rng.choice(["farmer", "librarian", "none", "cleric"])) if kind == "villager" else None
                    )
                    self.summon(kind, x + 0.5, float(y), z + 0.5, no_ai=False, profession=prof, health=None,
                                yaw=float(self.rng.uniform(-180, 180)), tag=None)  # fmt: skip
                    break

    # ------------------------------------------------------------------ the scene protocol

    def player_position(self) -> tuple[float, float, float]:
        return tuple(float(v) for v in self.player.pos)

    def set_block(self, x: int, y: int, z: int, block: str) -> None:
        if block not in BLOCK_ID:
            raise ValueError(f"unknown block {block!r}; known: {', '.join(BLOCKS)}")
        if not (0 <= x < WORLD_SIZE_XZ and 0 <= y < WORLD_HEIGHT and 0 <= z < WORLD_SIZE_XZ):
            raise ValueError(f"block ({x}, {y}, {z}) is outside the world")
        self._put(x, y, z, BLOCK_ID[block])

    def summon(self, entity_type: str, x: float, y: float, z: float, *, no_ai: bool = False,
               profession: str | None = None, health: float | None = None, yaw: float = 0.0,
               tag: str | None = None) -> int:  # fmt: skip
        if entity_type not in ENTITY_TYPES:
            raise ValueError(f"unknown entity {entity_type!r}; known: {', '.join(ENTITY_TYPES)}")
        if profession is not None and (entity_type != "villager" or profession not in PROFESSIONS):
            raise ValueError(f"profession {profession!r} is only for villagers, one of {', '.join(PROFESSIONS)}")
        entity = Entity(self._next_id, entity_type, np.array([x, y, z], float), yaw=yaw, no_ai=no_ai,
                        profession=profession if entity_type == "villager" else None, tag=tag,
                        health=health or 0.0)  # fmt: skip
        self.entities[entity.id] = entity
        self._next_id += 1
        return entity.id

    def teleport(self, x: float, y: float, z: float, pitch: float | None = None, yaw: float | None = None) -> None:
        self.player.pos = np.array([x, y, z], float)
        self.player.vel[:] = 0
        self.player.fall_distance = 0.0
        if pitch is not None:
            self.player.pitch = float(np.clip(pitch, -90, 90))
        if yaw is not None:
            self.player.yaw = float(yaw)

    def set_time(self, ticks: int) -> None:
        self.time = int(ticks) % TICKS_PER_DAY

    # ------------------------------------------------------------------ geometry

    @property
    def eye(self) -> np.ndarray:
        return self.player.pos + np.array([0.0, EYE_HEIGHT, 0.0])

    def camera_basis(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unit forward, right and up vectors of the player's view (Minecraft's yaw and pitch)."""
        yaw, pitch = math.radians(self.player.yaw), math.radians(self.player.pitch)
        fwd = np.array([-math.sin(yaw) * math.cos(pitch), -math.sin(pitch), math.cos(yaw) * math.cos(pitch)])
        right = np.array([-math.cos(yaw), 0.0, -math.sin(yaw)])
        up = np.cross(right, fwd)
        return fwd, right, up

    @property
    def sun_direction(self) -> np.ndarray:
        angle = 2 * math.pi * self.time / TICKS_PER_DAY  # 0: sunrise in the east, 6000: noon
        return np.array([math.cos(angle), math.sin(angle), 0.0])

    @property
    def daylight(self) -> float:
        return float(np.clip(0.5 + 2.5 * self.sun_direction[1], 0.0, 1.0))

    def entity_boxes(self) -> dict[str, np.ndarray]:
        """Every mob's model boxes in world space, as the renderer and ray casts take them."""
        if not self.entities:
            return _NO_BOXES
        models = [_model_arrays(e.type, e.profession) for e in self.entities.values()]
        counts = np.array([len(m["half"]) for m in models])
        ends = np.cumsum(counts)
        yaw = np.radians([e.yaw for e in self.entities.values()]).repeat(counts)
        c, s = np.cos(yaw), np.sin(yaw)
        local = np.concatenate([m["center"] for m in models])
        pos = np.array([e.pos for e in self.entities.values()]).repeat(counts, axis=0)
        hurt = np.array([e.hurt_ticks > 0 or not e.alive for e in self.entities.values()]).repeat(counts)
        center = pos + np.stack([local[:, 0] * c - local[:, 2] * s, local[:, 1], local[:, 0] * s + local[:, 2] * c], 1)
        return {
            "center": center,
            "half": np.concatenate([m["half"] for m in models]),
            "cos": c,
            "sin": s,
            "color": np.concatenate([m["color"] for m in models]),
            "pattern": np.concatenate([m["pattern"] for m in models]),
            "tint": np.where(hurt[:, None], _HURT_TINT, 1.0),
            "owner": np.arange(len(models)).repeat(counts),
            "start": ends - counts,
            "end": ends,
            "ids": np.array(list(self.entities), np.int64),
        }

    def target(self, boxes: dict[str, np.ndarray] | None = None, max_distance: float = 64.0) -> dict:
        """What the crosshair is on: a block or a mob, with distance from the eye (any distance up to max)."""
        fwd, _, _ = self.camera_basis()
        bx, by, bz, axis, sign, t_block = raycast_block(self.blocks, self.kinds, self.eye, fwd, max_distance)
        boxes = self.entity_boxes() if boxes is None else boxes
        owner, t_ent = raycast_boxes(self.eye, fwd, boxes["center"], boxes["half"], boxes["cos"], boxes["sin"],
                                     boxes["owner"], max_distance)  # fmt: skip
        if owner >= 0 and (bx < 0 or t_ent < t_block):
            entity = self.entities[int(boxes["ids"][owner])]
            return {"kind": "entity", "entity_id": entity.id, "entity_type": entity.type,
                    "profession": entity.profession, "distance": float(t_ent)}  # fmt: skip
        if bx >= 0:
            return {"kind": "block", "block": BLOCKS[self.blocks[bx, by, bz]], "pos": [int(bx), int(by), int(bz)],
                    "face": FACE_NAMES[(int(axis), int(sign))], "distance": float(t_block)}  # fmt: skip
        return {"kind": "none", "distance": None}

    # ------------------------------------------------------------------ one tick

    def tick(self, action: dict) -> list[dict]:
        """Advance one game tick (1/20 s) under a MineRL action; returns the tick's events."""
        self.events = []
        p = self.player
        pitch_delta, yaw_delta = (float(v) for v in np.asarray(action.get("camera", (0.0, 0.0))).reshape(2))
        p.pitch = float(np.clip(p.pitch + pitch_delta, -90.0, 90.0))
        p.yaw = float((p.yaw + yaw_delta + 180.0) % 360.0 - 180.0)
        self._move_player(action)
        return self._act_and_advance(action)

    def advance(self, pose: "tuple | list | np.ndarray", action: dict | None = None) -> list[dict]:
        """One tick with the player carried to a recorded pose (x, y, z, pitch, yaw) instead of moved by `action`;
        the rest of `action` acts as in `tick` (attack, use, drop, hotbar), then mobs, food and time advance. A
        recorded episode's camera path and actions, replayed in another world (counterfactual frames)."""
        self.events = []
        x, y, z, pitch, yaw = (float(v) for v in pose)
        self.teleport(x, y, z, pitch, yaw)
        return self._act_and_advance(action or {})

    def _act_and_advance(self, action: dict) -> list[dict]:
        """The rest of a tick once the player stands where it ends: hotbar, attack, use, drop; mobs, food, time."""
        for i in range(1, 10):
            if action.get(f"hotbar.{i}", 0):
                self.player.selected = i - 1
        target = self.target(self.entity_boxes(), max_distance=BLOCK_REACH)
        self._attack(action, target)
        self._use(action, target)
        self._drop(action)
        self._tick_entities()
        self._tick_food()
        self.time = (self.time + 1) % TICKS_PER_DAY
        return self.events

    def _in_water(self, pos: np.ndarray, height: float) -> bool:
        x, z = int(math.floor(pos[0])), int(math.floor(pos[2]))
        if not (0 <= x < WORLD_SIZE_XZ and 0 <= z < WORLD_SIZE_XZ):
            return False
        for y in (int(math.floor(pos[1] + 0.1)), int(math.floor(pos[1] + height * 0.5))):
            if 0 <= y < WORLD_HEIGHT and self.blocks[x, y, z] == BLOCK_ID["water"]:
                return True
        return False

    def _move_player(self, action: dict) -> None:
        p = self.player
        forward = float(action.get("forward", 0)) - float(action.get("back", 0))
        strafe = float(action.get("left", 0)) - float(action.get("right", 0))
        sneak = bool(action.get("sneak", 0))
        sprint = bool(action.get("sprint", 0)) and p.food > SPRINT_MIN_FOOD
        in_water = self._in_water(p.pos, PLAYER_HEIGHT)
        if action.get("jump", 0):
            if in_water:
                p.vel[1] += 0.04
            elif p.on_ground:
                p.vel[1] = physics.JUMP_VELOCITY
                if sprint and forward > 0:  # sprint-jumping pushes forward
                    yaw = math.radians(p.yaw)
                    p.vel[0] -= math.sin(yaw) * 0.2
                    p.vel[2] += math.cos(yaw) * 0.2
                    self._exhaust(EXHAUSTION["sprint_jump"])
                else:
                    self._exhaust(EXHAUSTION["jump"])
        p.vel[0], p.vel[2] = physics.accelerate(p.vel, p.yaw, forward, strafe, p.on_ground, sprint, sneak, in_water)
        y_before = p.pos[1]
        new_pos, new_vel, on_ground, _ = physics.move_box(self.blocks, self.solid, p.pos, p.vel,
                                                          PLAYER_HALF_WIDTH, PLAYER_HEIGHT)  # fmt: skip
        moved = float(np.hypot(new_pos[0] - p.pos[0], new_pos[2] - p.pos[2]))
        if in_water:
            self._exhaust(EXHAUSTION["swim_per_block"] * moved)
        elif sprint and forward > 0:
            self._exhaust(EXHAUSTION["sprint_per_block"] * moved)
        p.pos, p.vel = new_pos, physics.after_move(new_vel, on_ground, in_water)
        if in_water:
            p.fall_distance = 0.0
        elif new_pos[1] < y_before:
            p.fall_distance += y_before - new_pos[1]
        if on_ground:
            if p.fall_distance > 3.0:
                self._hurt_player(float(math.ceil(p.fall_distance - 3.0)), "fall")
            p.fall_distance = 0.0
        p.on_ground = on_ground

    def _attack(self, action: dict, target: dict) -> None:
        p = self.player
        p.ticks_since_swing += 1
        p.break_cooldown = max(0, p.break_cooldown - 1)
        if p.swing_ticks >= 0:
            p.swing_ticks = p.swing_ticks + 1 if p.swing_ticks + 1 < SWING_TICKS else -1
        if action.get("attack", 0) and p.swing_ticks < 0:
            p.swing_ticks = 0
        if not action.get("attack", 0):
            p.break_target, p.break_progress = None, 0
            return
        if target["kind"] == "entity" and target["distance"] <= ENTITY_REACH:
            p.break_target, p.break_progress = None, 0
            if p.ticks_since_swing >= 5:  # a fist recharges in 5 ticks (attack speed 4)
                strength = min(1.0, (p.ticks_since_swing + 0.5) / 5)
                p.ticks_since_swing = 0
                self.hurt(target["entity_id"], 0.2 + strength**2 * 0.8, source=p.pos)
                self._exhaust(EXHAUSTION["attack"])
            return
        if target["kind"] != "block" or p.break_cooldown > 0:
            p.break_target, p.break_progress = None, 0
            return
        pos = tuple(target["pos"])
        if pos != p.break_target:
            p.break_target, p.break_progress = pos, 0
        p.break_progress += 1
        needed = break_ticks(target["block"])
        if needed is not None and p.break_progress >= needed:
            self._put(*pos, BLOCK_ID["air"])
            self._exhaust(EXHAUSTION["break_block"])
            self.events.append({"type": "block_broken", "block": target["block"], "pos": list(pos)})
            item = drop_of(target["block"])
            if item is not None and p.add_item(item):
                self.events.append({"type": "item_collected", "item": item, "count": 1})
            p.break_target, p.break_progress, p.break_cooldown = None, 0, 5

    def _exhaust(self, amount: float) -> None:
        self.player.exhaustion = min(40.0, self.player.exhaustion + amount)

    def _hurt_player(self, damage: float, cause: str, **extra) -> None:
        """Damage the player; a mob's hit also costs food exhaustion, a fall or starvation does not (they bypass
        armour, and Minecraft's armour-bypassing damage sources carry no exhaustion)."""
        p = self.player
        p.health = max(0.0, p.health - damage)
        if cause not in ("fall", "starvation"):
            self._exhaust(EXHAUSTION["hurt"])
        self.events.append({"type": "player_hurt", "cause": cause, "damage": damage, **extra})

    def _tick_food(self) -> None:
        """Minecraft 1.16's FoodStats.tick at normal difficulty: exhaustion eats saturation, then food; a full bar
        heals fast from saturation, 18+ food heals 1 every 80 ticks, an empty bar starves down to half a heart."""
        p = self.player
        if p.exhaustion > 4.0:
            p.exhaustion -= 4.0
            if p.saturation > 0:
                p.saturation = max(p.saturation - 1.0, 0.0)
            else:
                p.food = max(p.food - 1.0, 0.0)
        hurt = 0 < p.health < 20.0
        if p.saturation > 0 and hurt and p.food >= 20:
            p.food_timer += 1
            if p.food_timer >= 10:
                amount = min(p.saturation, 6.0)
                p.health = min(20.0, p.health + amount / 6.0)
                self._exhaust(amount)
                p.food_timer = 0
        elif p.food >= 18 and hurt:
            p.food_timer += 1
            if p.food_timer >= 80:
                p.health = min(20.0, p.health + 1.0)
                self._exhaust(EXHAUSTION["heal_per_point"])
                p.food_timer = 0
        elif p.food <= 0:
            p.food_timer += 1
            if p.food_timer >= 80:
                if p.health > 1.0:
                    self._hurt_player(1.0, "starvation")
                p.food_timer = 0
        else:
            p.food_timer = 0

    def hurt(self, entity_id: int, damage: float, source: np.ndarray | None = None) -> None:
        entity = self.entities[entity_id]
        if not entity.alive or entity.hurt_ticks > 0:  # 10 ticks of invulnerability after a hit
            return
        entity.health -= damage
        entity.hurt_ticks = 10
        self.events.append({"type": "entity_attacked", "entity_id": entity.id, "entity_type": entity.type,
                            "profession": entity.profession, "damage": float(damage),
                            "health": float(max(entity.health, 0.0))})  # fmt: skip
        if source is not None and not entity.no_ai:
            away = entity.pos[[0, 2]] - source[[0, 2]]
            away /= max(float(np.linalg.norm(away)), 1e-6)
            entity.vel[0], entity.vel[2] = away * 0.4
            if entity.on_ground:
                entity.vel[1] = 0.4
        if entity.health <= 0:
            entity.death_ticks = 0
            self.events.append({"type": "entity_killed", "entity_id": entity.id, "entity_type": entity.type,
                                "profession": entity.profession})  # fmt: skip

    def _use(self, action: dict, target: dict) -> None:
        p = self.player
        p.use_cooldown = max(0, p.use_cooldown - 1)
        if not action.get("use", 0) or p.use_cooldown > 0 or target["kind"] != "block":
            return
        item, count = p.hotbar[p.selected]
        if count <= 0 or item not in BLOCK_ID:
            return
        normal = {"east": (1, 0, 0), "west": (-1, 0, 0), "up": (0, 1, 0), "down": (0, -1, 0),
                  "south": (0, 0, 1), "north": (0, 0, -1)}[target["face"]]  # fmt: skip
        x, y, z = (a + b for a, b in zip(target["pos"], normal))
        if not (0 <= x < WORLD_SIZE_XZ and 0 <= y < WORLD_HEIGHT and 0 <= z < WORLD_SIZE_XZ):
            return
        if self.solid[self.blocks[x, y, z]]:
            return
        self._put(x, y, z, BLOCK_ID[item])
        if self.solid[BLOCK_ID[item]] and physics.box_hits_blocks(self.blocks, self.solid, p.pos, PLAYER_HALF_WIDTH,
                                                                   PLAYER_HEIGHT):  # fmt: skip
            self._put(x, y, z, BLOCK_ID["air"])  # would trap the player
            return
        p.hotbar[p.selected] = [item, count - 1] if count > 1 else ["", 0]
        p.use_cooldown = 4
        self.events.append({"type": "block_placed", "block": item, "pos": [int(x), int(y), int(z)]})

    def _drop(self, action: dict) -> None:
        p = self.player
        pressed = bool(action.get("drop", 0))
        item, count = p.hotbar[p.selected]
        if pressed and not p.prev_drop and count > 0:
            p.hotbar[p.selected] = [item, count - 1] if count > 1 else ["", 0]
            self.events.append({"type": "item_dropped", "item": item, "count": 1})
        p.prev_drop = pressed

    def _tick_entities(self) -> None:
        for entity in list(self.entities.values()):
            entity.hurt_ticks = max(0, entity.hurt_ticks - 1)
            entity.attack_cooldown = max(0, entity.attack_cooldown - 1)
            if not entity.alive:
                entity.death_ticks += 1
                if entity.death_ticks >= 20:
                    del self.entities[entity.id]
                continue
            if entity.no_ai:
                continue  # NoAI mobs neither move nor fall, as in Minecraft
            forward = self._mob_ai(entity)
            in_water = self._in_water(entity.pos, entity.height)
            entity.vel[0], entity.vel[2] = physics.accelerate(entity.vel, entity.yaw, forward, 0.0, entity.on_ground,
                                                              False, False, in_water)  # fmt: skip
            pos, vel, on_ground, hit_wall = physics.move_box(self.blocks, self.solid, entity.pos, entity.vel,
                                                             entity.width / 2, entity.height)  # fmt: skip
            entity.pos, entity.vel = pos, physics.after_move(vel, on_ground, in_water)
            entity.on_ground = on_ground
            if (hit_wall and on_ground) or in_water:
                entity.vel[1] = physics.JUMP_VELOCITY if not in_water else entity.vel[1] + 0.04

    def _mob_ai(self, entity: Entity) -> float:
        """Turn and choose a forward input: wander at random, zombies chase and hit the player."""
        p = self.player
        if entity.type == "zombie":
            to_player = p.pos - entity.pos
            dist = float(np.hypot(to_player[0], to_player[2]))
            if dist < 16.0:
                entity.wander_yaw = math.degrees(math.atan2(-to_player[0], to_player[2]))
                entity.yaw = _turn(entity.yaw, entity.wander_yaw, 20.0)
                if dist < 1.2 and abs(to_player[1]) < 2.0 and entity.attack_cooldown == 0:
                    entity.attack_cooldown = 20
                    self._hurt_player(3.0, "zombie", entity_id=entity.id)
                return 0.8 if dist > 0.8 else 0.0
        if entity.wander_ticks > 0:
            entity.wander_ticks -= 1
            entity.yaw = _turn(entity.yaw, entity.wander_yaw, 10.0)
            return 0.5
        if self.rng.random() < 1 / 80:
            entity.wander_ticks = int(self.rng.integers(40, 100))
            entity.wander_yaw = float(self.rng.uniform(-180, 180))
        return 0.0

    @property
    def inventory(self) -> dict[str, int]:
        return {item: self.player.count(item) for item in ITEMS}


_HURT_TINT = np.array([1.0, 0.45, 0.45])
"""Mobs flash red for the ticks after a hit, and while dying."""
_NO_BOXES = {
    **{k: np.zeros((0, 3)) for k in ("center", "half", "color", "tint")},
    **{k: np.zeros(0) for k in ("cos", "sin")},
    **{k: np.zeros(0, np.int64) for k in ("pattern", "owner", "start", "end", "ids")},
}


@functools.cache
def _model_arrays(entity_type: str, profession: str | None) -> dict[str, np.ndarray]:
    """A mob's model boxes in its own frame, as arrays (a model depends only on type and profession)."""
    boxes = model_boxes(Entity(0, entity_type, np.zeros(3), profession=profession))
    return {
        "center": np.array([b[0] for b in boxes], np.float64),
        "half": np.array([b[1] for b in boxes], np.float64),
        "color": np.array([b[2] for b in boxes], np.float64),
        "pattern": np.array([b[3] for b in boxes], np.int64),
    }


def _turn(current: float, goal: float, max_step: float) -> float:
    delta = (goal - current + 180.0) % 360.0 - 180.0
    return current + float(np.clip(delta, -max_step, max_step))


assert set(BODY) == set(ENTITY_TYPES)
