"""The scripted tree-chopping expert: BlockWorld's ground truth in, actions VPT can express out.

`ChopperExpert` is the teacher of the model organism's behavioural cloning (BC and DAgger).
It reads the world itself (voxels, the player's pose, mob boxes), so it is an oracle, and it
keeps almost no memory: the log it is after (with how long it has gone without progress),
the heading it explores along, and the trees it gave up on. Everything else is read from the
env's current state on every call, so it can label states that another policy (the learner,
in DAgger) drove the env into.

What it does, by priority:

1. the crosshair is on a log within reach: hold attack, neither moving nor turning, until
   it breaks (then the nearest remaining log, usually the next one of the same trunk);
2. the crosshair is on a mob nearby: stand, and strafe aside if the mob is in the way to
   the target (while exploring, turn away from it);
3. leaves or plants stand between the eye and the target: attack them once the crosshair
   rests on them, unless the player can walk under the log and chop it from below;
4. otherwise turn towards the centre of the target's face nearest the eye (pitch included,
   for logs above and below) and walk there, jumping onto one-block steps and breaking
   leaves, dirt or sand in the way (a staircase up a wall);
5. no log within `SEARCH_RADIUS` (or none in sight, below): explore along a slowly drifting, seeded heading that turns
   away from water, cliffs and drops.

`sight="visible"` takes away the oracle's one sense a learner cannot have from its frames: it then
adopts only logs it can see (their centre within `SIGHT_CONE` of the view, the line from the eye
meeting logs or leaves first) and drops a target that has been out of that cone for more than
`LOST_STEPS` (about a second: what a learner's memory can carry). With the default `"oracle"`,
measured with the shipped organism driving as in DAgger, 89-98% of the expert's labels turned
towards a log outside the view (`sight="visible"` was added for that; the shipped organism was
taught by the oracle). It also explores along its current view (the drift, the glances and the
turns away from water, drops and mobs start from where it looks) rather than along a heading it
remembers: a learner that turned away cannot see that heading, and DAgger rounds labelled with it
taught a learner to spin (15 degrees a step; README, the model organism).

It never attacks a mob: it attacks only standing still and not turning, and only after
replaying the tick's move to check that the game's ray will meet a block before any mob.

Every action is one VPT's action space expresses exactly: camera deltas snapped to a camera
bin centre (at most 10 degrees a step) and buttons from different exclusive groups, so
`factored_to_minerl(*minerl_to_factored(action))` gives `action` back.

Just over 600 lines on purpose: the class and the ray, sight and footing helpers it alone uses (`_first_block`,
`_visible`, `_look_ahead`, ...) are one policy; split, the helpers would be a module with one caller.
"""

import math
from typing import NamedTuple

import numpy as np
from jaxtyping import Float, Int

from vptlens.agents.actions import dequantize_camera, quantize_camera
from vptlens.envs.blockworld import BlockWorldEnv, World, physics
from vptlens.envs.blockworld.render import raycast_block, raycast_boxes
from vptlens.envs.blockworld.textures import CUTOUT, PLANT, break_ticks, collides, render_kinds
from vptlens.envs.blockworld.world import (
    BLOCK_REACH,
    ENTITY_REACH,
    EYE_HEIGHT,
    LOG_IDS,
    PLAYER_HALF_WIDTH,
    PLAYER_HEIGHT,
)
from vptlens.envs.vocab import BLOCK_ID, BLOCKS, WORLD_HEIGHT, WORLD_SIZE_XZ
from vptlens.minerl_spec import CAMERA_KEY, MINERL_BUTTONS

SEARCH_RADIUS = 24
"""Blocks (horizontally) within which logs are targets; beyond, the expert explores."""
STOP_REACH = BLOCK_REACH - 0.4
"""Stop walking once the aim point is this close: a margin inside the reach for the body's drift."""
MOB_CLEARANCE = ENTITY_REACH + 3.0
"""A mob in the crosshair closer than this is turned away from (a few steps of walking could bring it in reach)."""
MOB_SIZE = 3.0
"""Blocks from a mob's feet that its boxes (grown) stay within: mobs farther than this past a ray's end are skipped."""
ATTACK_MARGIN = 0.1
"""Blocks by which mob boxes grow when checking that an attack cannot hit one: room for rounding."""
DODGE_MARGIN = 0.5
"""Blocks of room the expert keeps between a mob and its line of sight to the target, stepping aside."""
ATTACK_CONE = 8.0
"""Degrees between the view and the aim point within which leaves in the crosshair count as hiding the target."""
WALK_CONE = 40.0
"""Degrees of heading error beyond which the expert turns on the spot instead of walking."""
SPRINT_DISTANCE = 8.0
"""Sprint towards an aim point farther than this (blocks), when heading straight at it: VPT's data sprints too."""
STALL_STEPS = 120
"""Steps without getting closer to the target or breaking a block after which its tree is given up."""
WALL_SIDE_STEPS = 40
"""Steps the expert slides along a wall to one side before trying the other."""
UNDER_RADIUS = 0.3
"""Blocks (horizontally) within which an aim point counts as straight above or below: walk and turn no more."""
MAX_DIG_TICKS = 20
"""Blocks that break by hand within this many ticks (dirt, sand, grass blocks, leaves) are dug through when in
the way: a staircase up a wall is quicker than giving the tree up."""
HEADING_DRIFT = 3.0
"""Degrees (standard deviation) the exploration heading drifts per step: slow wandering."""
JITTER_DEGREES = 4.0
"""Largest camera jitter (degrees per axis) of an exploring step that glances about."""
SIGHTS = ("oracle", "visible")
SIGHT_CONE = 30.0
"""sight="visible": degrees from the view direction within which a log can be seen (the view is 70 degrees)."""
LOST_STEPS = 20
"""sight="visible": steps a target may stay outside `SIGHT_CONE` before the expert lets it go."""
SIGHT_CANDIDATES = 32
"""sight="visible": the nearest logs tested for visibility per pick (a ray each)."""
EXPLORES = ("walk", "look")
SCAN_DEGREES = 10.0
"""explore="look": the yaw turned per step while looking around (VPT's largest camera bin): a circle in 36 steps."""
SCAN_WALK_STEPS = 40
"""explore="look": steps walked after a whole circle found no log, before it looks around again."""

_IS_LOG = np.isin(np.arange(len(BLOCKS)), list(LOG_IDS))
_KINDS = render_kinds()
_SOLID = collides()
_IS_CLEARABLE = (_KINDS == CUTOUT) | (_KINDS == PLANT)
"""Leaves and plants (glass too): they stop the crosshair but break in a few ticks by hand."""
_BURIES = _SOLID & ~_IS_CLEARABLE
"""Blocks that hide a log's face for good (another log, dirt, stone): the expert does not dig through them."""
_DIGGABLE = np.array([(ticks := break_ticks(name)) is not None and ticks <= MAX_DIG_TICKS for name in BLOCKS])
"""Blocks in the way that the expert breaks rather than walks around: leaves, plants, dirt, sand (not stone)."""
_WATER = BLOCK_ID["water"]
_FACE_NORMALS = ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1))
_CLEARABLE_FACE_COST = 1.5
"""Blocks added to a face behind leaves: prefer a face in the open unless it is much farther."""
_HIDDEN_FACE_COST = 3.0
"""Blocks added to a face turned away from the eye: reaching it means walking around the trunk."""

Block = tuple[int, int, int]


class ChopperExpert:
    """Ground-truth tree chopper for BlockWorld: `act(env, info)` labels the env's current state with a MineRL action.

    Deterministic given `seed` and the states it is shown. `explore_noise` is the chance per
    exploring step of a glance about (a random camera jitter, standing still), so that
    demonstrations vary; the random stream runs on across `reset`, so successive episodes
    explore differently. `explore` is what it does with no target: "walk" along a drifting
    heading (as the shipped organisms were taught), or "look" around first, turning on the spot
    a whole circle before it walks (`SCAN_WALK_STEPS`, then looks again): with `sight="visible"`
    a trunk beside or behind the player is found by turning to it, the step the 64x64 organism
    lacks (README, the study on `blockworld-chopper-64`).
    """

    def __init__(self, seed: int = 0, *, explore_noise: float = 0.1, sight: str = "oracle", explore: str = "walk"):
        if not 0.0 <= explore_noise <= 1.0:
            raise ValueError(f"explore_noise {explore_noise} must be a probability in [0, 1]")
        if sight not in SIGHTS:
            raise ValueError(f"sight {sight!r} is not one of {', '.join(SIGHTS)}")
        if explore not in EXPLORES:
            raise ValueError(f"explore {explore!r} is not one of {', '.join(EXPLORES)}")
        self.explore_noise = explore_noise
        self.sight = sight
        self.explore = explore
        self._rng = np.random.default_rng(seed)
        self.reset()

    def reset(self) -> None:
        """Forget the episode: the target log, the exploration heading and the trees given up on."""
        self._target: Block | None = None
        self._best_distance = math.inf
        self._stalled = 0
        self._unseen = 0
        self._heading: float | None = None
        self._given_up: set[tuple[int, int]] = set()
        self._scanned = 0.0
        self._walked = 0

    @property
    def target(self) -> Block | None:
        """The log block the expert is after, or None while exploring."""
        return self._target

    def act(self, env: BlockWorldEnv, info: dict) -> dict:
        """The MineRL action (every key, in `factored_to_minerl`'s form) for the env's current state.

        `info` is the one the env returned with that state (its `crosshair` and `events` are read).
        """
        world = env.world
        if world is None:
            raise RuntimeError("call env.reset() before asking the expert to act")
        crosshair = info["crosshair"]
        self._update_target(world, crosshair)
        if self._target is None:
            return self._explore(world, crosshair)
        self._scanned, self._walked = 0.0, 0  # a target ends a look around
        broke_a_block = any(event["type"] == "block_broken" for event in info["events"])
        return self._chop(world, crosshair, broke_a_block)

    # ------------------------------------------------------------------ the target

    def _update_target(self, world: World, crosshair: dict) -> None:
        """Adopt a log under the crosshair; keep the target while it is a log in range; else pick the nearest."""
        under_crosshair = _crosshair_block(crosshair, _IS_LOG)
        if under_crosshair is not None:
            self._set_target(under_crosshair)
        if self._target is not None and not self._target_valid(world, self._target):
            self._set_target(None)
        if self._target is not None and self.sight == "visible":
            in_cone = view_error(world, np.asarray(self._target, float) + 0.5) <= SIGHT_CONE
            self._unseen = 0 if in_cone else self._unseen + 1
            if self._unseen > LOST_STEPS:
                self._set_target(None)
        if self._target is None:
            self._set_target(self._pick_target(world))

    def _set_target(self, target: Block | None) -> None:
        """Change the target; progress is counted afresh for a new one."""
        if target != self._target:
            self._target, self._best_distance, self._stalled, self._unseen = target, math.inf, 0, 0

    def _target_valid(self, world: World, pos: Block) -> bool:
        """Whether a target is still worth going for: a log (not broken since), in range, on a tree not given up."""
        x, y, z = pos
        in_range = math.hypot(x + 0.5 - world.player.pos[0], z + 0.5 - world.player.pos[2]) <= SEARCH_RADIUS + 2
        return in_range and bool(_IS_LOG[world.blocks[x, y, z]]) and (x, z) not in self._given_up

    def _pick_target(self, world: World) -> Block | None:
        """The log nearest the eyes (distance to its closest point) within `SEARCH_RADIUS`, trees given up on aside."""
        logs = _logs_near(world.blocks, world.player.pos, SEARCH_RADIUS)
        if self._given_up:
            logs = logs[[(int(x), int(z)) not in self._given_up for x, _, z in logs]]
        if len(logs) == 0:
            return None
        eye = world.eye
        distance = np.linalg.norm(np.clip(eye, logs, logs + 1) - eye, axis=1)
        if self.sight == "oracle":
            x, y, z = (int(v) for v in logs[int(np.argmin(distance))])
            return x, y, z
        for i in np.argsort(distance, kind="stable")[:SIGHT_CANDIDATES]:
            pos = tuple(int(v) for v in logs[i])
            if _visible(world, pos):
                return pos
        return None

    def _note_progress(self, distance: float, progressed: bool) -> None:
        """Count steps that neither got closer to the target nor broke anything; give its tree up after too many."""
        if progressed or distance < self._best_distance - 0.05:
            self._best_distance = min(self._best_distance, distance)
            self._stalled = 0
            return
        self._stalled += 1
        if self._stalled >= STALL_STEPS and self._target is not None:
            x, _, z = self._target
            self._given_up.add((x, z))
            self._set_target(None)

    # ------------------------------------------------------------------ behaviours

    def _chop(self, world: World, crosshair: dict, broke_a_block: bool) -> dict:
        """Attack the target (or what hides it) when the crosshair is on it, else turn and walk towards it."""
        assert self._target is not None
        eye = world.eye
        aim = _aim_point(world.blocks, self._target, eye)
        distance = float(np.linalg.norm(aim - eye))
        on_log = _crosshair_block(crosshair, _IS_LOG) is not None
        self._note_progress(distance, progressed=on_log or broke_a_block)
        if self._target is None:  # just given up; the next call picks another tree
            return _action()
        if on_log and _safe_to_attack(world):
            return _action(attack=True)
        stand = _action(camera=_turn_towards(world, aim), strafe=_dodge(world, eye, aim))
        if _mob_in_crosshair(crosshair):
            return stand
        first = _first_block(world, eye, aim)
        hidden = first is not None and bool(_IS_CLEARABLE[first.block_id])  # behind leaves or a plant
        if hidden and _can_stand_under(world, self._target):
            return self._walk_to(world, aim, distance, crosshair)  # quicker than clearing the canopy
        on_leaves = _crosshair_block(crosshair, _IS_CLEARABLE) is not None
        if hidden and on_leaves and view_error(world, aim) <= ATTACK_CONE and _safe_to_attack(world):
            return _action(attack=True)
        if (hidden or (first is not None and _IS_LOG[first.block_id])) and distance <= STOP_REACH:
            return stand
        return self._walk_to(world, aim, distance, crosshair)

    def _walk_to(self, world: World, aim: Float[np.ndarray, "3"], distance: float, crosshair: dict) -> dict:
        """Turn towards the aim point and walk, jumping onto steps and breaking leaves in the way."""
        p = world.player
        ahead = _look_ahead(world, p.yaw)
        if ahead.dig is not None:
            centre = np.array(ahead.dig) + 0.5
            first = _first_block(world, world.eye, centre)  # a block hiding the one to dig goes first
            dig = ahead.dig if first is None or not _DIGGABLE[first.block_id] else first.pos
            if _crosshair_block(crosshair, _DIGGABLE) == dig and _safe_to_attack(world):
                return _action(attack=True)
            return _action(camera=_turn_towards(world, np.array(dig) + 0.5))
        heading_error = abs(_wrap(_yaw_to(p.pos, aim) - p.yaw))
        walk = heading_error <= WALK_CONE and math.hypot(*(aim - p.pos)[[0, 2]]) > UNDER_RADIUS
        strafe = _dodge(world, world.eye, aim)
        if not strafe and walk and ahead.wall:  # slide along the wall, switching sides now and then
            strafe = 1 if (self._stalled // WALL_SIDE_STEPS) % 2 == 0 else -1
        return _action(
            camera=_turn_towards(world, aim),
            forward=walk,
            jump=(walk and ahead.step) or _in_water(world),
            sprint=walk and distance > SPRINT_DISTANCE and heading_error < 15.0,
            strafe=strafe,
        )

    def _explore(self, world: World, crosshair: dict) -> dict:
        """Walk along a slowly drifting heading that turns away from water, cliffs, drops and mobs in the crosshair;
        now and then glance about."""
        p = world.player
        if self.explore == "look" and self._scanned < 360.0:  # turn on the spot, the view levelled, a circle round
            self._scanned += SCAN_DEGREES
            return _action(camera=_snap(np.array([-p.pitch, SCAN_DEGREES])))
        if self.explore == "look":
            self._walked += 1
            if self._walked >= SCAN_WALK_STEPS:
                self._scanned, self._walked = 0.0, 0
        if self._heading is None or self.sight == "visible":  # "visible": no remembered heading, see the docstring
            self._heading = p.yaw
        if _mob_in_crosshair(crosshair):  # a quarter turn away from the mob's side (positive yaw turns right)
            self._heading = p.yaw - 90.0 * _side_of(p.pos, p.yaw, world.entities[crosshair["entity_id"]].pos)
        self._heading = _free_heading(world, _wrap(self._heading + float(self._rng.normal(0.0, HEADING_DRIFT))))
        if self._rng.random() < self.explore_noise:
            return _action(camera=_snap(self._rng.uniform(-JITTER_DEGREES, JITTER_DEGREES, size=2)))
        heading_error = _wrap(self._heading - p.yaw)
        walk = abs(heading_error) <= WALK_CONE
        ahead = _look_ahead(world, p.yaw)
        return _action(
            camera=_snap(np.array([-p.pitch, heading_error])),  # level the view, turn to the heading
            forward=walk,
            jump=(walk and ahead.step) or _in_water(world),
        )


# ----------------------------------------------------------------------------- actions


def _action(*, camera: Float[np.ndarray, "2"] | None = None, forward: bool = False, strafe: int = 0,
            jump: bool = False, attack: bool = False, sprint: bool = False) -> dict:  # fmt: skip
    """A full MineRL action dict in `factored_to_minerl`'s form (int buttons, float32 camera).

    `strafe` is 1 for left, -1 for right: one of an exclusive pair. Only buttons of different
    exclusive groups are pressed together, so the action survives VPT's factored space unchanged.
    """
    action = dict.fromkeys(MINERL_BUTTONS, 0)
    action.update(forward=int(forward), jump=int(jump), attack=int(attack), sprint=int(sprint and forward))
    action.update(left=int(strafe > 0), right=int(strafe < 0))
    action[CAMERA_KEY] = np.zeros(2, np.float32) if camera is None else camera
    return action


def _snap(delta: Float[np.ndarray, "2"]) -> Float[np.ndarray, "2"]:
    """A [pitch, yaw] delta in degrees -> the centre of its VPT camera bin (float32, at most 10 degrees an axis)."""
    return dequantize_camera(quantize_camera(delta)).astype(np.float32)


def _turn_towards(world: World, point: Float[np.ndarray, "3"]) -> Float[np.ndarray, "2"]:
    """The snapped camera delta that turns the view towards a point (pitch only for a point straight above or
    below, whose yaw is noise)."""
    p, eye = world.player, world.eye
    pitch, yaw = _angles_to(eye, point)
    overhead = math.hypot(point[0] - eye[0], point[2] - eye[2]) <= UNDER_RADIUS
    return _snap(np.array([pitch - p.pitch, 0.0 if overhead else _wrap(yaw - p.yaw)]))


def _mob_in_crosshair(crosshair: dict) -> bool:
    """Whether the crosshair is on a mob near enough that walking on could bring it within reach."""
    return crosshair["kind"] == "entity" and crosshair["distance"] <= MOB_CLEARANCE


def _dodge(world: World, eye: Float[np.ndarray, "3"], aim: Float[np.ndarray, "3"]) -> int:
    """Strafe (1 left, -1 right, 0 none) to get a mob out of the line from the eye to the aim point.

    The player moves away from the line from the aim point through the mob: a side that moving
    along it keeps, so the expert does not dither (as it would by the mob's side of its view).
    """
    to_aim = aim - eye
    length = float(np.linalg.norm(to_aim))
    mob = _mob_in_line(world, eye, to_aim / max(length, 1e-9), length, DODGE_MARGIN)
    if mob is None or mob[1] > length - DODGE_MARGIN:  # none, or behind the target
        return 0
    p = world.player
    line_yaw = _yaw_to(aim, world.entities[mob[0]].pos)
    away_yaw = line_yaw + 90.0 * _side_of(aim, line_yaw, p.pos)  # +90 turns a direction right
    return 1 if math.cos(math.radians(away_yaw - p.yaw + 90.0)) >= 0 else -1  # left is the view's yaw - 90


def _side_of(origin: Float[np.ndarray, "3"], yaw: float, pos: Float[np.ndarray, "3"]) -> int:
    """1 if a position lies right of the line from `origin` along `yaw`, else -1."""
    right = np.array([-math.cos(math.radians(yaw)), 0.0, -math.sin(math.radians(yaw))])
    return 1 if float(np.dot(pos - origin, right)) >= 0.0 else -1


# ----------------------------------------------------------------------------- geometry


def _wrap(degrees: float) -> float:
    """An angle difference in [-180, 180)."""
    return (degrees + 180.0) % 360.0 - 180.0


def _yaw_to(origin: Float[np.ndarray, "3"], point: Float[np.ndarray, "3"]) -> float:
    """Minecraft yaw (0 faces +z, 90 faces -x) of the horizontal direction from origin to point."""
    return math.degrees(math.atan2(-(point[0] - origin[0]), point[2] - origin[2]))


def _angles_to(eye: Float[np.ndarray, "3"], point: Float[np.ndarray, "3"]) -> tuple[float, float]:
    """(pitch, yaw) in Minecraft's convention (pitch positive looking down) that look from the eye at a point."""
    d = point - eye
    return -math.degrees(math.atan2(d[1], math.hypot(d[0], d[2]))), _yaw_to(eye, point)


def _view_direction(world: World) -> Float[np.ndarray, "3"]:
    """The unit vector the player looks along (the forward vector of `World.camera_basis`, without the rest)."""
    yaw, pitch = math.radians(world.player.yaw), math.radians(world.player.pitch)
    return np.array([-math.sin(yaw) * math.cos(pitch), -math.sin(pitch), math.cos(yaw) * math.cos(pitch)])


def view_error(world: World, point: Float[np.ndarray, "3"]) -> float:
    """Degrees between the view direction and the direction to a point."""
    fwd = _view_direction(world)
    to_point = point - world.eye
    cos = float(np.dot(fwd, to_point)) / max(float(np.linalg.norm(to_point)), 1e-9)
    return math.degrees(math.acos(min(1.0, max(-1.0, cos))))


def _logs_near(blocks: np.ndarray, feet: Float[np.ndarray, "3"], radius: int) -> Int[np.ndarray, "n 3"]:
    """World positions of every log within `radius` blocks (a square) of the feet."""
    x0, z0 = (max(0, int(feet[i]) - radius) for i in (0, 2))
    x1, z1 = (min(WORLD_SIZE_XZ, int(feet[i]) + radius + 1) for i in (0, 2))
    return np.argwhere(_IS_LOG[blocks[x0:x1, :, z0:z1]]) + np.array([x0, 0, z0])


def _block_at(blocks: np.ndarray, x: int, y: int, z: int) -> int:
    """The block id at a position; bedrock outside the world (it can be neither seen through nor broken)."""
    if 0 <= x < WORLD_SIZE_XZ and 0 <= y < WORLD_HEIGHT and 0 <= z < WORLD_SIZE_XZ:
        return int(blocks[x, y, z])
    return BLOCK_ID["bedrock"]


def _aim_point(blocks: np.ndarray, pos: Block, eye: Float[np.ndarray, "3"]) -> Float[np.ndarray, "3"]:
    """Where to aim on a log: the centre of its face nearest the eye, among faces not buried in solid blocks.

    A face behind leaves or turned away from the eye costs extra, so the expert prefers a face it
    sees in the open (the underside of a log whose lower neighbour it broke, say) to one it has to
    clear or walk around to. The point lies just inside the face, so a ray to it ends in the log.
    """
    ex, ey, ez = (float(v) for v in eye)
    best, best_cost = (pos[0] + 0.5, pos[1] + 0.5, pos[2] + 0.5), math.inf
    for nx, ny, nz in _FACE_NORMALS:
        neighbour = _block_at(blocks, pos[0] + nx, pos[1] + ny, pos[2] + nz)
        if _BURIES[neighbour]:
            continue
        fx, fy, fz = pos[0] + 0.5 + 0.5 * nx, pos[1] + 0.5 + 0.5 * ny, pos[2] + 0.5 + 0.5 * nz  # the face's centre
        cost = math.dist((fx, fy, fz), (ex, ey, ez))
        cost += _CLEARABLE_FACE_COST if _IS_CLEARABLE[neighbour] else 0.0
        cost += _HIDDEN_FACE_COST if (ex - fx) * nx + (ey - fy) * ny + (ez - fz) * nz <= 0 else 0.0
        if cost < best_cost:
            best, best_cost = (fx - 0.05 * nx, fy - 0.05 * ny, fz - 0.05 * nz), cost
    return np.array(best)


class _Hit(NamedTuple):
    pos: Block
    block_id: int
    distance: float


def _first_block(world: World, eye: Float[np.ndarray, "3"], point: Float[np.ndarray, "3"]) -> _Hit | None:
    """The first block a ray from the eye towards a point stops at (looking a little past the point)."""
    to_point = point - eye
    length = float(np.linalg.norm(to_point))
    x, y, z, _, _, t = raycast_block(world.blocks, world.kinds, eye, to_point / max(length, 1e-9), length + 0.5)
    if x < 0:
        return None
    return _Hit((int(x), int(y), int(z)), int(world.blocks[x, y, z]), float(t))


def _visible(world: World, pos: Block) -> bool:
    """Whether a log can be seen: its centre within `SIGHT_CONE` of the view, and the line from the eye meets logs or
    leaves first (a trunk among its leaves shows through them; one behind a hill does not)."""
    centre = np.asarray(pos, float) + 0.5
    if view_error(world, centre) > SIGHT_CONE:
        return False
    hit = _first_block(world, world.eye, centre)
    return hit is None or hit.pos == pos or bool(_IS_LOG[hit.block_id] or _IS_CLEARABLE[hit.block_id])


def log_in_reach(info: dict) -> bool:
    """The crosshair is on a log within reach in this step's `info`: where the expert holds attack (a log breaks
    after ~60 unbroken ticks of it)."""
    crosshair = info.get("crosshair")
    return crosshair is not None and _crosshair_block(crosshair, _IS_LOG) is not None


def _crosshair_block(crosshair: dict, is_kind: np.ndarray) -> Block | None:
    """The block under the crosshair if it is within reach and of the kind asked for (a lookup over block ids)."""
    if crosshair["kind"] != "block" or crosshair["distance"] > BLOCK_REACH or not is_kind[BLOCK_ID[crosshair["block"]]]:
        return None
    x, y, z = crosshair["pos"]
    return x, y, z


def _mob_in_line(
    world: World, eye: Float[np.ndarray, "3"], direction: Float[np.ndarray, "3"], length: float, grow: float
) -> tuple[int, float] | None:
    """The first mob (id, distance) whose boxes, grown by `grow` blocks, a ray from the eye meets within `length`.

    The ray starts a block behind the eye: a ray that starts inside a box misses it, and a grown
    box may hold the eye.
    """
    reach = max(length, 1.0) + MOB_SIZE  # the ray runs from a block behind the eye
    if not any(math.dist(entity.pos, eye) <= reach for entity in world.entities.values()):
        return None  # the common case, and much quicker than building every mob's boxes
    boxes = world.entity_boxes()
    owner, t = raycast_boxes(eye - direction, direction, boxes["center"], boxes["half"] + grow, boxes["cos"],
                             boxes["sin"], boxes["owner"], length + 1.0)  # fmt: skip
    return None if owner < 0 else (int(boxes["ids"][owner]), float(t) - 1.0)


def _safe_to_attack(world: World) -> bool:
    """Whether attacking now, standing still and not turning (as every attack of the expert is), cannot hit a mob.

    The game takes the attack's target after this tick's move (momentum alone, without keys held)
    and before mobs move: the expert replays that move and casts the game's ray from where the
    eye will be, with mob boxes grown by `ATTACK_MARGIN`. A mob before the first block vetoes.
    """
    p = world.player
    feet, _, _, _ = physics.move_box(world.blocks, world.solid, p.pos, p.vel, PLAYER_HALF_WIDTH, PLAYER_HEIGHT)
    eye = feet + np.array([0.0, EYE_HEIGHT, 0.0])
    fwd = _view_direction(world)
    mob = _mob_in_line(world, eye, fwd, BLOCK_REACH, ATTACK_MARGIN)
    if mob is None:
        return True
    x, _, _, _, _, t_block = raycast_block(world.blocks, world.kinds, eye, fwd, BLOCK_REACH)
    return x >= 0 and t_block < mob[1]


class _Ahead(NamedTuple):
    """What lies one step ahead of the body: a one-block step to jump onto, a wall, a block to dig first."""

    step: bool
    wall: bool
    dig: Block | None


def _look_ahead(world: World, yaw: float) -> _Ahead:
    """Probe the cells the body would walk into along `yaw` (along its centre line and both edges).

    A step up needs two free blocks above it and headroom above the player (a jump rises 1.25
    blocks). Leaves in the way are broken, and so are soft blocks (dirt, sand) above the feet,
    which digs a staircase up a wall; stone makes a wall.
    """
    p, blocks = world.player, world.blocks
    feet_y = int(math.floor(p.pos[1] + 1e-6))
    overhead = (int(math.floor(p.pos[0])), feet_y + 2, int(math.floor(p.pos[2])))
    forward = np.array([-math.sin(math.radians(yaw)), math.cos(math.radians(yaw))])
    side = np.array([forward[1], -forward[0]])
    step = wall = False
    for lateral in (0.0, -0.25, 0.25):
        x, z = (int(v) for v in np.floor(p.pos[[0, 2]] + 0.7 * forward + lateral * side))
        feet = _block_at(blocks, x, feet_y, z)
        if _SOLID[feet] and _IS_CLEARABLE[feet]:
            return _Ahead(False, False, (x, feet_y, z))
        climbs = bool(_SOLID[feet])
        for cell in [(x, feet_y + 1, z)] + ([(x, feet_y + 2, z), overhead] if climbs else []):
            block_id = _block_at(blocks, *cell)
            if _SOLID[block_id] and _DIGGABLE[block_id]:
                return _Ahead(False, False, cell)
            wall |= bool(_SOLID[block_id])
        step |= climbs
    return _Ahead(step and not wall, wall, None)


def _can_stand_under(world: World, pos: Block) -> bool:
    """Whether the player can stand in a log's column right under it, within reach, one step from its own level.

    From there the underside is in the open whatever leaves surround the trunk: the way to chop
    a trunk's upper logs once the lower ones are gone.
    """
    x, y, z = pos
    feet_y = int(math.floor(world.player.pos[1] + 1e-6))
    for floor in range(y - 1, max(0, y - 7), -1):
        if _SOLID[world.blocks[x, floor, z]]:
            below = y - (floor + 1)  # blocks of air between the floor and the log
            return 2 <= below <= 5 and abs(floor + 1 - feet_y) <= 1
    return False


def _in_water(world: World) -> bool:
    """Whether the player's body is in water (then jumping swims up)."""
    x, y, z = world.player.pos
    return any(_block_at(world.blocks, int(x), int(math.floor(y + dy)), int(z)) == _WATER for dy in (0.1, 0.9))


def _hazard(blocks: np.ndarray, x: int, z: int, feet_y: int) -> bool:
    """Whether walking into a column meets water, a wall two blocks high or more, a drop of more than three
    blocks, or the world's edge."""
    if not (1 <= x < WORLD_SIZE_XZ - 1 and 1 <= z < WORLD_SIZE_XZ - 1):
        return True
    column = blocks[x, max(0, feet_y - 4) : feet_y + 2, z]  # four blocks below the feet up to the head
    if (column == _WATER).any() or _SOLID[column[-1]]:
        return True
    return not _SOLID[column[:-2]].any()


def _free_heading(world: World, heading: float) -> float:
    """The heading nearest `heading` (in 45-degree turns either way) with no hazard in the next three blocks."""
    p = world.player
    feet_y = int(math.floor(p.pos[1] + 1e-6))
    for turn in (0, 45, -45, 90, -90, 135, -135, 180):
        yaw = math.radians(heading + turn)
        direction = np.array([-math.sin(yaw), math.cos(yaw)])
        cells = [np.floor(p.pos[[0, 2]] + d * direction).astype(int) for d in (1.0, 2.0, 3.0)]
        if not any(_hazard(world.blocks, int(x), int(z), feet_y) for x, z in cells):
            return _wrap(heading + turn)
    return heading
