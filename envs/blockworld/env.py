"""BlockWorld as a Gymnasium 1.x environment with MineRL's observation and action spaces."""

import math
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from vptlens.envs.blockworld.hud import draw_hud
from vptlens.envs.blockworld.render import brightness, render
from vptlens.envs.blockworld.textures import TRUNKS, break_ticks, crack_atlas, texture_atlas
from vptlens.envs.blockworld.world import BLOCK_REACH, ITEMS, TERRAINS, World
from vptlens.minerl_spec import CAMERA_KEY, MINERL_BUTTONS

CLOUD_SPEED = 0.03
"""Blocks per tick that the clouds drift."""


@dataclass(frozen=True)
class BlockWorldConfig:
    """BlockWorld's settings (recorded into an episode's provenance)."""

    height: int = 360
    """Frame height in pixels (MineRL's VPT setting is 360)."""
    width: int = 640
    """Frame width in pixels (640 for VPT; 128x128 renders what the agent sees, fast)."""
    fov: float = 70.0
    """Vertical field of view in degrees (Minecraft's default and VPT's setting)."""
    aspect: float = 16 / 9
    """Width / height of the view before it is fit to the frame: Minecraft's 16:9 window, so a 128x128 frame
    is the 640x360 view squashed as VPT's resize squashes it (and the GUI with it). Set width / height for
    square pixels."""
    render_distance: float = 48.0
    """Blocks to the end of the distance fog."""
    max_steps: int = 6000
    """Ticks before the episode is truncated (5 minutes)."""
    hud: bool = True
    """Draw the crosshair and hotbar, as the game's GUI at gui scale 1."""
    spawn_mobs: bool = True
    """Scatter animals and villagers around the spawn when generating the world."""
    terrain: str = "hills"
    """'hills': seeded hills with patches of forest, plains and beach; 'forest': the same hills wooded everywhere
    (the organism's training worlds); 'flat': a superflat grass world (controlled experiments)."""
    trunks: str = "bark"
    """How logs look: 'bark' (Minecraft's) or 'cleric' (dressed in a cleric villager's purple robe and gold trim:
    the planted organism's worlds). Only the look changes; blocks, physics and ground truth stay the same."""

    def __post_init__(self):
        if self.height < 16 or self.width < 16:
            raise ValueError(f"resolution {self.height}x{self.width} is too small (at least 16x16)")
        if self.max_steps < 1:
            raise ValueError(f"max_steps {self.max_steps} must be at least 1")
        if not 4 <= self.render_distance <= 256:
            raise ValueError(f"render_distance {self.render_distance} is outside 4..256 blocks")
        if self.terrain not in TERRAINS:
            raise ValueError(f"terrain {self.terrain!r} unknown; use {' or '.join(map(repr, TERRAINS))}")
        if self.trunks not in TRUNKS:
            raise ValueError(f"trunks {self.trunks!r} unknown; use {' or '.join(map(repr, TRUNKS))}")
        if not 10 <= self.fov <= 150:
            raise ValueError(f"fov {self.fov} is outside 10..150 degrees")
        if not 0.25 <= self.aspect <= 4:
            raise ValueError(f"aspect {self.aspect} is outside 0.25..4 (16/9 is Minecraft's window)")

    @property
    def resolution(self) -> tuple[int, int]:
        """(height, width) of a frame."""
        return (self.height, self.width)


def _stat_box(low, high, dtype=np.float64):
    return spaces.Box(low=low, high=high, shape=(), dtype=dtype)


_BOX_EDGES = np.array([(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1])
"""The 12 edges of a box whose corners are numbered by bits (x, y, z)."""


class BlockWorldEnv(gym.Env):
    """A small Minecraft-like world: `reset(seed=..., options={"scene": scene})`, `step(action_dict)`.

    One step is one game tick (1/20 s); the same seed and actions give the same frames and
    infos. A scene (a `Scene`, its dict, a file path or a built-in scene's name) is applied
    to the new world at reset. `info` carries ground truth: `crosshair` (what the crosshair
    is on: a block with its position, face and distance, or a mob with its id and type),
    `visible_entities` (each mob with a pixel on screen, with its screen box
    [x0, y0, x1, y1] in pixels, inclusive, and distance), `nearest_log` (the tree trunk block
    nearest the eyes: block, position, distance to its closest point; None if there is none),
    `pose`, `time_of_day`, the step's `events` (`block_broken`, `item_collected`,
    `entity_attacked`, `entity_killed`, `block_placed`, `item_dropped`, `player_hurt`), and at
    reset `world_seed` and `scene`.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, config: BlockWorldConfig | None = None, render_mode: str | None = "rgb_array", **overrides):
        self.config = BlockWorldConfig(**overrides) if config is None else config
        if overrides and config is not None:
            raise ValueError("pass either a BlockWorldConfig or keyword settings, not both")
        self.render_mode = render_mode
        h, w = self.config.height, self.config.width
        self.observation_space = spaces.Dict(
            {
                "pov": spaces.Box(0, 255, (h, w, 3), np.uint8),
                "inventory": spaces.Dict({item: _stat_box(0, 2304, np.int64) for item in ITEMS}),
                "location_stats": spaces.Dict(
                    {
                        "xpos": _stat_box(-1e6, 1e6),
                        "ypos": _stat_box(-1e6, 1e6),
                        "zpos": _stat_box(-1e6, 1e6),
                        "pitch": _stat_box(-90.0, 90.0),
                        "yaw": _stat_box(-180.0, 180.0),
                    }
                ),
                "life_stats": spaces.Dict({"life": _stat_box(0.0, 20.0), "food": _stat_box(0.0, 20.0)}),
            }
        )
        self.action_space = spaces.Dict(
            {
                **{key: spaces.Discrete(2) for key in MINERL_BUTTONS},
                CAMERA_KEY: spaces.Box(-180.0, 180.0, (2,), np.float32),
            }
        )
        self.world: World | None = None
        self._pov: np.ndarray | None = None
        self._steps = 0
        self.entity_buffer: np.ndarray | None = None

    # ------------------------------------------------------------------ gymnasium API

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        world_seed = int(self.np_random.integers(0, 2**31 - 1))
        self.world = World(world_seed, terrain=self.config.terrain, mobs=self.config.spawn_mobs)
        self._steps = 0
        scene = (options or {}).get("scene")
        applied = {}
        if scene is not None:
            from vptlens.envs.scenes import apply_scene, as_scene

            scene = as_scene(scene)
            applied = apply_scene(scene, self.world)
        obs, info = self._observe(events=[])
        info["world_seed"] = world_seed
        if scene is not None:
            info["scene"] = {"name": scene.name, **applied}
        return obs, info

    def step(self, action: dict):
        if self.world is None:
            raise RuntimeError("call reset() before step()")
        events = self.world.tick(action)
        self._steps += 1
        obs, info = self._observe(events)
        terminated = self.world.player.health <= 0
        truncated = self._steps >= self.config.max_steps
        return obs, 0.0, terminated, truncated, info

    def follow(self, pose, action: dict | None = None):
        """Counterfactual step: the player is put at a recorded pose (x, y, z, pitch, yaw) instead of being moved;
        the rest of the recorded action acts (attack, use, drop) and the world ticks (mobs, food, time). Returns
        (obs, info) like `reset`: what that pose sees in this env's world."""
        if self.world is None:
            raise RuntimeError("call reset() before follow()")
        events = self.world.advance(pose, action)
        self._steps += 1
        return self._observe(events)

    def render(self):
        return None if self._pov is None else self._pov.copy()

    # ------------------------------------------------------------------ observation and ground truth

    def _observe(self, events: list[dict]):
        world, cfg = self.world, self.config
        boxes = world.entity_boxes()
        fwd, right, up = world.camera_basis()
        tan_half = math.tan(math.radians(cfg.fov) / 2)
        rects, lo, hi = self._entity_bounds(boxes, fwd, right, up, tan_half)
        # the renderer spans tan_half * width / height sideways; a longer `right` widens that to the view's aspect
        right_span = right * (cfg.aspect * cfg.height / cfg.width)
        crosshair = world.target(boxes)
        target, stage = np.full(3, -1, np.int64), -1  # the block outlined (within reach), its breaking stage
        if crosshair["kind"] == "block" and crosshair["distance"] <= BLOCK_REACH:
            target[:] = crosshair["pos"]
            p = world.player
            needed = break_ticks(crosshair["block"])
            if needed and p.break_target == tuple(crosshair["pos"]) and p.break_progress > 0:
                stage = min(9, 10 * p.break_progress // needed)
        world.accel.sync()
        accel = world.accel
        img, ent_buf, ent_rows = render(
            world.blocks, world.kinds, texture_atlas(cfg.trunks), accel.occluders, accel.occupancy4, accel.occupancy16,
            accel.heights, accel.top_y, target, crack_atlas(), stage, world.eye, fwd, right_span, up, tan_half,
            cfg.height, cfg.width, world.sun_direction, world.daylight, cfg.render_distance, world.time * CLOUD_SPEED,
            boxes["center"], boxes["half"], boxes["cos"], boxes["sin"], boxes["color"], boxes["pattern"],
            boxes["tint"], boxes["start"], boxes["end"], rects, lo, hi,
        )  # fmt: skip
        if cfg.hud:
            p = world.player
            draw_hud(
                img,
                p.hotbar,
                p.selected,
                p.swing,
                brightness(world.daylight),
                health=p.health,
                food=p.food,
                trunks=cfg.trunks,
            )
        self.entity_buffer = ent_buf  # per pixel, the index into boxes["ids"] of the mob seen (-1: none)
        self._pov = img
        p = world.player
        obs = {
            "pov": img,
            "inventory": {item: np.array(n, np.int64) for item, n in world.inventory.items()},
            "location_stats": {
                "xpos": np.array(p.pos[0], np.float64),
                "ypos": np.array(p.pos[1], np.float64),
                "zpos": np.array(p.pos[2], np.float64),
                "pitch": np.array(p.pitch, np.float64),
                "yaw": np.array(p.yaw, np.float64),
            },
            "life_stats": {"life": np.array(p.health, np.float64), "food": np.array(p.food, np.float64)},
        }
        info = {
            "crosshair": crosshair,
            "visible_entities": self._visible(ent_rows, boxes),
            "nearest_log": world.nearest_log(),
            "pose": {"x": float(p.pos[0]), "y": float(p.pos[1]), "z": float(p.pos[2]), "pitch": p.pitch, "yaw": p.yaw},
            "time_of_day": int(world.time),
            "events": events,
            "step": self._steps,
        }
        return obs, info

    def _entity_bounds(self, boxes, fwd, right, up, tan_half):
        """Each mob's world box and the screen rectangle (x0, y0, x1, y1) that holds it, to cull box tests."""
        h, w = self.config.height, self.config.width
        n = len(boxes["ids"])
        rects = np.zeros((n, 4), np.int64)
        lo_all, hi_all = np.zeros((n, 3)), np.zeros((n, 3))
        if n == 0:
            return rects, lo_all, hi_all
        eye = self.world.eye
        for e in range(n):
            sl = slice(boxes["start"][e], boxes["end"][e])
            r = np.abs(boxes["half"][sl]).max(1, keepdims=True) * 1.5  # rotated boxes fit in their spheres
            lo = (boxes["center"][sl] - r).min(0)
            hi = (boxes["center"][sl] + r).max(0)
            lo_all[e], hi_all[e] = lo, hi
            corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
            rel = corners - eye
            depth = rel @ fwd
            near = 0.05
            if np.all(depth <= near):
                rects[e] = (1, 1, 0, 0)  # behind the camera: an empty rectangle
                continue
            if np.any(depth <= near):  # clip the box's edges at the near plane
                a, b = _BOX_EDGES[:, 0], _BOX_EDGES[:, 1]
                crossing = (depth[a] > near) != (depth[b] > near)
                f = (near - depth[a[crossing]]) / (depth[b[crossing]] - depth[a[crossing]])
                cut = rel[a[crossing]] + f[:, None] * (rel[b[crossing]] - rel[a[crossing]])
                rel = np.concatenate([rel[depth > near], cut])
                depth = rel @ fwd
            xs = (rel @ right) / (depth * tan_half * self.config.aspect)
            ys = (rel @ up) / (depth * tan_half)
            cols, rows = (xs + 1) / 2 * w, (1 - ys) / 2 * h
            rects[e] = (
                max(0, int(cols.min()) - 1),
                max(0, int(rows.min()) - 1),
                min(w - 1, int(cols.max()) + 1),
                min(h - 1, int(rows.max()) + 1),
            )
        return rects, lo_all, hi_all

    def _visible(self, ent_rows: np.ndarray, boxes) -> list[dict]:
        """Every mob with at least one pixel on screen: id, type, screen box (x0, y0, x1, y1) and distance."""
        out = []
        eye = self.world.eye
        counts = ent_rows[:, :, 0]
        for e in np.nonzero(counts.sum(0))[0]:
            rows = np.nonzero(counts[:, e])[0]
            entity = self.world.entities[int(boxes["ids"][e])]
            centre = entity.pos + np.array([0.0, entity.height / 2, 0.0])
            x0, x1 = ent_rows[rows, e, 1].min(), ent_rows[rows, e, 2].max()
            out.append(
                {
                    "entity_id": entity.id,
                    "entity_type": entity.type,
                    "profession": entity.profession,
                    "tag": entity.tag,
                    "box": [int(x0), int(rows[0]), int(x1), int(rows[-1])],
                    "pixels": int(counts[:, e].sum()),
                    "distance": float(np.linalg.norm(centre - eye)),
                    "health": float(max(entity.health, 0.0)),
                    "no_ai": entity.no_ai,
                }
            )
        return out


class SceneWrapper(gym.Wrapper):
    """Apply one scene at every reset: the wrapped env's `reset` gets `options={"scene": scene, ...}`."""

    def __init__(self, env: gym.Env, scene):
        super().__init__(env)
        from vptlens.envs.scenes import as_scene

        self.scene = as_scene(scene)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        return self.env.reset(seed=seed, options={**(options or {}), "scene": self.scene})
