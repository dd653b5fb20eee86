"""VPT's action space: MineRL action dicts <-> the policy's factored action (button class, camera class).

The policy chooses one of 8641 joint button classes and one of 121 camera classes:

- Buttons are grouped into mutually exclusive choices (hotbar 1-9, forward/back,
  left/right, sprint/sneak, use, drop, attack, jump) plus a "camera meta action" saying
  whether the camera moves: 10*3*3*3*2*2*2*2*2 = 8640 combinations, numbered as
  `itertools.product` of the groups in that order (the last group varies fastest), and
  class 8640 for opening the inventory, which excludes everything else.
- The camera is [pitch, yaw] in degrees, each clipped to +-10 and quantised into 11 bins
  after mu-law companding (mu = 10), so small movements get fine bins; class =
  pitch_bin * 11 + yaw_bin, and the null bin (5, 5) is class 60.

Conflicts in a MineRL action resolve as in OpenAI's `CameraHierarchicalMapping`: forward
with back (and left with right) cancel to neither; sprint with sneak keeps sneak; several
hotbar keys keep the highest-numbered; `inventory` wins over every other button and
centres the camera. Going back, a button class whose meta action is off gives camera
(0, 0); the inventory class leaves the camera head's choice in place, as OpenAI's
code does.
"""

import functools
import itertools

import numpy as np
from jaxtyping import Bool, Float, Int

FACTORED_BUTTONS: tuple[str, ...] = (
    "attack",
    "back",
    "forward",
    "jump",
    "left",
    "right",
    "sneak",
    "sprint",
    "use",
    "drop",
    "inventory",
    *(f"hotbar.{i}" for i in range(1, 10)),
)
"""The buttons of VPT's factored action, in OpenAI's order (`Buttons.ALL`)."""

MINERL_BUTTONS: tuple[str, ...] = (
    "forward",
    "back",
    "left",
    "right",
    "jump",
    "sneak",
    "sprint",
    "attack",
    "use",
    "drop",
    "inventory",
    "ESC",
    *(f"hotbar.{i}" for i in range(1, 10)),
    "pickItem",
    "swapHands",
)
"""Every binary key of MineRL 1.0's human action space (plus `camera`)."""

BUTTON_GROUPS: dict[str, tuple[str, ...]] = {
    "hotbar": ("none", *(f"hotbar.{i}" for i in range(1, 10))),
    "fore_back": ("none", "forward", "back"),
    "left_right": ("none", "left", "right"),
    "sprint_sneak": ("none", "sprint", "sneak"),
    "use": ("none", "use"),
    "drop": ("none", "drop"),
    "attack": ("none", "attack"),
    "jump": ("none", "jump"),
    "camera": ("none", "camera"),
}
"""Mutually exclusive button groups of the joint button head, in the order that numbers its classes."""

N_CAMERA_BINS = 11
CAMERA_NULL_BIN = N_CAMERA_BINS // 2
N_CAMERA_CLASSES = N_CAMERA_BINS**2
CAMERA_NULL_CLASS = CAMERA_NULL_BIN * N_CAMERA_BINS + CAMERA_NULL_BIN
CAMERA_MAXVAL = 10.0
"""Degrees; camera movements are clipped to +-CAMERA_MAXVAL per step before quantisation."""
CAMERA_BINSIZE = 2.0
CAMERA_MU = 10.0

_RADICES = tuple(len(choices) for choices in BUTTON_GROUPS.values())
_STRIDES = tuple(int(np.prod(_RADICES[i + 1 :])) for i in range(len(_RADICES)))
INVENTORY_CLASS = int(np.prod(_RADICES))
N_BUTTON_CLASSES = INVENTORY_CLASS + 1
NULL_BUTTON_CLASS = 0
assert N_BUTTON_CLASSES == 8641

_F = {name: i for i, name in enumerate(FACTORED_BUTTONS)}


# ----------------------------------------------------------------------------- camera


def quantize_camera(degrees: Float[np.ndarray, "*b"]) -> Int[np.ndarray, "*b"]:
    """Degrees -> mu-law bin in [0, 11), elementwise (OpenAI's `CameraQuantizer.discretize`)."""
    x = np.clip(np.asarray(degrees, dtype=np.float64), -CAMERA_MAXVAL, CAMERA_MAXVAL) / CAMERA_MAXVAL
    x = np.sign(x) * np.log1p(CAMERA_MU * np.abs(x)) / np.log1p(CAMERA_MU) * CAMERA_MAXVAL
    return np.round((x + CAMERA_MAXVAL) / CAMERA_BINSIZE).astype(np.int64)


def dequantize_camera(bins: Int[np.ndarray, "*b"]) -> Float[np.ndarray, "*b"]:
    """Bin -> degrees at the bin's centre (OpenAI's `CameraQuantizer.undiscretize`)."""
    x = (np.asarray(bins, dtype=np.float64) * CAMERA_BINSIZE - CAMERA_MAXVAL) / CAMERA_MAXVAL
    return np.sign(x) * ((1.0 + CAMERA_MU) ** np.abs(x) - 1.0) / CAMERA_MU * CAMERA_MAXVAL


# ----------------------------------------------------------------------------- button classes


@functools.cache
def _class_tables() -> tuple[np.ndarray, np.ndarray]:
    """Per button class: the factored buttons it presses (8641, 20) and whether the camera is off (8641,)."""
    pressed = np.zeros((N_BUTTON_CLASSES, len(FACTORED_BUTTONS)), dtype=bool)
    camera_off = np.zeros(N_BUTTON_CLASSES, dtype=bool)
    for cls, combo in enumerate(itertools.product(*BUTTON_GROUPS.values())):
        for choice in combo[:-1]:
            if choice != "none":
                pressed[cls, _F[choice]] = True
        camera_off[cls] = combo[-1] != "camera"
    pressed[INVENTORY_CLASS, _F["inventory"]] = True  # its camera stays on, as in OpenAI's tables
    pressed.setflags(write=False)
    camera_off.setflags(write=False)
    return pressed, camera_off


def buttons_to_class(pressed: Bool[np.ndarray, "b 20"], camera_moves: Bool[np.ndarray, " b"]) -> Int[np.ndarray, " b"]:
    """Factored buttons (OpenAI's order) and whether the camera moves -> joint button class."""
    p = np.asarray(pressed, dtype=bool)

    def pair(first: str, second: str, both: int) -> np.ndarray:
        a, b = p[:, _F[first]], p[:, _F[second]]
        return np.where(a & b, both, np.where(a, 1, np.where(b, 2, 0)))

    hotbar = p[:, [_F[f"hotbar.{i}"] for i in range(1, 10)]]
    choices = [
        np.where(hotbar.any(1), 9 - np.argmax(hotbar[:, ::-1], axis=1), 0),  # highest-numbered key wins
        pair("forward", "back", both=0),  # both cancel
        pair("left", "right", both=0),
        pair("sprint", "sneak", both=2),  # the later in the group wins
        p[:, _F["use"]],
        p[:, _F["drop"]],
        p[:, _F["attack"]],
        p[:, _F["jump"]],
        np.asarray(camera_moves, dtype=bool),
    ]
    cls = sum(np.asarray(c, dtype=np.int64) * s for c, s in zip(choices, _STRIDES))
    return np.where(p[:, _F["inventory"]], INVENTORY_CLASS, cls)


def class_to_buttons(button_class: Int[np.ndarray, " b"]) -> tuple[Bool[np.ndarray, "b 20"], Bool[np.ndarray, " b"]]:
    """Joint button class -> (factored buttons pressed, whether the camera head's choice is ignored)."""
    pressed, camera_off = _class_tables()
    return pressed[button_class], camera_off[button_class]


# ----------------------------------------------------------------------------- MineRL dicts


def _batched(action: dict) -> dict:
    """Check a MineRL action dict and give it a batch axis: factored buttons as bool (B,), camera (B, 2)."""
    if not isinstance(action, dict):
        raise TypeError(f"expected a MineRL action dict, got {type(action).__name__}")
    unknown = set(action) - set(MINERL_BUTTONS) - {"camera"}
    if unknown:
        raise ValueError(f"unknown MineRL action keys {sorted(unknown)}; known: camera, {', '.join(MINERL_BUTTONS)}")
    if "camera" not in action:
        raise ValueError("the action has no 'camera'; MineRL actions carry camera = [pitch, yaw] in degrees")
    camera = np.asarray(action["camera"], dtype=np.float64)
    camera = camera.reshape(1, -1) if camera.ndim == 1 else camera
    if camera.ndim != 2 or camera.shape[1] != 2:
        raise ValueError(f"camera must be [pitch, yaw] (2,) or (B, 2) degrees, got shape {np.shape(action['camera'])}")
    out = {"camera": camera}
    for key in FACTORED_BUTTONS:
        value = np.asarray(action.get(key, 0)).reshape(-1)
        if value.shape[0] == 1 and camera.shape[0] > 1:
            value = np.repeat(value, camera.shape[0])
        if value.shape[0] != camera.shape[0]:
            raise ValueError(f"'{key}' has {value.shape[0]} rows but camera has {camera.shape[0]}")
        out[key] = value != 0
    return out


def minerl_to_factored(action: dict) -> tuple[Int[np.ndarray, " b"], Int[np.ndarray, " b"]]:
    """A MineRL action dict, single or batched (arrays of B rows) -> (button classes, camera classes), each (B,)."""
    batch = _batched(action)
    pressed = np.stack([batch[k] for k in FACTORED_BUTTONS], axis=1)
    bins = quantize_camera(batch["camera"])
    camera_moves = np.any(bins != CAMERA_NULL_BIN, axis=1)
    buttons = buttons_to_class(pressed, camera_moves)
    camera = bins[:, 0] * N_CAMERA_BINS + bins[:, 1]
    camera = np.where(buttons == INVENTORY_CLASS, CAMERA_NULL_CLASS, camera)
    return buttons.astype(np.int64), camera.astype(np.int64)


def factored_to_minerl(buttons: Int[np.ndarray, " b"], camera: Int[np.ndarray, " b"]) -> list[dict]:
    """(button classes, camera classes), each (B,) -> B MineRL action dicts with every key (`ESC` 0)."""
    buttons = np.asarray(buttons, dtype=np.int64).reshape(-1)
    camera = np.asarray(camera, dtype=np.int64).reshape(-1)
    if buttons.shape != camera.shape:
        raise ValueError(f"buttons {buttons.shape} and camera {camera.shape} must have the same number of rows")
    if buttons.size and (buttons.min() < 0 or buttons.max() >= N_BUTTON_CLASSES):
        raise ValueError(f"button classes must be in [0, {N_BUTTON_CLASSES}), got {buttons.min()}..{buttons.max()}")
    if camera.size and (camera.min() < 0 or camera.max() >= N_CAMERA_CLASSES):
        raise ValueError(f"camera classes must be in [0, {N_CAMERA_CLASSES}), got {camera.min()}..{camera.max()}")
    pressed, camera_off = class_to_buttons(buttons)
    bins = np.stack([camera // N_CAMERA_BINS, camera % N_CAMERA_BINS], axis=1)
    bins[camera_off] = CAMERA_NULL_BIN
    degrees = dequantize_camera(bins).astype(np.float32)
    actions = []
    for row in range(buttons.shape[0]):
        action = {key: 0 for key in MINERL_BUTTONS}
        for i, key in enumerate(FACTORED_BUTTONS):
            action[key] = int(pressed[row, i])
        action["camera"] = degrees[row]
        actions.append(action)
    return actions


def null_action() -> dict:
    """The MineRL action that does nothing."""
    return factored_to_minerl(np.array([NULL_BUTTON_CLASS]), np.array([CAMERA_NULL_CLASS]))[0]
