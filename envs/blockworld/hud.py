"""Minecraft's first-person overlay at gui scale 1: crosshair, hotbar with block icons and counts, health and
food bars, the (empty) experience bar, and the hand.

Sizes are Minecraft's at 640x360 (hotbar 182x22 px, slots 20 px, icons 16 px, crosshair
9 px) and scale with the frame on each axis (x by width / 640, y by height / 360), as the GUI
of a 640x360 window does when VPT resizes it: a 128x128 frame shows what VPT's view shows.
Blocks appear in the hotbar and in the hand as Minecraft draws them: small isometric cubes
(top, left and right faces shaded 1.0, 0.8 and 0.6); plants as flat sprites.
With an empty hand, the player's arm shows at the bottom right and swings while attacking.
"""

import functools
import math

import cv2
import numpy as np

from vptlens.envs.blockworld.textures import PLANT, SIDE, TOP, render_kinds, texture_atlas
from vptlens.envs.vocab import BLOCK_ID

_DIGITS = [
    "111101101101111", "010110010010111", "111001111100111", "111001111001111", "101101111001001",
    "111100111001111", "111100111101111", "111001001001001", "111101111101111", "111101111001111",
]  # fmt: skip
"""3x5 bitmaps of 0-9, row-major."""
SKIN = np.array([199, 150, 117], np.float32)
"""Steve's arm (RGB)."""
ARM = np.array([[0.66, 0.80], [0.76, 0.72], [0.98, 1.12], [0.86, 1.22]])
"""The arm's outline at rest, in fractions of (width, height): fist edge first, then off screen."""
KNUCKLES = np.array([[0.66, 0.80], [0.76, 0.72], [0.785, 0.745], [0.685, 0.83]])
HEART = (".kkk.kkk.", "krwrkrrrk", "kwrrrrrrk", "krrrrrrrk", ".krrrrrk.", "..krrrk..", "...krk...", "....k....")
"""9-px-wide heart icon: k outline, r red, w highlight, . transparent."""
DRUMSTICK = (".....kkk.", "....kmmmk", "...kmmhmk", "...kmmmmk", "..kmmmmk.", ".kwkkkk..", "kwwk.....",
             ".kwk.....", "..k......")  # fmt: skip
"""9x9 food icon: k outline, m meat, h highlight, w bone."""
_PALETTE = {"k": (16, 16, 16), "r": (222, 24, 24), "w": (246, 246, 246), "m": (178, 104, 42), "h": (224, 158, 92)}
_EMPTY = (52, 52, 52)
"""The inside of an empty (or the empty half of a half) heart or drumstick."""


@functools.cache
def icon(item: str, size: int, width: int | None = None, trunks: str = "bark") -> np.ndarray:
    """An item's (size, width or size, 4) RGBA icon: an isometric cube for blocks, the sprite for plants
    (`trunks` as `texture_atlas`'s)."""
    if width is not None and width != size:
        return cv2.resize(icon(item, size, trunks=trunks), (max(1, width), size), interpolation=cv2.INTER_NEAREST)
    atlas = texture_atlas(trunks)
    block = BLOCK_ID[item]
    if render_kinds()[block] == PLANT:
        return cv2.resize(atlas[block, SIDE], (size, size), interpolation=cv2.INTER_NEAREST)
    # a cube [-0.5, 0.5]^3 turned 45 degrees about y and seen from 30 degrees above, fitted to the icon
    c30, s30, r2 = math.cos(math.pi / 6), 0.5, math.sqrt(2.0)
    extent = 0.5 * c30 + s30 / r2
    unit = size / (2 * extent)
    rows, cols = np.mgrid[:size, :size] + 0.5
    sx, sy = (cols - size / 2) / unit, (size / 2 - rows) / unit
    out = np.zeros((size, size, 4), np.uint8)
    diag = (0.5 * c30 - sy) * r2 / s30  # x + z on the top face
    faces = (  # (texture, shade, u, v) of the top, left (z = 0.5) and right (x = 0.5) faces
        (TOP, 1.0, (sx * r2 + diag) / 2 + 0.5, (diag - sx * r2) / 2 + 0.5),
        (SIDE, 0.8, sx * r2 + 1.0, (sy + (sx * r2 + 1.0) / r2 * s30) / c30 + 0.5),
        (SIDE, 0.6, sx * r2, (sy + (1.0 - sx * r2) / r2 * s30) / c30 + 0.5),
    )
    for face, shade, u, v in reversed(faces):  # the top face last: it wins on the shared edges
        inside = (u >= 0) & (u < 1) & (v >= 0) & (v < 1)
        tex = atlas[block, face]
        texel = tex[np.clip(((1 - v) * 16).astype(int), 0, 15), np.clip((u * 16).astype(int), 0, 15)]
        opaque = inside & (texel[..., 3] > 0)
        out[opaque, :3] = (texel[opaque, :3] * shade).astype(np.uint8)
        out[opaque, 3] = 255
    return out


def _paste(img: np.ndarray, rgba: np.ndarray, x: int, y: int) -> None:
    """Draw an RGBA sprite with its top-left corner at (x, y), clipped to the image (RGB, or RGBA whose alpha it
    sets too); alpha is on or off."""
    h, w = img.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + rgba.shape[1], w), min(y + rgba.shape[0], h)
    if x1 <= x0 or y1 <= y0:
        return
    part = rgba[y0 - y : y1 - y, x0 - x : x1 - x]
    region = img[y0:y1, x0:x1]
    region[...] = np.where(part[..., 3:] > 0, part[..., : img.shape[-1]], region)


def _number(img, value: int, right: int, bottom: int, px: int, py: int) -> None:
    """Digits (3x5 font, pixels px wide and py tall) with their shadow, right-aligned at `right`."""
    text = str(value)
    x = right - len(text) * 4 * px
    for ch in text:
        bits = _DIGITS[int(ch)]
        for r in range(5):
            for c in range(3):
                if bits[r * 3 + c] == "1":
                    y0, x0 = bottom - (5 - r) * py, x + c * px
                    img[y0 + py : y0 + 2 * py, x0 + px : x0 + 2 * px] = (62, 62, 62)  # shadow
                    img[y0 : y0 + py, x0 : x0 + px] = (255, 255, 255)
        x += 4 * px


@functools.cache
def _hotbar_layer(h: int, w: int) -> tuple[int, int, np.ndarray, np.ndarray, list[tuple[int, int, int, int]]]:
    """The hotbar's background as (top, left, colour, alpha) over its rectangle, and each slot's (x0, y0, x1, y1)."""
    sx, sy = w / 640.0, h / 360.0
    bx, by = max(1, round(sx)), max(1, round(sy))
    x0 = int(round((w - 182 * sx) / 2))
    y0 = int(round(h - 1 - 22 * sy))
    bw, bh = int(round(182 * sx)), h - y0
    colour = np.zeros((bh, bw, 3), np.float32)
    alpha = np.zeros((bh, bw, 1), np.float32)
    colour[:], alpha[:] = 20, 0.7
    slots = []
    for i in range(9):
        sx0, sx1 = int(round((1 + i * 20) * sx)), int(round((1 + i * 20 + 20) * sx))
        sy0, sy1 = by, bh - 1 - by
        colour[sy0:sy1, sx0:sx1], alpha[sy0:sy1, sx0:sx1] = 139, 0.5  # the slot's frame
        colour[sy0 + by : sy1 - by, sx0 + bx : sx1 - bx], alpha[sy0 + by : sy1 - by, sx0 + bx : sx1 - bx] = 45, 0.65
        slots.append((x0 + sx0, y0 + sy0, x0 + sx1, y0 + sy1))
    for a in (colour, alpha):
        a.setflags(write=False)
    return y0, x0, colour * alpha, 1.0 - alpha, slots


def _status_icon(rows: tuple[str, ...], fill: str) -> np.ndarray:
    """(rows, 9, 4) RGBA of a heart or drumstick; `fill` "full", "half" (the left half filled) or "empty"."""
    out = np.zeros((len(rows), 9, 4), np.uint8)
    for r, line in enumerate(rows):
        for c, ch in enumerate(line):
            if ch == ".":
                continue
            filled = ch == "k" or fill == "full" or (fill == "half" and c <= 4)
            out[r, c, :3] = _PALETTE[ch] if filled else _EMPTY
            out[r, c, 3] = 255
    return out


@functools.lru_cache(maxsize=64)
def _status_layer(h: int, w: int, health: int, food: int) -> tuple[int, int, np.ndarray]:
    """Hearts (left), drumsticks (right) and the empty experience bar over the hotbar, as Minecraft 1.16 lays them
    out at 640x360 (icons 8 px apart at y = h - 39, the bar 182x5 at y = h - 29), scaled per axis: (top, left, rgba).
    `health` and `food` are in half icons (0-20)."""
    layer = np.zeros((19, 182, 4), np.uint8)  # y = h - 39 .. h - 21 in GUI pixels, x = the hotbar's span
    for i in range(10):
        kind = "full" if health >= 2 * i + 2 else "half" if health == 2 * i + 1 else "empty"
        _paste(layer, _status_icon(HEART, kind), 8 * i, 0)
        kind = "full" if food >= 2 * i + 2 else "half" if food == 2 * i + 1 else "empty"
        _paste(layer, _status_icon(DRUMSTICK, kind), 182 - 8 * i - 9, 0)
    layer[10:15, :, :3], layer[10:15, :, 3] = (0, 0, 0), 255  # the experience bar at level 0: its empty trough
    layer[11:14, 1:181, :3] = (38, 38, 38)
    sx, sy = w / 640.0, h / 360.0
    top, left = int(round(h - 39 * sy)), int(round((w - 182 * sx) / 2))
    size = (max(1, round(182 * sx)), max(1, round(19 * sy)))
    return top, left, cv2.resize(layer, size, interpolation=cv2.INTER_NEAREST)


def _hand(img: np.ndarray, held: str, swing: float, light: float, trunks: str) -> None:
    """The held block (or the bare arm) at the bottom right, moved along its swing, lit as the world is."""
    h, w = img.shape[:2]
    lift = math.sin(math.pi * swing) if swing >= 0 else 0.0
    lunge = math.sin(math.pi * math.sqrt(swing)) if swing >= 0 else 0.0
    shift = np.array([-0.16 * lunge * w, -0.10 * lift * h])  # up and in towards the crosshair, then back
    if held:
        size = max(4, round(0.44 * h))
        x, y = 0.72 * w + shift[0], 0.68 * h + shift[1]
        width = max(4, round(0.44 * h * (w / 640) / (h / 360)))  # squashed as the view is
        sprite = icon(held, size, width, trunks)
        if light < 1.0:
            sprite = np.concatenate([(sprite[..., :3] * light).astype(np.uint8), sprite[..., 3:]], axis=-1)
        _paste(img, sprite, int(round(x)), int(round(y)))
        return
    scale = np.array([w, h])
    arm = (ARM * scale + shift).round().astype(np.int32)
    knuckles = (KNUCKLES * scale + shift).round().astype(np.int32)
    cv2.fillConvexPoly(img, arm, (SKIN * 0.8 * light).round().tolist(), lineType=cv2.LINE_8)
    cv2.fillConvexPoly(img, knuckles, (SKIN * light).round().tolist(), lineType=cv2.LINE_8)


def draw_hud(
    img: np.ndarray,
    hotbar: list,
    selected: int,
    swing: float = -1.0,
    light: float = 1.0,
    health: float = 20.0,
    food: float = 20.0,
    trunks: str = "bark",
) -> np.ndarray:
    """Draw the hand, the crosshair, the health, food and experience bars and the hotbar onto a frame, in place.

    `hotbar` lists 9 [item, count] slots; `swing` is how far through its swing the arm is (-1: at
    rest); `light` (0-1) dims the hand at night (the GUI keeps its colours, as in Minecraft);
    `health` and `food` (0-20) fill the hearts and drumsticks by halves, rounded up as Minecraft
    shows them (the low-health jiggle is left out: frames stay deterministic). `trunks` dresses logs in the
    hand and the hotbar as in the world (`texture_atlas`).
    """
    h, w = img.shape[:2]
    sx, sy = w / 640.0, h / 360.0
    item, count = hotbar[selected]
    _hand(img, item if count > 0 and item in BLOCK_ID else "", swing, light, trunks)
    # crosshair: Minecraft inverts the colours under it; lifted towards white to stay visible on mid-tones
    cy, cx = h // 2, w // 2
    arm_x, arm_y = max(1, int(4.5 * sx + 0.5)), max(1, int(4.5 * sy + 0.5))
    thick_x, thick_y = max(1, round(sx)), max(1, round(sy))  # the vertical arm's width, the horizontal's height
    tx, ty = thick_x // 2, thick_y // 2
    for ys, xs in ((slice(cy - ty, cy - ty + thick_y), slice(cx - arm_x, cx + arm_x + 1)),
                   (slice(cy - arm_y, cy + arm_y + 1), slice(cx - tx, cx - tx + thick_x))):  # fmt: skip
        img[ys, xs] = ((255 - img[ys, xs].astype(np.int16)) // 2 + 128).astype(np.uint8)
        if ys.stop - ys.start > thick_y:  # the vertical arm: undo the double inversion at the centre
            img[cy - ty : cy - ty + thick_y, cx - tx : cx - tx + thick_x] = 230
    top, left, status = _status_layer(h, w, min(20, max(0, math.ceil(health))), min(20, max(0, math.ceil(food))))
    _paste(img, status, left, top)
    # hotbar
    y0, x0, premultiplied, keep, slots = _hotbar_layer(h, w)
    region = img[y0 : y0 + keep.shape[0], x0 : x0 + keep.shape[1]]
    region[...] = (region * keep + premultiplied).astype(np.uint8)
    inner_h, inner_w = max(1, round(16 * sy)), max(1, round(16 * sx))
    for (sx0, sy0, sx1, sy1), (item, count) in zip(slots, hotbar):
        if count > 0 and item in BLOCK_ID:
            sprite = icon(item, inner_h, inner_w, trunks)
            _paste(img, sprite, sx0 + (sx1 - sx0 - inner_w) // 2, sy0 + (sy1 - sy0 - inner_h) // 2)
            if count > 1 and min(sx, sy) >= 0.6:
                _number(img, count, sx1 - 1, sy1 - 1, max(1, round(sx)), max(1, round(sy)))
    # the selected slot's frame, 24 px wide, white
    fx0 = int(round(x0 + selected * 20 * sx - sx))
    fx1 = int(round(fx0 + 24 * sx))
    bx, by = max(1, round(sx)), max(1, round(sy))
    fy0, fy1 = max(0, y0 - by), h
    img[fy0 : fy0 + by, max(0, fx0) : fx1] = 255
    img[fy1 - by : fy1, max(0, fx0) : fx1] = 255
    img[fy0:fy1, max(0, fx0) : max(0, fx0) + bx] = 255
    img[fy0:fy1, max(0, fx1 - bx) : fx1] = 255
    return img
