"""VPT's action space: MineRL action dicts <-> the policy's two categorical heads.

VPT does not predict MineRL's keys one by one. Its policy has two heads (OpenAI's
`CameraHierarchicalMapping` with 11 camera bins, as `agent.py` builds it), and here the
pair (button class, camera class) is called the *factored* action:

- The button head has 8641 classes. The 20 buttons VPT models fall into mutually
  exclusive groups (`BUTTON_GROUPS`: hotbar 1-9, forward/back, left/right, sprint/sneak,
  use, drop, attack, jump), and a last group, the *camera meta action*, says whether the
  camera moves at all. The 10*3*3*3*2*2*2*2*2 = 8640 combinations are numbered as
  `itertools.product` of the groups in that order (the last group varies fastest); class
  8640 opens the inventory and excludes everything else.
- The camera head has 121 classes, `pitch_bin * 11 + yaw_bin`. Each of [pitch, yaw]
  (degrees per step) is clipped to +-10 and mu-law companded (mu = 10) before being cut
  into 11 bins, so small movements get fine bins (+-0.6 deg) and large ones coarse ones.
  Bin 5 is no movement; the null camera class is 60.

Going from MineRL to the factored action follows OpenAI's `ActionTransformer.env2policy`
then `CameraHierarchicalMapping.from_factored`; MineRL actions can press buttons the
groups forbid together, and those conflicts resolve as there:

- forward with back, or left with right: neither (they cancel);
- sprint with sneak: sneak (within a group the option listed last wins);
- several hotbar keys: the highest-numbered one;
- `inventory`: the inventory class, dropping every other button, camera class 60;
- a camera movement that rounds to bin (5, 5): camera meta action off, camera class 60;
- `ESC`, `pickItem`, `swapHands`: ignored, VPT has no output for them.

Going back follows `to_factored` then `policy2env`: a button class whose camera meta
action is off sends camera [0, 0] whatever the camera class; the inventory class lets the
camera class through (OpenAI's table marks its camera as on), so the agent can open the
inventory and turn in one step, as the reference agent does.

Arithmetic on the camera keeps OpenAI's operation order and dtypes (a float32 input stays
float32 where the reference's does), so bins agree bit for bit, even at bin edges.
"""

from collections.abc import Mapping
from typing import Any

import numpy as np
from jaxtyping import Bool, Float, Int

from vptlens.minerl_spec import MINERL_BUTTONS

VPT_BUTTONS: tuple[str, ...] = (
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
"""The 20 buttons VPT models, in OpenAI's order (`lib/actions.py` `Buttons.ALL`): the columns of `pressed` arrays."""

IGNORED_BUTTONS: tuple[str, ...] = tuple(k for k in MINERL_BUTTONS if k not in VPT_BUTTONS)
"""MineRL keys VPT never presses (`ESC`, `pickItem`, `swapHands`): read and ignored, always sent as 0."""

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
"""Mutually exclusive choices of the button head, in the order that numbers its classes (OpenAI's order)."""

CANCELLING_GROUPS: tuple[str, ...] = ("fore_back", "left_right")
"""Groups where pressing both buttons means pressing neither; elsewhere the option listed last wins."""

N_CAMERA_BINS = 11
CAMERA_NULL_BIN = N_CAMERA_BINS // 2
N_CAMERA_CLASSES = N_CAMERA_BINS**2
CAMERA_NULL_CLASS = CAMERA_NULL_BIN * N_CAMERA_BINS + CAMERA_NULL_BIN
CAMERA_MAXVAL = 10
"""Degrees; a camera movement is clipped to +-CAMERA_MAXVAL per step before quantisation."""
CAMERA_BINSIZE = 2
"""Width of a bin in companded units (companding maps +-CAMERA_MAXVAL onto itself)."""
CAMERA_MU = 10
"""Curvature of the mu-law companding; OpenAI's `ACTION_TRANSFORMER_KWARGS`."""
assert N_CAMERA_BINS == 2 * CAMERA_MAXVAL // CAMERA_BINSIZE + 1

_GROUP_SIZES = tuple(len(options) for options in BUTTON_GROUPS.values())
# mixed radix: a class is sum(choice * stride) with the last group's stride 1
_GROUP_STRIDES = tuple(int(np.prod(_GROUP_SIZES[i + 1 :])) for i in range(len(_GROUP_SIZES)))
INVENTORY_CLASS = int(np.prod(_GROUP_SIZES))
N_BUTTON_CLASSES = INVENTORY_CLASS + 1
NULL_BUTTON_CLASS = 0
assert N_BUTTON_CLASSES == 10 * 3**3 * 2**5 + 1 == 8641

_COLUMN = {button: i for i, button in enumerate(VPT_BUTTONS)}


# ----------------------------------------------------------------------------- camera


def quantize_camera(degrees: Float[np.ndarray, "*shape"]) -> Int[np.ndarray, "*shape"]:
    """Degrees -> mu-law bin in [0, 11), elementwise; OpenAI's `CameraQuantizer.discretize`."""
    # log(1 + y), not log1p, and np.float64 constants: OpenAI's exact operations, so bin edges round the same
    x = np.clip(degrees, -CAMERA_MAXVAL, CAMERA_MAXVAL) / CAMERA_MAXVAL
    companded = np.sign(x) * (np.log(1.0 + CAMERA_MU * np.abs(x)) / np.log(1.0 + CAMERA_MU))
    return np.round((companded * CAMERA_MAXVAL + CAMERA_MAXVAL) / CAMERA_BINSIZE).astype(np.int64)


def dequantize_camera(bins: Int[np.ndarray, "*shape"]) -> Float[np.ndarray, "*shape"]:
    """Bin -> degrees at the bin's centre (float64), elementwise; OpenAI's `CameraQuantizer.undiscretize`."""
    x = (bins * CAMERA_BINSIZE - CAMERA_MAXVAL) / CAMERA_MAXVAL
    return np.sign(x) * (1.0 / CAMERA_MU) * ((1.0 + CAMERA_MU) ** np.abs(x) - 1.0) * CAMERA_MAXVAL


# ----------------------------------------------------------------------------- button classes


def _make_class_tables() -> tuple[np.ndarray, np.ndarray]:
    """Per button class: the buttons it presses (8641, 20) and whether its camera meta action is off (8641,)."""
    joint = np.arange(INVENTORY_CLASS)
    pressed = np.zeros((N_BUTTON_CLASSES, len(VPT_BUTTONS)), dtype=bool)
    camera_off = np.zeros(N_BUTTON_CLASSES, dtype=bool)
    for (name, options), stride in zip(BUTTON_GROUPS.items(), _GROUP_STRIDES):
        choice = joint // stride % len(options)
        if name == "camera":
            camera_off[:INVENTORY_CLASS] = choice == 0
            continue
        for i, button in enumerate(options[1:], start=1):
            pressed[:INVENTORY_CLASS, _COLUMN[button]] = choice == i
    pressed[INVENTORY_CLASS, _COLUMN["inventory"]] = True  # camera_off stays False, as in OpenAI's table
    pressed.setflags(write=False)
    camera_off.setflags(write=False)
    return pressed, camera_off


_PRESSED_BY_CLASS, _CAMERA_OFF_BY_CLASS = _make_class_tables()


def _check_classes(classes: np.ndarray, n_classes: int, what: str) -> None:
    if classes.size and (classes.min() < 0 or classes.max() >= n_classes):
        bad = classes[(classes < 0) | (classes >= n_classes)]
        raise ValueError(
            f"{what} classes must be in [0, {n_classes}) (the {what} head's classes), got {bad[:5].tolist()}"
        )


def buttons_to_class(pressed: Bool[np.ndarray, "b 20"], camera_moves: Bool[np.ndarray, " b"]) -> Int[np.ndarray, " b"]:
    """Buttons pressed (columns in `VPT_BUTTONS` order) and whether the camera moves -> button class.

    Conflicting buttons resolve as in OpenAI's `factored_buttons_to_groups` (see the module docstring).
    """
    button_class = np.zeros(pressed.shape[0], dtype=np.int64)
    for (name, options), stride in zip(BUTTON_GROUPS.items(), _GROUP_STRIDES):
        if name == "camera":
            choice = camera_moves.astype(np.int64)
        else:
            in_group = pressed[:, [_COLUMN[button] for button in options[1:]]]
            # OpenAI walks the pressed options in group order and keeps the last one
            choice = (in_group * np.arange(1, len(options))).max(axis=1)
            if name in CANCELLING_GROUPS:
                choice[in_group.all(axis=1)] = 0
        button_class += choice * stride
    return np.where(pressed[:, _COLUMN["inventory"]], INVENTORY_CLASS, button_class)


def class_to_buttons(button_class: Int[np.ndarray, " b"]) -> tuple[Bool[np.ndarray, "b 20"], Bool[np.ndarray, " b"]]:
    """Button class -> (buttons pressed in `VPT_BUTTONS` order, whether the camera head is ignored)."""
    _check_classes(button_class, N_BUTTON_CLASSES, "button")
    return _PRESSED_BY_CLASS[button_class], _CAMERA_OFF_BY_CLASS[button_class]


# ----------------------------------------------------------------------------- MineRL dicts


def _read_minerl(action: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Check a MineRL action, single or batched -> (pressed (B, 20) bool, camera degrees (B, 2))."""
    if not isinstance(action, Mapping):
        raise TypeError(f"expected a MineRL action dict, got {type(action).__name__}")
    unknown = sorted(set(action) - {*MINERL_BUTTONS, "camera"})
    if unknown:
        raise ValueError(f"unknown MineRL action keys {unknown}; the keys are 'camera' and {', '.join(MINERL_BUTTONS)}")
    if "camera" not in action:
        raise ValueError("the action has no 'camera'; give camera=[pitch, yaw] in degrees ([0, 0] for no turn)")
    degrees = np.asarray(action["camera"])
    if degrees.dtype.kind not in "biuf":
        raise ValueError(f"camera must be numbers (degrees), got dtype {degrees.dtype}")
    if degrees.dtype.kind != "f":
        degrees = degrees.astype(np.float64)  # what OpenAI's arithmetic turns integers into
    degrees_b2 = degrees[None] if degrees.ndim == 1 else degrees
    if degrees_b2.ndim != 2 or degrees_b2.shape[1] != 2:
        raise ValueError(f"camera must be [pitch, yaw], shape (2,) or (B, 2), got shape {degrees.shape}")
    if not np.isfinite(degrees_b2).all():
        raise ValueError(f"camera must be finite degrees, got {degrees_b2[~np.isfinite(degrees_b2).all(1)][:3]}")

    n_rows = degrees_b2.shape[0]
    pressed_b20 = np.zeros((n_rows, len(VPT_BUTTONS)), dtype=bool)
    for key in MINERL_BUTTONS:
        if key not in action:
            continue  # an absent button is not pressed, as in OpenAI's `acs.get(k, 0)`
        value = np.asarray(action[key])
        if value.ndim > 1 or (value.ndim == 1 and value.shape[0] != n_rows):
            raise ValueError(
                f"'{key}' has shape {value.shape} but camera has {n_rows} row(s); give a scalar or shape ({n_rows},)"
            )
        if value.dtype.kind not in "biuf" or not ((value == 0) | (value == 1)).all():  # np.isin: 25x slower
            raise ValueError(f"'{key}' must be 0 or 1 (or bool), got {value.tolist()}")
        if key in _COLUMN:
            pressed_b20[:, _COLUMN[key]] = value == 1
    return pressed_b20, degrees_b2


def minerl_to_factored(action: Mapping[str, Any]) -> tuple[Int[np.ndarray, " b"], Int[np.ndarray, " b"]]:
    """A MineRL action dict -> (button classes, camera classes), int64, each shape (B,).

    `action` is one step (button scalars, camera [pitch, yaw] shape (2,); then B = 1) or B
    steps (buttons shape (B,) or scalars shared by all rows, camera (B, 2)). Buttons left
    out are not pressed; `camera` is required.
    """
    pressed_b20, degrees_b2 = _read_minerl(action)
    bins_b2 = quantize_camera(degrees_b2)
    buttons_b = buttons_to_class(pressed_b20, (bins_b2 != CAMERA_NULL_BIN).any(axis=1))
    camera_b = bins_b2[:, 0] * N_CAMERA_BINS + bins_b2[:, 1]
    camera_b[buttons_b == INVENTORY_CLASS] = CAMERA_NULL_CLASS  # the inventory excludes the camera
    return buttons_b, camera_b


def factored_to_minerl(buttons: Int[np.ndarray, " b"], camera: Int[np.ndarray, " b"]) -> list[dict[str, Any]]:
    """(button classes, camera classes), each shape (B,) -> a list of B MineRL action dicts.

    Each dict has every MineRL key: buttons as int 0/1 (`ESC`, `pickItem`, `swapHands`
    always 0) and `camera` a float32 array [pitch, yaw] in degrees (OpenAI's float64
    values, rounded to the dtype of MineRL's camera space).
    """
    if buttons.shape != camera.shape:
        raise ValueError(f"buttons {buttons.shape} and camera {camera.shape} must be shape (B,) with the same B")
    _check_classes(camera, N_CAMERA_CLASSES, "camera")
    pressed_b20, camera_off_b = class_to_buttons(buttons)
    bins_b2 = np.stack([camera // N_CAMERA_BINS, camera % N_CAMERA_BINS], axis=1).astype(np.int64)
    bins_b2[camera_off_b] = CAMERA_NULL_BIN
    degrees_b2 = dequantize_camera(bins_b2).astype(np.float32)
    actions = []
    for pressed, degrees in zip(pressed_b20.astype(int).tolist(), degrees_b2):
        action: dict[str, Any] = dict.fromkeys(MINERL_BUTTONS, 0)
        action.update(zip(VPT_BUTTONS, pressed))
        action["camera"] = degrees
        actions.append(action)
    return actions


def get_null_action() -> dict[str, Any]:
    """The MineRL action that does nothing: no button, camera [0, 0]."""
    return factored_to_minerl(np.array([NULL_BUTTON_CLASS]), np.array([CAMERA_NULL_CLASS]))[0]
