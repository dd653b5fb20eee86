"""Minecraft's in-game GUI at gui scale 1: the crosshair and the hotbar with item icons and counts.

Sizes are Minecraft's at 640x360 (hotbar 182x22 px, slots 20 px, crosshair 9 px) and
scale with the frame's height, so a 128x128 frame shows what VPT's downscaled view shows.
"""

import functools

import cv2
import numpy as np

from vptlens.envs.blockworld.textures import SIDE, texture_atlas
from vptlens.envs.vocab import BLOCK_ID

_DIGITS = [
    "111101101101111", "010110010010111", "111001111100111", "111001111001111", "101101111001001",
    "111100111001111", "111100111101111", "111001001001001", "111101111101111", "111101111001111",
]  # fmt: skip
"""3x5 bitmaps of 0-9, row-major."""


@functools.cache
def _icon(item: str, size: int) -> np.ndarray:
    """An item's icon: the block's side texture (RGBA), resized to size x size."""
    tex = texture_atlas()[BLOCK_ID[item], SIDE]
    return cv2.resize(tex, (size, size), interpolation=cv2.INTER_NEAREST)


def _blend(img, y0, y1, x0, x1, color, alpha):
    y0, y1, x0, x1 = max(y0, 0), min(y1, img.shape[0]), max(x0, 0), min(x1, img.shape[1])
    if y1 > y0 and x1 > x0:
        region = img[y0:y1, x0:x1].astype(np.float32)
        img[y0:y1, x0:x1] = (region * (1 - alpha) + np.array(color, np.float32) * alpha).astype(np.uint8)


def _number(img, value: int, right: int, bottom: int, px: int) -> None:
    text = str(value)
    x = right - len(text) * 4 * px
    for ch in text:
        bits = _DIGITS[int(ch)]
        for r in range(5):
            for c in range(3):
                if bits[r * 3 + c] == "1":
                    y0, x0 = bottom - (5 - r) * px, x + c * px
                    img[y0 + px : y0 + 2 * px, x0 + px : x0 + 2 * px] = (62, 62, 62)  # shadow
                    img[y0 : y0 + px, x0 : x0 + px] = (255, 255, 255)
        x += 4 * px


def draw_hud(img: np.ndarray, hotbar: list, selected: int) -> np.ndarray:
    """Draw the crosshair and the hotbar onto a frame, in place; returns it."""
    h, w = img.shape[:2]
    s = h / 360.0
    # crosshair: Minecraft inverts the colours under it; lifted towards white to stay visible on mid-tones
    cy, cx, arm, thick = h // 2, w // 2, max(1, int(4.5 * s + 0.5)), max(1, round(s))
    t0 = thick // 2
    for ys, xs in ((slice(cy - t0, cy - t0 + thick), slice(cx - arm, cx + arm + 1)),
                   (slice(cy - arm, cy + arm + 1), slice(cx - t0, cx - t0 + thick))):  # fmt: skip
        img[ys, xs] = ((255 - img[ys, xs].astype(np.int16)) // 2 + 128).astype(np.uint8)
        if ys.stop - ys.start > thick:  # the vertical arm: undo the double inversion at the centre
            img[cy - t0 : cy - t0 + thick, cx - t0 : cx - t0 + thick] = 230
    # hotbar
    slot = 20 * s
    bar_w = 182 * s
    x0 = (w - bar_w) / 2
    y1 = h - 1
    y0 = int(round(y1 - 22 * s))
    _blend(img, y0, y1, int(x0), int(round(x0 + bar_w)), (20, 20, 20), 0.55)
    for i in range(9):
        sx0 = int(round(x0 + (1 + i * 20) * s))
        sx1 = int(round(x0 + (1 + i * 20 + slot / s) * s))
        sy0, sy1 = y0 + max(1, round(s)), y1 - max(1, round(s))
        _blend(img, sy0, sy1, sx0, sx1, (139, 139, 139), 0.45)  # the slot's frame
        fr = max(1, round(s))
        _blend(img, sy0 + fr, sy1 - fr, sx0 + fr, sx1 - fr, (45, 45, 45), 0.55)  # and its dark inside
        item, count = hotbar[i]
        inner = max(1, round(16 * s))
        if count > 0 and item in BLOCK_ID:
            icon = _icon(item, inner)
            ix, iy = sx0 + (sx1 - sx0 - inner) // 2, sy0 + (sy1 - sy0 - inner) // 2
            region = img[iy : iy + inner, ix : ix + inner]
            mask = icon[: region.shape[0], : region.shape[1], 3:] > 0
            region[...] = np.where(mask, icon[: region.shape[0], : region.shape[1], :3], region)
            if count > 1 and s >= 0.6:
                _number(img, count, sx1 - 1, sy1 - 1, max(1, round(s)))
    # selection frame, 24 px wide, white
    fx0 = int(round(x0 + selected * 20 * s - s))
    fx1 = int(round(fx0 + 24 * s))
    b = max(1, round(s))
    fy0, fy1 = max(0, y0 - b), h
    img[fy0 : fy0 + b, max(0, fx0) : fx1] = 255
    img[fy1 - b : fy1, max(0, fx0) : fx1] = 255
    img[fy0:fy1, max(0, fx0) : max(0, fx0) + b] = 255
    img[fy0:fy1, max(0, fx1 - b) : fx1] = 255
    return img
