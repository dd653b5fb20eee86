"""Minecraft's movement for the player and mobs: per-tick velocity, gravity, drag, AABB collision.

Constants are Minecraft Java's, per tick (20 per second): gravity 0.08 with vertical drag
0.98, jump velocity 0.42, walking acceleration 0.1 on the ground with friction 0.546 (top
speed 4.3 m/s), 0.02 in the air with 0.91, sprint x1.3, sneak x0.3. Collision moves one
axis at a time (y, then x, then z) and stops a box at the first solid block face.
"""

import math
from typing import no_type_check

import numpy as np
from numba import njit

GRAVITY = 0.08
VERTICAL_DRAG = 0.98
JUMP_VELOCITY = 0.42
GROUND_ACCEL = 0.1
AIR_ACCEL = 0.02
GROUND_FRICTION = 0.6 * 0.91
AIR_FRICTION = 0.91
SPRINT = 1.3
SNEAK = 0.3
EPS = 1e-7


@njit(cache=True)
@no_type_check  # numba compiles the plain function; no test-time type checker
def _solid(blocks, solid, x, y, z):
    X, Y, Z = blocks.shape
    if x < 0 or x >= X or z < 0 or z >= Z or y < 0:
        return True  # the world's border and floor
    if y >= Y:
        return False
    return solid[blocks[x, y, z]]


@njit(cache=True)
@no_type_check  # numba compiles the plain function; no test-time type checker
def _sweep(blocks, solid, lo, hi, axis, d):
    """Clamp a move of d along axis so the box [lo, hi] stops at the first solid block."""
    if d == 0.0:
        return 0.0
    a1, a2 = (axis + 1) % 3, (axis + 2) % 3
    r1 = (int(math.floor(lo[a1] + EPS)), int(math.floor(hi[a1] - EPS)))
    r2 = (int(math.floor(lo[a2] + EPS)), int(math.floor(hi[a2] - EPS)))
    cell = np.zeros(3, np.int64)
    if d > 0:
        start, stop, step = int(math.ceil(hi[axis] - EPS)), int(math.floor(hi[axis] + d)), 1
    else:
        start, stop, step = int(math.floor(lo[axis] + EPS)) - 1, int(math.floor(lo[axis] + d)), -1
    c = start
    while (c <= stop) if step > 0 else (c >= stop):
        for i in range(r1[0], r1[1] + 1):
            for k in range(r2[0], r2[1] + 1):
                cell[axis], cell[a1], cell[a2] = c, i, k
                if _solid(blocks, solid, cell[0], cell[1], cell[2]):
                    return (c - hi[axis]) if d > 0 else (c + 1 - lo[axis])
        c += step
    return d


@njit(cache=True)
@no_type_check  # numba compiles the plain function; no test-time type checker
def move_box(blocks, solid, pos, vel, half_width, height):
    """Move a feet-centred box by vel, colliding; returns (new pos, new vel, on_ground, hit a wall)."""
    p = pos.copy()
    v = vel.copy()
    lo = np.empty(3)
    hi = np.empty(3)
    on_ground, hit_wall = False, False
    for axis in (1, 0, 2):
        lo[0], lo[1], lo[2] = p[0] - half_width, p[1], p[2] - half_width
        hi[0], hi[1], hi[2] = p[0] + half_width, p[1] + height, p[2] + half_width
        moved = _sweep(blocks, solid, lo, hi, axis, v[axis])
        if moved != v[axis]:
            if axis == 1:
                on_ground = v[1] < 0
            else:
                hit_wall = True
            v[axis] = 0.0
        p[axis] += moved
    return p, v, on_ground, hit_wall


@njit(cache=True)
@no_type_check  # numba compiles the plain function; no test-time type checker
def box_hits_blocks(blocks, solid, pos, half_width, height):
    """Whether a feet-centred box overlaps any solid block (e.g. before placing a block in it)."""
    for x in range(int(math.floor(pos[0] - half_width + EPS)), int(math.floor(pos[0] + half_width - EPS)) + 1):
        for y in range(int(math.floor(pos[1] + EPS)), int(math.floor(pos[1] + height - EPS)) + 1):
            for z in range(int(math.floor(pos[2] - half_width + EPS)), int(math.floor(pos[2] + half_width - EPS)) + 1):
                if _solid(blocks, solid, x, y, z):
                    return True
    return False


def accelerate(vel, yaw_deg, forward, strafe, on_ground, sprint, sneak, in_water):
    """Minecraft's moveRelative: add one tick of input acceleration to the horizontal velocity (vx, vz)."""
    accel = GROUND_ACCEL if on_ground else AIR_ACCEL
    if in_water:
        accel = 0.02
    if sprint and forward > 0 and not sneak:
        accel *= SPRINT
    if sneak:
        forward, strafe = forward * SNEAK, strafe * SNEAK
    length = math.hypot(forward, strafe)
    vx, vz = vel[0], vel[2]
    if length > 1e-4:
        scale = accel / max(1.0, length)
        f, s = forward * scale, strafe * scale
        yaw = math.radians(yaw_deg)
        # strafe > 0 is to the left; facing +z (yaw 0), left is +x
        vx += s * math.cos(yaw) - f * math.sin(yaw)
        vz += f * math.cos(yaw) + s * math.sin(yaw)
    return vx, vz


def after_move(vel, on_ground, in_water):
    """Friction and gravity applied after a tick's move, as Minecraft does."""
    friction = 0.8 if in_water else (GROUND_FRICTION if on_ground else AIR_FRICTION)
    vel[0] *= friction
    vel[2] *= friction
    if in_water:
        vel[1] = vel[1] * 0.8 - 0.02
    else:
        vel[1] = (vel[1] - GRAVITY) * VERTICAL_DRAG
    return vel
