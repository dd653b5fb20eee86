"""A numba voxel ray caster: textured blocks, see-through leaves, cross-shaped plants, water, box mobs, sky and fog.

One ray per pixel walks the voxel grid (Amanatides-Woo DDA) and tests the mob boxes whose
screen rectangle holds the pixel. Faces are shaded by direction as Minecraft shades them
(top 1.0, z sides 0.8, x sides 0.6, bottom 0.5). Rows run in parallel; every pixel is a
pure function of the inputs, so frames are deterministic.
"""

import math
from typing import no_type_check

import numpy as np
from numba import njit, prange

from vptlens.envs.blockworld.textures import CUTOUT, OPAQUE, PLANT, WATER

FACE_SHADE = np.array([0.6, 1.0, 0.8], np.float32)  # by axis x, y (top), z; bottom faces use 0.5


@njit(cache=True, inline="always", error_model="numpy")
@no_type_check  # numba compiles the plain function; no test-time type checker
def _hash(a: int, b: int, c: int) -> float:
    h = (a * 374761393 + b * 668265263 + c * 2147483647) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
    return ((h ^ (h >> 16)) & 0xFFFF) / 65535.0


@njit(cache=True, error_model="numpy")
@no_type_check  # numba compiles the plain function; no test-time type checker
def _sky(dx, dy, dz, sun, daylight, out):
    """Sky colour along a unit direction: gradient, square sun, square moon, stars at night."""
    k = min(max(dy * 1.6 + 0.15, 0.0), 1.0)
    night = 1.0 - daylight
    out[0] = (0.75 * daylight + 0.03 * night) * (1 - k) + (0.47 * daylight) * k
    out[1] = (0.85 * daylight + 0.04 * night) * (1 - k) + (0.65 * daylight) * k
    out[2] = (1.00 * daylight + 0.08 * night) * (1 - k) + (1.00 * daylight + 0.02 * night) * k
    along = dx * sun[0] + dy * sun[1]
    if abs(along) > 0.9:
        across_p = -dx * sun[1] + dy * sun[0]
        if along > 0 and abs(dz) < 0.07 and abs(across_p) < 0.07:
            out[0], out[1], out[2] = 1.0, 0.97, 0.75
        elif along < 0 and abs(dz) < 0.05 and abs(across_p) < 0.05:
            out[0], out[1], out[2] = 0.85, 0.85, 0.80
    if daylight < 0.5 and dy > 0.0:
        if _hash(int(dx * 300 + 400), int(dy * 300 + 400), int(dz * 300 + 400)) > 0.996:
            v = 0.9 * (1 - 2 * daylight)
            out[0], out[1], out[2] = max(out[0], v), max(out[1], v), max(out[2], v)


@njit(cache=True, inline="always", error_model="numpy")
@no_type_check  # numba compiles the plain function; no test-time type checker
def _dda_start(ox, oy, oz, dx, dy, dz):
    """Amanatides-Woo set-up: the start voxel, step signs, ray time per voxel, and time to the first face per axis."""
    vx, vy, vz = int(math.floor(ox)), int(math.floor(oy)), int(math.floor(oz))
    sx = 1 if dx > 0 else -1
    sy = 1 if dy > 0 else -1
    sz = 1 if dz > 0 else -1
    tdx = abs(1.0 / dx) if dx != 0 else 1e30
    tdy = abs(1.0 / dy) if dy != 0 else 1e30
    tdz = abs(1.0 / dz) if dz != 0 else 1e30
    tmx = ((vx + 1 - ox) if dx > 0 else (ox - vx)) * tdx
    tmy = ((vy + 1 - oy) if dy > 0 else (oy - vy)) * tdy
    tmz = ((vz + 1 - oz) if dz > 0 else (oz - vz)) * tdz
    return vx, vy, vz, sx, sy, sz, tdx, tdy, tdz, tmx, tmy, tmz


@njit(cache=True, inline="always", error_model="numpy")
@no_type_check  # numba compiles the plain function; no test-time type checker
def _cell_exit(ox, oy, oz, dx, dy, dz, vx, vy, vz, shift):
    """Ray time and axis at which the ray leaves the aligned cell of side 2**shift holding voxel (vx, vy, vz)."""
    size = 1 << shift
    cx, cy, cz = (vx >> shift) << shift, (vy >> shift) << shift, (vz >> shift) << shift
    ex = ((cx + size - ox) / dx) if dx > 0 else (((cx - ox) / dx) if dx < 0 else 1e30)
    ey = ((cy + size - oy) / dy) if dy > 0 else (((cy - oy) / dy) if dy < 0 else 1e30)
    ez = ((cz + size - oz) / dz) if dz > 0 else (((cz - oz) / dz) if dz < 0 else 1e30)
    if ex <= ey and ex <= ez:
        return ex, 0
    if ey <= ez:
        return ey, 1
    return ez, 2


@njit(cache=True, error_model="numpy")
@no_type_check  # numba compiles the plain function; no test-time type checker
def _texel(atlas, block, face, u, v, rgba):
    col = min(max(int(u * 16.0), 0), 15)
    row = min(max(int((1.0 - v) * 16.0), 0), 15)
    for c in range(4):
        rgba[c] = atlas[block, face, row, col, c]


@njit(cache=True, error_model="numpy")
@no_type_check  # numba compiles the plain function; no test-time type checker
def _plant_hit(atlas, block, vx, vy, vz, ox, oy, oz, dx, dy, dz, t0, t1, rgba):
    """Intersect the two diagonal quads of a plant in voxel (vx, vy, vz) between ray times t0..t1."""
    best = -1.0
    for plane in range(2):
        # plane 0: lx - lz = 0; plane 1: lx + lz = 1 (local coordinates in the voxel)
        if plane == 0:
            den = dx - dz
            num = -((ox - vx) - (oz - vz))
        else:
            den = dx + dz
            num = 1.0 - ((ox - vx) + (oz - vz))
        if abs(den) < 1e-9:
            continue
        t = num / den
        if t < t0 or t > t1 or (best >= 0 and t >= best):
            continue
        lx = ox + t * dx - vx
        ly = oy + t * dy - vy
        if lx < 0 or lx > 1 or ly < 0 or ly > 1:
            continue
        _texel(atlas, block, 1, lx, ly, rgba)
        if rgba[3] > 0:
            best = t
    if best >= 0:
        lx = ox + best * dx - vx
        ly = oy + best * dy - vy
        _texel(atlas, block, 1, lx, ly, rgba)
    return best


@njit(cache=True, error_model="numpy")
@no_type_check  # numba compiles the plain function; no test-time type checker
def _box_hit(ox, oy, oz, dx, dy, dz, cx, cy, cz, hx, hy, hz, cs, sn):
    """Ray against a box rotated by yaw about y; returns (t, face axis, local hit point) or t < 0."""
    rx, ry, rz = ox - cx, oy - cy, oz - cz
    lx, lz = rx * cs + rz * sn, -rx * sn + rz * cs
    ldx, ldz = dx * cs + dz * sn, -dx * sn + dz * cs
    tnear, tfar, axis = -1e30, 1e30, 0
    o = (lx, ry, lz)
    d = (ldx, dy, ldz)
    h = (hx, hy, hz)
    for a in range(3):
        if abs(d[a]) < 1e-12:
            if abs(o[a]) > h[a]:
                return -1.0, 0, 0.0, 0.0, 0.0
            continue
        t1 = (-h[a] - o[a]) / d[a]
        t2 = (h[a] - o[a]) / d[a]
        if t1 > t2:
            t1, t2 = t2, t1
        if t1 > tnear:
            tnear, axis = t1, a
        tfar = min(tfar, t2)
    if tnear > tfar or tfar < 0 or tnear < 0:
        return -1.0, 0, 0.0, 0.0, 0.0
    return tnear, axis, lx + tnear * ldx, ry + tnear * dy, lz + tnear * ldz


@njit(cache=True, inline="always", error_model="numpy")
@no_type_check  # numba compiles the plain function; no test-time type checker
def _aabb_enter(ox, oy, oz, dx, dy, dz, lo, hi):
    """Ray time at which the ray enters an axis-aligned box (0 if it starts inside), or -1 if it misses."""
    tnear, tfar = 0.0, 1e30
    o = (ox, oy, oz)
    d = (dx, dy, dz)
    for a in range(3):
        if abs(d[a]) < 1e-12:
            if o[a] < lo[a] or o[a] > hi[a]:
                return -1.0
            continue
        t1 = (lo[a] - o[a]) / d[a]
        t2 = (hi[a] - o[a]) / d[a]
        if t1 > t2:
            t1, t2 = t2, t1
        tnear = max(tnear, t1)
        tfar = min(tfar, t2)
    return tnear if tnear <= tfar else -1.0


@njit(cache=True, parallel=True, fastmath=True, error_model="numpy")
@no_type_check  # numba compiles the plain function; no test-time type checker
def render(
    blocks, occupancy, occupancy16, heights4, heights16, top_y, kinds, atlas,
    eye, fwd, right, up, tan_half, height, width, sun, daylight, fog_end,
    box_center, box_half, box_cos, box_sin, box_color, box_pattern, box_tint,
    ent_box_start, ent_box_end, ent_rect, ent_lo, ent_hi,
):  # fmt: skip
    """Render (height, width, 3) uint8, an entity-index buffer (-1 where no mob is seen), and per-row
    mob statistics (height, n_mobs, 3): pixels, first and last column, from which screen boxes follow.

    Mobs are culled by their screen rectangle `ent_rect` and their world box `ent_lo..ent_hi`.

    `occupancy[x // 4, y // 4, z // 4]` and `occupancy16[x // 16, ...]` say whether a cell of
    4 or 16 blocks a side holds any block; rays cross empty cells in one jump. `top_y` is
    above every block: a climbing ray above it sees only sky. `heights4[x // 4, z // 4]` (and
    `heights16`) is one above the highest block of each column of 4x4 (16x16) blocks: a ray
    that stays above it across the column skips it whole, which is most rays near the horizon.
    """
    img = np.empty((height, width, 3), np.uint8)
    ent_buf = np.full((height, width), -1, np.int32)
    X, Y, Z = blocks.shape
    aspect = width / height
    brightness = 0.22 + 0.78 * daylight
    fog_start = fog_end * 0.6
    n_ent = ent_rect.shape[0]
    ent_rows = np.zeros((height, n_ent, 3), np.int32)
    for i in prange(height):
        rgba = np.empty(4, np.uint8)
        sky = np.empty(3, np.float64)
        col = np.empty(3, np.float64)
        water_col = np.empty(3, np.float64)
        for j in range(width):
            u = (2.0 * (j + 0.5) / width - 1.0) * tan_half * aspect
            v = (1.0 - 2.0 * (i + 0.5) / height) * tan_half
            dx = fwd[0] + u * right[0] + v * up[0]
            dy = fwd[1] + u * right[1] + v * up[1]
            dz = fwd[2] + u * right[2] + v * up[2]
            norm = math.sqrt(dx * dx + dy * dy + dz * dz)
            dx, dy, dz = dx / norm, dy / norm, dz / norm
            ox, oy, oz = eye[0], eye[1], eye[2]

            # nearest mob box on this pixel
            t_ent, ent_hit, box_hit = 1e30, -1, -1
            hit_axis, hpx, hpy, hpz = 0, 0.0, 0.0, 0.0
            for e in range(n_ent):
                if not (ent_rect[e, 0] <= j <= ent_rect[e, 2] and ent_rect[e, 1] <= i <= ent_rect[e, 3]):
                    continue
                t_box = _aabb_enter(ox, oy, oz, dx, dy, dz, ent_lo[e], ent_hi[e])
                if t_box < 0 or t_box >= t_ent:
                    continue
                for b in range(ent_box_start[e], ent_box_end[e]):
                    t, ax, px, py, pz = _box_hit(
                        ox, oy, oz, dx, dy, dz, box_center[b, 0], box_center[b, 1], box_center[b, 2],
                        box_half[b, 0], box_half[b, 1], box_half[b, 2], box_cos[b], box_sin[b],
                    )  # fmt: skip
                    if t >= 0 and t < t_ent:
                        t_ent, ent_hit, box_hit, hit_axis, hpx, hpy, hpz = t, e, b, ax, px, py, pz

            # voxel walk
            vx, vy, vz, sx, sy, sz, tdx, tdy, tdz, tmx, tmy, tmz = _dda_start(ox, oy, oz, dx, dy, dz)
            t, axis, hit_t = 0.0, -1, -1.0
            t_water = -1.0
            check = True
            edge_x = 0 if sx > 0 else 3  # the low bits of a coordinate just past a 4-block boundary
            edge_y = 0 if sy > 0 else 3
            edge_z = 0 if sz > 0 else 3
            max_t = min(fog_end, t_ent)
            while t <= max_t:
                if check:  # on entering a new 4x4x4 cell: bounds, and skips over empty space
                    check = False
                    if vx < 0 or vx >= X or vz < 0 or vz >= Z or vy < 0 or vy >= Y:
                        break
                    if vy >= top_y and sy > 0:
                        break  # above everything and climbing: only sky ahead
                    skipped = False
                    # above every block of this 16- or 4-wide column, and still above it where the ray leaves it?
                    for shift in (4, 2):
                        h_col = heights16[vx >> 4, vz >> 4] if shift == 4 else heights4[vx >> 2, vz >> 2]
                        if vy >= h_col:
                            size = 1 << shift
                            cx, cz = (vx >> shift) << shift, (vz >> shift) << shift
                            ex = ((cx + size - ox) / dx) if dx > 0 else (((cx - ox) / dx) if dx < 0 else 1e30)
                            ez = ((cz + size - oz) / dz) if dz > 0 else (((cz - oz) / dz) if dz < 0 else 1e30)
                            t_exit = min(ex, ez)
                            if oy + t_exit * dy >= h_col:
                                t, axis = t_exit, (0 if ex <= ez else 2)
                                skipped = True
                                break
                    if not skipped:  # or inside an empty cell of 16 or 4 blocks a side?
                        shift = 0
                        if vy >= Y or occupancy16[vx >> 4, vy >> 4, vz >> 4] == 0:
                            shift = 4
                        elif occupancy[vx >> 2, vy >> 2, vz >> 2] == 0:
                            shift = 2
                        if shift > 0:
                            t, axis = _cell_exit(ox, oy, oz, dx, dy, dz, vx, vy, vz, shift)
                            skipped = True
                    if skipped:  # continue the walk from where the ray leaves the skipped cell
                        te = t + 1e-6
                        vx = int(math.floor(ox + te * dx))
                        vy = int(math.floor(oy + te * dy))
                        vz = int(math.floor(oz + te * dz))
                        tmx = ((vx + 1 - ox) if dx > 0 else (ox - vx)) * tdx
                        tmy = ((vy + 1 - oy) if dy > 0 else (oy - vy)) * tdy
                        tmz = ((vz + 1 - oz) if dz > 0 else (oz - vz)) * tdz
                        check = True
                        continue
                if axis >= 0:
                    blk = blocks[vx, vy, vz]
                    kind = kinds[blk]
                    if kind == OPAQUE or kind == CUTOUT:
                        px, py, pz = ox + t * dx, oy + t * dy, oz + t * dz
                        if axis == 0:
                            fu, fv, face = pz - vz, py - vy, 1
                        elif axis == 2:
                            fu, fv, face = px - vx, py - vy, 1
                        else:
                            fu, fv, face = px - vx, 1.0 - (pz - vz), (0 if sy < 0 else 2)
                        _texel(atlas, blk, face, fu, fv, rgba)
                        if kind == OPAQUE or rgba[3] > 0:
                            shade = 0.5 if (axis == 1 and sy > 0) else FACE_SHADE[axis]
                            for c in range(3):
                                col[c] = rgba[c] / 255.0 * shade
                            hit_t = t
                            break
                    elif kind == PLANT:
                        t_next = min(tmx, min(tmy, tmz))
                        tp = _plant_hit(atlas, blk, vx, vy, vz, ox, oy, oz, dx, dy, dz, t, t_next, rgba)
                        if tp >= 0:
                            for c in range(3):
                                col[c] = rgba[c] / 255.0 * 0.9
                            hit_t = tp
                            break
                    elif kind == WATER and t_water < 0 and vy + 1 < Y and kinds[blocks[vx, vy + 1, vz]] != WATER:
                        if axis == 1 and sy < 0:  # entering the water surface from above
                            px, pz = ox + t * dx, oz + t * dz
                            _texel(atlas, blk, 0, px - vx, 1.0 - (pz - vz), rgba)
                            for c in range(3):
                                water_col[c] = rgba[c] / 255.0
                            t_water = t
                if tmx < tmy and tmx < tmz:
                    vx += sx
                    t, axis = tmx, 0
                    tmx += tdx
                    if vx < 0 or vx >= X:
                        break
                    check = (vx & 3) == edge_x
                elif tmy < tmz:
                    vy += sy
                    t, axis = tmy, 1
                    tmy += tdy
                    if vy < 0 or vy >= Y:
                        break
                    check = (vy & 3) == edge_y
                else:
                    vz += sz
                    t, axis = tmz, 2
                    tmz += tdz
                    if vz < 0 or vz >= Z:
                        break
                    check = (vz & 3) == edge_z

            if ent_hit >= 0 and (hit_t < 0 or t_ent < hit_t):
                hit_t = t_ent
                shade = FACE_SHADE[hit_axis]
                for c in range(3):
                    col[c] = box_color[box_hit, c]
                pattern = box_pattern[box_hit]
                if pattern == 1:  # cow hide with white patches
                    if _hash(int(hpx * 5 + 50), int(hpy * 5 + 50), int(hpz * 5 + 50)) > 0.62:
                        col[0], col[1], col[2] = 0.92, 0.92, 0.90
                elif pattern == 2:  # wool
                    f = 0.88 + 0.12 * _hash(int(hpx * 16 + 99), int(hpy * 16 + 99), int(hpz * 16 + 99))
                    for c in range(3):
                        col[c] *= f
                for c in range(3):
                    col[c] *= shade * box_tint[box_hit, c]
                ent_buf[i, j] = ent_hit
                if ent_rows[i, ent_hit, 0] == 0:
                    ent_rows[i, ent_hit, 1] = j
                ent_rows[i, ent_hit, 0] += 1
                ent_rows[i, ent_hit, 2] = j
            if hit_t < 0:
                _sky(dx, dy, dz, sun, daylight, sky)
                for c in range(3):
                    col[c] = sky[c]
            else:
                fog = min(max((hit_t - fog_start) / (fog_end - fog_start), 0.0), 1.0)
                if fog > 0:
                    _sky(dx, 0.0, dz, sun, daylight, sky)
                for c in range(3):
                    col[c] = col[c] * brightness * (1 - fog) + (sky[c] * fog if fog > 0 else 0.0)
            if t_water >= 0:
                for c in range(3):
                    col[c] = col[c] * 0.45 + water_col[c] * brightness * 0.55
            for c in range(3):
                img[i, j, c] = min(max(int(col[c] * 255.0 + 0.5), 0), 255)
    return img, ent_buf, ent_rows


@njit(cache=True, error_model="numpy")
@no_type_check  # numba compiles the plain function; no test-time type checker
def raycast_block(blocks, kinds, eye, d, max_t):
    """First targetable block along a unit ray (plants and leaves count, water does not).

    Returns (x, y, z, face axis, face sign, t), x = -1 when nothing is hit within max_t.
    """
    X, Y, Z = blocks.shape
    ox, oy, oz = eye[0], eye[1], eye[2]
    dx, dy, dz = d[0], d[1], d[2]
    vx, vy, vz, sx, sy, sz, tdx, tdy, tdz, tmx, tmy, tmz = _dda_start(ox, oy, oz, dx, dy, dz)
    t, axis, sign = 0.0, -1, 0
    while t <= max_t:
        if vx < 0 or vx >= X or vz < 0 or vz >= Z or vy < 0 or vy >= Y:
            break
        kind = kinds[blocks[vx, vy, vz]]
        if kind != 0 and kind != WATER and axis >= 0:
            return vx, vy, vz, axis, sign, t
        if tmx < tmy and tmx < tmz:
            vx += sx
            t, axis, sign = tmx, 0, -sx
            tmx += tdx
        elif tmy < tmz:
            vy += sy
            t, axis, sign = tmy, 1, -sy
            tmy += tdy
        else:
            vz += sz
            t, axis, sign = tmz, 2, -sz
            tmz += tdz
    return -1, -1, -1, -1, 0, -1.0


@njit(cache=True, error_model="numpy")
@no_type_check  # numba compiles the plain function; no test-time type checker
def raycast_boxes(eye, d, box_center, box_half, box_cos, box_sin, box_entity, max_t):
    """Nearest mob box along a ray: (entity index, t) or (-1, -1)."""
    best_t, best_e = max_t, -1
    for b in range(box_center.shape[0]):
        t, _, _, _, _ = _box_hit(
            eye[0], eye[1], eye[2], d[0], d[1], d[2], box_center[b, 0], box_center[b, 1], box_center[b, 2],
            box_half[b, 0], box_half[b, 1], box_half[b, 2], box_cos[b], box_sin[b],
        )  # fmt: skip
        if t >= 0 and t < best_t:
            best_t, best_e = t, box_entity[b]
    return best_e, (best_t if best_e >= 0 else -1.0)
