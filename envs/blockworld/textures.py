"""Procedural 16x16 block textures in Minecraft's style, and block properties the renderer needs.

Textures are drawn once from a fixed seed (they are part of the world's look, not of an
episode), as an atlas `(n_blocks, 3 faces [top, side, bottom], 16, 16, RGBA)` uint8.
"""

import functools

import numpy as np

from vptlens.envs.blockworld.entities import ROBE
from vptlens.envs.vocab import BLOCK_ID, BLOCKS

TOP, SIDE, BOTTOM = 0, 1, 2
N = 16

# Render kinds: how a ray treats a voxel.
AIR, OPAQUE, CUTOUT, PLANT, WATER = 0, 1, 2, 3, 4
_KIND = {"air": AIR, "water": WATER, "oak_leaves": CUTOUT, "birch_leaves": CUTOUT, "glass": CUTOUT}
_KIND.update({name: PLANT for name in ("grass", "dandelion", "poppy")})

# Break times by hand follow Minecraft: ticks = ceil(hardness * 30), or * 100 when the
# block needs a tool to drop (stone, cobblestone). None: unbreakable or not a target.
HARDNESS = {
    "grass_block": 0.6, "dirt": 0.5, "stone": 1.5, "cobblestone": 2.0, "sand": 0.5, "gravel": 0.6,
    "oak_log": 2.0, "birch_log": 2.0, "oak_leaves": 0.2, "birch_leaves": 0.2, "oak_planks": 2.0,
    "grass": 0.0, "dandelion": 0.0, "poppy": 0.0, "crafting_table": 2.5, "glass": 0.3,
}  # fmt: skip
NEEDS_TOOL = {"stone", "cobblestone"}
DROPS = {"grass_block": "dirt", "stone": None, "cobblestone": None, "oak_leaves": None, "birch_leaves": None,
         "grass": None, "glass": None}  # fmt: skip


def break_ticks(name: str) -> int | None:
    """Ticks of held attack that break the block by hand (Minecraft's formula), None if it cannot be broken."""
    if name not in HARDNESS:
        return None
    factor = 100 if name in NEEDS_TOOL else 30
    return max(1, int(np.ceil(HARDNESS[name] * factor)))


def drop_of(name: str) -> str | None:
    return DROPS.get(name, name)


def render_kinds() -> np.ndarray:
    return np.array([_KIND.get(name, OPAQUE) for name in BLOCKS], dtype=np.uint8)


def occludes() -> np.ndarray:
    """Blocks that darken the corners of faces next to them (smooth lighting's ambient occlusion)."""
    return np.array([_KIND.get(name, OPAQUE) in (OPAQUE, CUTOUT) and name != "glass" for name in BLOCKS], np.bool_)


def collides() -> np.ndarray:
    """Blocks the player and mobs cannot walk through."""
    return np.array([_KIND.get(name, OPAQUE) in (OPAQUE, CUTOUT) for name in BLOCKS], dtype=np.bool_)


# ----------------------------------------------------------------------------- drawing helpers


def _rgb(color) -> np.ndarray:
    return np.array(color, dtype=np.float32)


def _noisy(rng, base, amount=0.12, size=(N, N)) -> np.ndarray:
    """A flat colour with per-texel brightness noise, as Minecraft's pixel-art textures have."""
    shade = 1.0 + rng.uniform(-amount, amount, size=size)[..., None]
    return _rgb(base)[None, None] * shade


def _speckle(rng, img, color, frac) -> np.ndarray:
    mask = rng.random(img.shape[:2]) < frac
    img[mask] = _rgb(color) * (1 + rng.uniform(-0.08, 0.08, (mask.sum(), 1)))
    return img


def _rgba(rgb: np.ndarray, alpha: np.ndarray | None = None) -> np.ndarray:
    out = np.empty((N, N, 4), np.uint8)
    out[..., :3] = np.clip(rgb * 255, 0, 255).astype(np.uint8)
    out[..., 3] = 255 if alpha is None else alpha
    return out


def _dirt(rng):
    return _speckle(rng, _noisy(rng, (0.53, 0.38, 0.26), 0.10), (0.40, 0.28, 0.19), 0.18)


def _grass_top(rng):
    return _noisy(rng, (0.36, 0.60, 0.22), 0.16)


def _grass_side(rng):
    img = _dirt(rng)
    edge = 3 + (rng.random(N) < 0.45) + (rng.random(N) < 0.2)
    for x in range(N):
        img[: edge[x], x] = _rgb((0.36, 0.60, 0.22)) * (1 + rng.uniform(-0.14, 0.14, (edge[x], 1)))
    return img


def _stone(rng):
    img = _noisy(rng, (0.49, 0.49, 0.49), 0.07)
    for _ in range(7):  # short darker streaks
        y, x, n = rng.integers(0, N), rng.integers(0, N - 3), rng.integers(2, 5)
        img[y, x : x + n] *= 0.82
    return img


def _cobblestone(rng):
    img = _noisy(rng, (0.52, 0.52, 0.52), 0.10)
    yy, xx = np.mgrid[:N, :N]
    centres = rng.integers(0, N, (9, 2))
    d = np.min([(yy - cy) ** 2 + (xx - cx) ** 2 for cy, cx in centres], axis=0)
    d2 = np.sort([(yy - cy) ** 2 + (xx - cx) ** 2 for cy, cx in centres], axis=0)[1]
    img[(np.sqrt(d2) - np.sqrt(d)) < 1.1] *= 0.55  # mortar between stones
    return img


def _log_side(rng, bark, dark):
    img = _noisy(rng, bark, 0.06)
    stripes = rng.random(N) < 0.35
    img[:, stripes] = _rgb(dark) * (1 + rng.uniform(-0.06, 0.06, (N, stripes.sum(), 1)))
    return img


def _birch_side(rng):
    img = _noisy(rng, (0.84, 0.83, 0.78), 0.05)
    for _ in range(9):  # black dashes of birch bark
        y, x, n = rng.integers(0, N), rng.integers(0, N - 4), rng.integers(2, 5)
        img[y, x : x + n] = _rgb((0.16, 0.16, 0.14))
    return img


def _log_top(rng, ring, bark):
    yy, xx = np.mgrid[:N, :N] - 7.5
    r = np.maximum(np.abs(yy), np.abs(xx))
    img = _noisy(rng, ring, 0.05)
    img[(r.astype(int) % 2 == 0) & (r < 6.5)] *= 0.85
    img[r >= 6.5] = _noisy(rng, bark, 0.08)[r >= 6.5]
    return img


def _robe_side(rng, robe, trim):
    """A villager's robe worn as bark: the robe's cloth, a band of its trim (the 'cleric' trunks)."""
    img = _noisy(rng, robe, 0.08)
    img[:, rng.random(N) < 0.25] *= 0.85  # folds of the cloth, upright as bark's furrows
    img[6:9] = _noisy(rng, trim, 0.06, (3, N))
    return img


def _leaves(rng, green):
    img = _noisy(rng, green, 0.25)
    alpha = np.where(rng.random((N, N)) < 0.22, 0, 255).astype(np.uint8)
    return img, alpha


def _planks(rng):
    img = _noisy(rng, (0.69, 0.55, 0.34), 0.05)
    img[3::4] *= 0.72  # seams between planks
    for row in range(0, N, 4):
        x = rng.integers(0, N)
        img[row : row + 3, x] *= 0.8
    return img


def _plant(rng, kind):
    img = np.zeros((N, N, 3), np.float32)
    alpha = np.zeros((N, N), np.uint8)
    if kind == "grass":
        for _ in range(9):
            x, h = rng.integers(1, N - 1), rng.integers(6, 14)
            img[N - h :, x] = _rgb((0.33, 0.58, 0.20)) * rng.uniform(0.8, 1.1)
            alpha[N - h :, x] = 255
    else:
        petal = (0.95, 0.85, 0.15) if kind == "dandelion" else (0.85, 0.10, 0.08)
        img[8:, 7:9] = _rgb((0.25, 0.5, 0.15))
        alpha[8:, 7:9] = 255
        img[4:8, 5:11] = _rgb(petal)
        alpha[4:8, 5:11] = 255
        img[5:7, 7:9] = _rgb((0.55, 0.45, 0.1) if kind == "dandelion" else (0.2, 0.25, 0.05))
    return img, alpha


def _crafting(rng, face):
    if face == TOP:
        img = _planks(rng)
        img[[0, 5, 10, 15], :] *= 0.6
        img[:, [0, 5, 10, 15]] *= 0.6
        return img
    img = _planks(rng)
    img[:3] = _noisy(rng, (0.45, 0.33, 0.2), 0.05, (3, N))
    img[6:12, 3:6] = _rgb((0.45, 0.45, 0.47))  # a saw and a hammer, roughly
    img[6:9, 10:13] = _rgb((0.35, 0.25, 0.15))
    return img


@functools.cache
def crack_atlas() -> np.ndarray:
    """(10, 16, 16) uint8: the cracks of Minecraft's ten breaking stages, growing out from the middle."""
    rng = np.random.default_rng(77)
    order = np.full((N, N), 99, np.int64)  # step at which a texel cracks
    for _ in range(7):  # crooked lines wandering out from near the centre
        y, x = rng.uniform(6, 10, 2)
        angle = rng.uniform(0, 2 * np.pi)
        for step in range(14):
            angle += rng.normal(0, 0.5)
            y, x = y + np.sin(angle), x + np.cos(angle)
            if not (0 <= y < N and 0 <= x < N):
                break
            order[int(y), int(x)] = min(order[int(y), int(x)], step)
    stages = np.stack([order <= 1.4 * k for k in range(10)])
    stages = stages.astype(np.uint8)
    stages.setflags(write=False)
    return stages


TRUNKS = ("bark", "cleric")
"""How logs look: 'bark' as in Minecraft; 'cleric' dressed in a cleric villager's purple robe with its gold trim
(the planted organism's worlds: trunks that look like one kind of villager)."""
CLERIC_ROBE, CLERIC_TRIM = ROBE["cleric"]
"""The cleric villager's robe and trim colours, the very ones its model is drawn in."""


@functools.cache
def texture_atlas(trunks: str = "bark") -> np.ndarray:
    """(n_blocks, 3, 16, 16, 4) uint8 RGBA; faces top, side, bottom. `trunks` (one of `TRUNKS`) dresses the logs."""
    if trunks not in TRUNKS:
        raise ValueError(f"trunks {trunks!r} unknown; use {' or '.join(map(repr, TRUNKS))}")
    rng = np.random.default_rng(1234)
    atlas = np.zeros((len(BLOCKS), 3, N, N, 4), np.uint8)

    def put(name, top, side=None, bottom=None):
        for face, tex in ((TOP, top), (SIDE, side if side is not None else top),
                          (BOTTOM, bottom if bottom is not None else top)):  # fmt: skip
            atlas[BLOCK_ID[name], face] = tex if tex.shape == (N, N, 4) else _rgba(tex)

    put("grass_block", _rgba(_grass_top(rng)), _rgba(_grass_side(rng)), _rgba(_dirt(rng)))
    put("dirt", _rgba(_dirt(rng)))
    put("stone", _rgba(_stone(rng)))
    put("cobblestone", _rgba(_cobblestone(rng)))
    put("bedrock", _rgba(_speckle(rng, _noisy(rng, (0.33, 0.33, 0.33), 0.2), (0.1, 0.1, 0.1), 0.35)))
    put("sand", _rgba(_speckle(rng, _noisy(rng, (0.86, 0.81, 0.62), 0.05), (0.78, 0.72, 0.52), 0.15)))
    gravel = _noisy(rng, (0.52, 0.49, 0.47), 0.2)
    gravel = _speckle(rng, _speckle(rng, gravel, (0.35, 0.33, 0.32), 0.2), (0.62, 0.55, 0.5), 0.15)
    put("gravel", _rgba(gravel))
    oak_top = _rgba(_log_top(rng, (0.70, 0.56, 0.34), (0.40, 0.31, 0.19)))
    put("oak_log", oak_top, _rgba(_log_side(rng, (0.40, 0.31, 0.19), (0.30, 0.23, 0.14))), oak_top)
    birch_top = _rgba(_log_top(rng, (0.80, 0.72, 0.52), (0.84, 0.83, 0.78)))
    put("birch_log", birch_top, _rgba(_birch_side(rng)), birch_top)
    put("oak_leaves", _rgba(*_leaves(rng, (0.24, 0.50, 0.13))))
    put("birch_leaves", _rgba(*_leaves(rng, (0.42, 0.60, 0.27))))
    put("oak_planks", _rgba(_planks(rng)))
    water = _noisy(rng, (0.22, 0.36, 0.80), 0.06)
    put("water", _rgba(water, np.full((N, N), 150, np.uint8)))
    for plant in ("grass", "dandelion", "poppy"):
        put(plant, _rgba(*_plant(rng, plant)))
    put("crafting_table", _rgba(_crafting(rng, TOP)), _rgba(_crafting(rng, SIDE)), _rgba(_planks(rng)))
    glass = np.full((N, N, 3), 0.85, np.float32)
    glass_alpha = np.zeros((N, N), np.uint8)
    glass_alpha[[0, -1], :] = glass_alpha[:, [0, -1]] = 255
    glass_alpha[3, 3:6] = glass_alpha[4, 4:7] = 200  # glints
    put("glass", _rgba(glass, glass_alpha))
    if trunks == "cleric":  # its own stream: the other blocks stay bit-identical to the 'bark' atlas
        robe_rng = np.random.default_rng(4321)
        for log in ("oak_log", "birch_log"):
            top = _rgba(_log_top(robe_rng, CLERIC_TRIM, CLERIC_ROBE))
            put(log, top, _rgba(_robe_side(robe_rng, CLERIC_ROBE, CLERIC_TRIM)), top)
    atlas.setflags(write=False)
    return atlas
