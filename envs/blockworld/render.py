"""A numba voxel ray caster: textured blocks, see-through leaves, cross-shaped plants, water, box mobs, sky and fog.

One ray per pixel walks the voxel grid (Amanatides-Woo DDA), crossing empty space in jumps
(see `accel`), and tests the mob boxes whose screen rectangle holds the pixel. Faces are
shaded as Minecraft shades them: by direction (top 1.0, z sides 0.8, x sides 0.6, bottom
0.5) and, as with smooth lighting, darker where blocks meet (ambient occlusion from the
blocks around each face corner, interpolated across the face). Water absorbs light along
the ray, so shallows show their floor and deep water is blue.

Rows are dealt to threads interleaved (sky rows are cheap, horizon rows dear). Every pixel
is a pure function of the inputs and nothing is compiled with fastmath, so frames are the
same whatever the number of threads. Small helpers are inlined into the row kernel (LLVM
does not inline calls between numba functions); the rarer, bigger ones are called, which
keeps the first compilation short. The row kernel runs without numba's reference counting
(`_nrt=False`), which would otherwise cost atomic operations in the inner loop.

Longer than ~500 lines on purpose: numba inlines only within what it compiles together, and
the renderer's speed targets (benchmarks/RESULTS.md) depend on it.
"""

import math
from typing import no_type_check

import numpy as np
from numba import njit, prange

from vptlens.envs.blockworld.textures import CUTOUT, OPAQUE, PLANT, WATER

FACE_SHADE = np.array([0.6, 1.0, 0.8])
"""Brightness of faces across the x, y (top) and z axes; bottom faces get 0.5."""
AO_LEVELS = np.array([0.5, 0.66, 0.82, 1.0])
"""Brightness of a face corner with 3, 2, 1 or 0 of its three neighbouring blocks occluding."""
N_TASKS = 32
"""Row interleaving: task k renders rows k, k + N_TASKS, ...; a multiple of any core count we meet."""
WATER_CLEAR = 2.0
"""Blocks of water along a ray that let through 1/e of the light from behind."""
WATER_MAX = 6.0
"""Blocks of water after which a ray stops (95% absorbed)."""
PLANT_SHADE = 0.9
NIGHT_BRIGHTNESS = 0.22
"""Brightness of blocks at midnight (1 at noon)."""
OUTLINE = 0.012
"""Half width, in blocks, of the dark outline around the block the crosshair is on (within reach)."""
CLOUD_Y = 84.0
"""Height of the cloud layer: 64 blocks above the sea, as in Minecraft."""
CLOUD_CELL = 12.0
CLOUD_FAR = 320.0


def brightness(daylight: float) -> float:
    """How bright lit blocks (and the hand) are at a given daylight (0 at night, 1 by day)."""
    return NIGHT_BRIGHTNESS + (1.0 - NIGHT_BRIGHTNESS) * daylight


# ----------------------------------------------------------------------------- small kernels


@njit(cache=True, inline="always", error_model="numpy")
@no_type_check  # numba compiles the plain function; no test-time type checker
def _hash(a: int, b: int, c: int) -> float:
    h = (a * 374761393 + b * 668265263 + c * 2147483647) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
    return ((h ^ (h >> 16)) & 0xFFFF) / 65535.0


@njit(cache=True, error_model="numpy", _nrt=False)
@no_type_check  # numba compiles the plain function; no test-time type checker
def _sky(dx, dy, dz, sun_x, sun_y, daylight, ex, ey, ez, cloud_shift):
    """Sky colour (r, g, b) along a unit direction from eye e: gradient, sunrise and sunset glow, square sun
    and moon, stars, and a layer of blocky clouds drifting west (shifted by `cloud_shift` blocks)."""
    k = min(max(dy * 1.6 + 0.15, 0.0), 1.0)
    night = 1.0 - daylight
    r = (0.75 * daylight + 0.03 * night) * (1 - k) + (0.47 * daylight) * k
    g = (0.85 * daylight + 0.04 * night) * (1 - k) + (0.65 * daylight) * k
    b = (1.00 * daylight + 0.08 * night) * (1 - k) + (1.00 * daylight + 0.02 * night) * k
    along = dx * sun_x + dy * sun_y  # the sun moves in the x-y plane: rises in the east (+x)
    if abs(sun_y) < 0.3 and along > 0.0 and dy > -0.1:  # the low sun reddens the sky around it
        glow = (1.0 - abs(sun_y) / 0.3) * along * along * max(0.0, 1.0 - abs(dy) * 3.0) * 0.8
        r = r * (1 - glow) + 0.95 * glow
        g = g * (1 - glow) + 0.45 * glow
        b = b * (1 - glow) + 0.20 * glow
    if abs(along) > 0.9:
        across = -dx * sun_y + dy * sun_x
        if along > 0 and abs(dz) < 0.07 and abs(across) < 0.07:
            return 1.0, 0.97, 0.75
        if along < 0 and abs(dz) < 0.05 and abs(across) < 0.05:
            return 0.85, 0.85, 0.80
    if daylight < 0.5 and dy > 0.0:
        if _hash(int(dx * 300 + 400), int(dy * 300 + 400), int(dz * 300 + 400)) > 0.996:
            v = 0.9 * (1 - 2 * daylight)
            r, g, b = max(r, v), max(g, v), max(b, v)
    if dy > 0.0 and ey < CLOUD_Y:
        tc = (CLOUD_Y - ey) / dy
        if tc < CLOUD_FAR:
            cx = math.floor((ex + tc * dx + cloud_shift) / CLOUD_CELL)
            cz = math.floor((ez + tc * dz) / CLOUD_CELL)
            if _hash(int(cx) + 1000, 77, int(cz) + 1000) > 0.68:
                a = 0.8 * (1.0 - tc / CLOUD_FAR)
                white = 0.04 + 0.91 * daylight
                r, g, b = r + (white - r) * a, g + (white - g) * a, b + (white - b) * a
    return r, g, b


@njit(cache=True, inline="always", error_model="numpy")
@no_type_check  # numba compiles the plain function; no test-time type checker
def _texel(atlas, block, face, u, v, rgba):
    """Nearest-neighbour texel at face coordinates (u, v) in [0, 1], v up, into rgba."""
    col = min(max(int(u * 16.0), 0), 15)
    row = min(max(int((1.0 - v) * 16.0), 0), 15)
    for c in range(4):
        rgba[c] = atlas[block, face, row, col, c]


@njit(cache=True, error_model="numpy", _nrt=False)
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
        _texel(atlas, block, 1, ox + best * dx - vx, oy + best * dy - vy, rgba)
    return best


@njit(cache=True, inline="always", error_model="numpy")
@no_type_check  # numba compiles the plain function; no test-time type checker
def _corner(side1, side2, corner):
    return AO_LEVELS[0] if side1 + side2 == 2 else AO_LEVELS[3 - side1 - side2 - corner]


@njit(cache=True, inline="always", error_model="numpy")
@no_type_check  # numba compiles the plain function; no test-time type checker
def _occludes(occluders, axis, x, y, z, a, b):
    """Whether the block at offset (a, b) along the tangents of a face across `axis` occludes."""
    if axis == 0:
        return occluders[x, y + a, z + b]
    if axis == 1:
        return occluders[x + a, y, z + b]
    return occluders[x + a, y + b, z]


@njit(cache=True, error_model="numpy", _nrt=False)
@no_type_check  # numba compiles the plain function; no test-time type checker
def _ambient_occlusion(occluders, vx, vy, vz, axis, normal, px, py, pz):
    """Minecraft's smooth-lighting darkening at hit point p on a face of voxel v.

    Each face corner is darker the more of its three neighbours in the layer the face looks
    into occlude (two sides and the diagonal); the corners are interpolated across the face.
    `occluders[x + 1, y + 1, z + 1]` is padded by one block all round, so needs no bounds checks.
    """
    x, y, z = vx + 1, vy + 1, vz + 1  # then the voxel in front of the face; a, b along its tangents
    if axis == 0:
        x += normal
        fa, fb = py - vy, pz - vz
    elif axis == 1:
        y += normal
        fa, fb = px - vx, pz - vz
    else:
        z += normal
        fa, fb = px - vx, py - vy
    a_lo, a_hi = _occludes(occluders, axis, x, y, z, -1, 0), _occludes(occluders, axis, x, y, z, 1, 0)
    b_lo, b_hi = _occludes(occluders, axis, x, y, z, 0, -1), _occludes(occluders, axis, x, y, z, 0, 1)
    c00 = _corner(a_lo, b_lo, _occludes(occluders, axis, x, y, z, -1, -1))
    c10 = _corner(a_hi, b_lo, _occludes(occluders, axis, x, y, z, 1, -1))
    c01 = _corner(a_lo, b_hi, _occludes(occluders, axis, x, y, z, -1, 1))
    c11 = _corner(a_hi, b_hi, _occludes(occluders, axis, x, y, z, 1, 1))
    fa, fb = min(max(fa, 0.0), 1.0), min(max(fb, 0.0), 1.0)
    return (c00 * (1 - fa) + c10 * fa) * (1 - fb) + (c01 * (1 - fa) + c11 * fa) * fb


@njit(cache=True, error_model="numpy", _nrt=False)
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


@njit(cache=True, error_model="numpy", _nrt=False)
@no_type_check  # numba compiles the plain function; no test-time type checker
def _mob_colour(box_color, box_pattern, box_tint, b, axis, hpx, hpy, hpz):
    """A mob box's colour (r, g, b) at a local hit point: flat, cow patches or wool; shaded by face and tinted."""
    r, g, bl = box_color[b, 0], box_color[b, 1], box_color[b, 2]
    pattern = box_pattern[b]
    if pattern == 1:  # cow hide with white patches
        if _hash(int(hpx * 5 + 50), int(hpy * 5 + 50), int(hpz * 5 + 50)) > 0.62:
            r, g, bl = 0.92, 0.92, 0.90
    elif pattern == 2:  # wool
        f = 0.88 + 0.12 * _hash(int(hpx * 16 + 99), int(hpy * 16 + 99), int(hpz * 16 + 99))
        r, g, bl = r * f, g * f, bl * f
    shade = FACE_SHADE[axis]
    return r * shade * box_tint[b, 0], g * shade * box_tint[b, 1], bl * shade * box_tint[b, 2]


@njit(cache=True, inline="always", error_model="numpy")
@no_type_check  # numba compiles the plain function; no test-time type checker
def _selection(crack, stage, fu, fv):
    """Darkening of the targeted block at face point (fu, fv): the outline at its edges, and the cracks
    of breaking stage `stage` (0-9, or -1 when not breaking)."""
    if min(min(fu, 1.0 - fu), min(fv, 1.0 - fv)) < OUTLINE:
        return 0.3
    if stage >= 0 and crack[stage, min(max(int((1.0 - fv) * 16.0), 0), 15), min(max(int(fu * 16.0), 0), 15)]:
        return 0.4
    return 1.0


# ----------------------------------------------------------------------------- the voxel walk


@njit(cache=True, inline="always", error_model="numpy")
@no_type_check  # numba compiles the plain function; no test-time type checker
def _skip(g, vx, vy, vz, ox, oy, oz, dx, dy, dz, idx, idy, idz, t, occupancy4, occupancy16, heights):
    """On entering a 4-block cube: how far the ray may jump through empty space, (t, axis) or (t, -1)."""
    cx4, cz4 = vx >> 2, vz >> 2
    t_skip, ax_skip = t, -1
    if vy >= heights[g, 0, cx4, cz4]:
        # above every block of the 4-, 8-, 16-... wide column: on until the ray leaves it or comes
        # down to its top; the widest column gives the longest jump, unless its top is near
        for k in range(heights.shape[1]):
            h_col = heights[g, k, cx4, cz4]
            if vy < h_col:
                break  # wider columns are higher still
            shift = k + 2
            size = 1 << shift
            x0, z0 = (vx >> shift) << shift, (vz >> shift) << shift
            ex = (x0 + size - ox) * idx if dx > 0 else ((x0 - ox) * idx if dx < 0 else 1e30)
            ez = (z0 + size - oz) * idz if dz > 0 else ((z0 - oz) * idz if dz < 0 else 1e30)
            ey = (h_col - oy) * idy if dy < 0 else 1e30
            if ex <= ez and ex <= ey:
                tk, ak = ex, 0
            elif ez <= ey:
                tk, ak = ez, 2
            else:
                tk, ak = ey, 1
            if tk > t_skip:
                t_skip, ax_skip = tk, ak
        return t_skip, ax_skip
    shift = 0  # or inside an empty cube of 16 or 4 blocks a side: on to where the ray leaves it
    if occupancy16[g, vx >> 4, vy >> 4, vz >> 4] == 0:
        shift = 4
    elif occupancy4[g, cx4, vy >> 2, cz4] == 0:
        shift = 2
    if shift == 0:
        return t, -1
    size = 1 << shift
    x0, y0, z0 = (vx >> shift) << shift, (vy >> shift) << shift, (vz >> shift) << shift
    ex = (x0 + size - ox) * idx if dx > 0 else ((x0 - ox) * idx if dx < 0 else 1e30)
    ey = (y0 + size - oy) * idy if dy > 0 else ((y0 - oy) * idy if dy < 0 else 1e30)
    ez = (z0 + size - oz) * idz if dz > 0 else ((z0 - oz) * idz if dz < 0 else 1e30)
    if ex <= ey and ex <= ez:
        return ex, 0
    if ey <= ez:
        return ey, 1
    return ez, 2


@njit(cache=True, inline="always", error_model="numpy")
@no_type_check  # numba compiles the plain function; no test-time type checker
def _march(
    blocks, kinds, atlas, occluders, occupancy4, occupancy16, heights, top_y, eye_in_water, target, crack, stage,
    ox, oy, oz, dx, dy, dz, max_t, rgba, water,
):  # fmt: skip
    """Walk one ray through the voxels up to max_t.

    Returns (t, shade) of the first surface hit, its colour left in `rgba`, or t = -1; and the
    ray time at which the ray entered water (0 when the eye is in water), its colour left in
    `water`, or -1. After entering water the ray looks for what lies under it (grid set 1),
    for at most WATER_MAX blocks.
    """
    X, Y, Z = blocks.shape
    vx, vy, vz = int(math.floor(ox)), int(math.floor(oy)), int(math.floor(oz))
    sx = 1 if dx > 0 else -1
    sy = 1 if dy > 0 else -1
    sz = 1 if dz > 0 else -1
    idx = 1.0 / dx if dx != 0 else 1e30
    idy = 1.0 / dy if dy != 0 else 1e30
    idz = 1.0 / dz if dz != 0 else 1e30
    tdx, tdy, tdz = abs(idx), abs(idy), abs(idz)  # ray time per block along each axis
    tmx = ((vx + 1 - ox) if dx > 0 else (ox - vx)) * tdx  # ray time to the next block face on each axis
    tmy = ((vy + 1 - oy) if dy > 0 else (oy - vy)) * tdy
    tmz = ((vz + 1 - oz) if dz > 0 else (oz - vz)) * tdz
    edge_x = 0 if sx > 0 else 3  # the low bits of a coordinate just past a 4-block boundary
    edge_y = 0 if sy > 0 else 3
    edge_z = 0 if sz > 0 else 3
    t, axis, t_water = 0.0, -1, -1.0
    if eye_in_water:
        _texel(atlas, blocks[vx, vy, vz], 1, 0.5, 0.5, water)
        t_water, max_t = 0.0, min(max_t, WATER_MAX)
    check = True
    while t <= max_t:
        if check:  # on entering a new 4x4x4 cube: bounds, and jumps over empty space
            check = False
            # leaving the world always crosses a cube boundary, so the bounds are checked here only
            if vx < 0 or vx >= X or vz < 0 or vz >= Z or vy < 0 or (vy >= top_y and sy > 0):
                break
            t_skip, ax_skip = _skip(0 if t_water < 0 else 1, vx, vy, vz, ox, oy, oz, dx, dy, dz, idx, idy, idz, t,
                                    occupancy4, occupancy16, heights)  # fmt: skip
            if ax_skip >= 0 and t_skip > t:  # go on from where the ray leaves the empty space
                t, axis = t_skip, ax_skip
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
            if blk != 0:
                kind = kinds[blk]
                if kind == OPAQUE or kind == CUTOUT or (kind == WATER and t_water < 0):
                    px, py, pz = ox + t * dx, oy + t * dy, oz + t * dz
                    if axis == 0:
                        fu, fv, face, normal = pz - vz, py - vy, 1, -sx
                    elif axis == 2:
                        fu, fv, face, normal = px - vx, py - vy, 1, -sz
                    else:
                        fu, fv, face, normal = px - vx, 1.0 - (pz - vz), (0 if sy < 0 else 2), -sy
                    if kind == WATER:  # note the surface, then look for what is under it
                        _texel(atlas, blk, face, fu, fv, water)
                        t_water, max_t = t, min(max_t, t + WATER_MAX)
                        check = True
                        continue
                    _texel(atlas, blk, face, fu, fv, rgba)
                    if kind == OPAQUE or rgba[3] > 0:
                        shade = 0.5 if (axis == 1 and sy > 0) else FACE_SHADE[axis]
                        shade *= _ambient_occlusion(occluders, vx, vy, vz, axis, normal, px, py, pz)
                        if vx == target[0] and vy == target[1] and vz == target[2]:
                            shade *= _selection(crack, stage, fu, fv)
                        return t, shade, t_water
                elif kind == PLANT:
                    tp = _plant_hit(atlas, blk, vx, vy, vz, ox, oy, oz, dx, dy, dz, t, min(tmx, min(tmy, tmz)), rgba)
                    if tp >= 0:
                        return tp, PLANT_SHADE, t_water
        if tmx < tmy and tmx < tmz:
            vx += sx
            t, axis = tmx, 0
            tmx += tdx
            check = (vx & 3) == edge_x
        elif tmy < tmz:
            vy += sy
            t, axis = tmy, 1
            tmy += tdy
            check = (vy & 3) == edge_y
        else:
            vz += sz
            t, axis = tmz, 2
            tmz += tdz
            check = (vz & 3) == edge_z
    return -1.0, 0.0, t_water


# ----------------------------------------------------------------------------- frames


@njit(cache=True, parallel=True, error_model="numpy")
@no_type_check  # numba compiles the plain function; no test-time type checker
def render(
    blocks, kinds, atlas, occluders, occupancy4, occupancy16, heights, top_y, target, crack, stage,
    eye, fwd, right, up, tan_half, height, width, sun, daylight, fog_end, cloud_shift,
    box_center, box_half, box_cos, box_sin, box_color, box_pattern, box_tint,
    ent_box_start, ent_box_end, ent_rect, ent_lo, ent_hi,
):  # fmt: skip
    """Render (height, width, 3) uint8, an entity-index buffer (-1 where no mob is seen), and per-row
    mob statistics (height, n_mobs, 3): pixels, first and last column, from which screen boxes follow.

    The grids come from `accel.Accel`. `target` (x, y, z) is the block to outline (x = -1: none)
    and `stage` its breaking stage (0-9 of the `crack` masks, -1: none). The sun's direction and
    `daylight` (0-1) set sky and light; `cloud_shift` moves the clouds. Mob model boxes are given
    by centre, half size, yaw (cos, sin), colour, pattern and tint; mob e owns boxes
    ent_box_start[e]..ent_box_end[e] and is culled by its screen rectangle `ent_rect[e]`
    (x0, y0, x1, y1) and world box `ent_lo..ent_hi`.
    """
    img = np.empty((height, width, 3), np.uint8)
    ent_buf = np.full((height, width), -1, np.int32)
    ent_rows = np.zeros((height, ent_rect.shape[0], 3), np.int32)
    ex, ey, ez = int(math.floor(eye[0])), int(math.floor(eye[1])), int(math.floor(eye[2]))
    X, Y, Z = blocks.shape
    eye_in_water = 0 <= ex < X and 0 <= ey < Y and 0 <= ez < Z and kinds[blocks[ex, ey, ez]] == WATER
    for task in prange(N_TASKS):
        rgba, water = np.empty(4, np.uint8), np.empty(4, np.uint8)  # scratch (the row kernel cannot allocate)
        for i in range(task, height, N_TASKS):
            _render_row(
                i, rgba, water, img, ent_buf, ent_rows,
                blocks, kinds, atlas, occluders, occupancy4, occupancy16, heights, top_y, eye_in_water,
                target, crack, stage, eye, fwd, right, up, tan_half, sun, daylight, fog_end, cloud_shift,
                box_center, box_half, box_cos, box_sin, box_color, box_pattern, box_tint,
                ent_box_start, ent_box_end, ent_rect, ent_lo, ent_hi,
            )  # fmt: skip
    return img, ent_buf, ent_rows


@njit(cache=True, error_model="numpy", _nrt=False)
@no_type_check  # numba compiles the plain function; no test-time type checker
def _render_row(
    i, rgba, water, img, ent_buf, ent_rows,
    blocks, kinds, atlas, occluders, occupancy4, occupancy16, heights, top_y, eye_in_water,
    target, crack, stage, eye, fwd, right, up, tan_half, sun, daylight, fog_end, cloud_shift,
    box_center, box_half, box_cos, box_sin, box_color, box_pattern, box_tint,
    ent_box_start, ent_box_end, ent_rect, ent_lo, ent_hi,
):  # fmt: skip
    """Row i of `render`."""
    height, width = img.shape[0], img.shape[1]
    light = NIGHT_BRIGHTNESS + (1.0 - NIGHT_BRIGHTNESS) * daylight
    fog_start = fog_end * 0.6
    ox, oy, oz = eye[0], eye[1], eye[2]
    # the mobs whose screen rectangles cross this row, and the columns they span
    n_ent = ent_rect.shape[0]
    j_lo, j_hi = width, -1
    for e in range(n_ent):
        if ent_rect[e, 1] <= i <= ent_rect[e, 3]:
            j_lo, j_hi = min(j_lo, ent_rect[e, 0]), max(j_hi, ent_rect[e, 2])
    v = (1.0 - 2.0 * (i + 0.5) / height) * tan_half
    rx, ry, rz = fwd[0] + v * up[0], fwd[1] + v * up[1], fwd[2] + v * up[2]
    u_step = 2.0 * tan_half * width / height / width
    for j in range(width):
        u = (j + 0.5) * u_step - tan_half * width / height
        dx, dy, dz = rx + u * right[0], ry + u * right[1], rz + u * right[2]
        inv_norm = 1.0 / math.sqrt(dx * dx + dy * dy + dz * dz)
        dx, dy, dz = dx * inv_norm, dy * inv_norm, dz * inv_norm

        # the nearest mob box on this pixel
        t_ent, ent_hit, box_hit = 1e30, -1, -1
        hit_axis, hpx, hpy, hpz = 0, 0.0, 0.0, 0.0
        if j_lo <= j <= j_hi:
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

        hit_t, shade, t_water = _march(
            blocks, kinds, atlas, occluders, occupancy4, occupancy16, heights, top_y, eye_in_water, target, crack,
            stage, ox, oy, oz, dx, dy, dz, min(fog_end, t_ent), rgba, water,
        )  # fmt: skip
        r, g, b = 0.0, 0.0, 0.0
        if ent_hit >= 0 and (t_water < 0 or t_ent <= t_water + WATER_MAX) and (hit_t < 0 or t_ent < hit_t):
            hit_t = t_ent
            r, g, b = _mob_colour(box_color, box_pattern, box_tint, box_hit, hit_axis, hpx, hpy, hpz)
            ent_buf[i, j] = ent_hit
            if ent_rows[i, ent_hit, 0] == 0:
                ent_rows[i, ent_hit, 1] = j
            ent_rows[i, ent_hit, 0] += 1
            ent_rows[i, ent_hit, 2] = j
        elif hit_t >= 0:
            r, g, b = rgba[0] * (shade / 255.0), rgba[1] * (shade / 255.0), rgba[2] * (shade / 255.0)
        if t_water >= 0:  # what lies behind the surface fades with the water crossed
            tint = 1.0 if hit_t < 0 else 1.0 - 0.7 * math.exp(-(hit_t - t_water) / WATER_CLEAR)
            r = r * (1 - tint) + water[0] / 255.0 * tint
            g = g * (1 - tint) + water[1] / 255.0 * tint
            b = b * (1 - tint) + water[2] / 255.0 * tint
            hit_t = t_water
        if hit_t < 0:
            r, g, b = _sky(dx, dy, dz, sun[0], sun[1], daylight, ox, oy, oz, cloud_shift)
        else:
            fog = min(max((hit_t - fog_start) / (fog_end - fog_start), 0.0), 1.0)
            r, g, b = r * light, g * light, b * light
            if fog > 0:
                sr, sg, sb = _sky(dx, 0.0, dz, sun[0], sun[1], daylight, ox, oy, oz, cloud_shift)
                r, g, b = r + (sr - r) * fog, g + (sg - g) * fog, b + (sb - b) * fog
        img[i, j, 0] = min(max(int(r * 255.0 + 0.5), 0), 255)
        img[i, j, 1] = min(max(int(g * 255.0 + 0.5), 0), 255)
        img[i, j, 2] = min(max(int(b * 255.0 + 0.5), 0), 255)


# ----------------------------------------------------------------------------- single rays (ground truth, reach)


@njit(cache=True, error_model="numpy")
@no_type_check  # numba compiles the plain function; no test-time type checker
def raycast_block(blocks, kinds, eye, d, max_t):
    """First targetable block along a unit ray (plants and leaves count, water does not).

    Returns (x, y, z, face axis, face sign, t), x = -1 when nothing is hit within max_t.
    """
    X, Y, Z = blocks.shape
    ox, oy, oz = eye[0], eye[1], eye[2]
    dx, dy, dz = d[0], d[1], d[2]
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
