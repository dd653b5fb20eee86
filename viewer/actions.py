"""The policy's two heads read as per-key probabilities: P(attack), P(forward), ..., P(camera ←) ...

The button head is a joint distribution over 8641 classes and the camera head one over 121 bins
(`agents/actions.py`), which nobody reads at a glance. A key's probability is the total mass of the
button classes that press it; a camera direction's is P(the camera moves) (the button classes whose
camera meta action is on) times the camera head's mass on the bins of that direction (yaw bin left or
right of the centre; pitch bin above or below it; pitch positive looks down).
"""

import numpy as np
import torch
from jaxtyping import Float

from vptlens.agents.actions import CAMERA_NULL_BIN, N_CAMERA_BINS, N_CAMERA_CLASSES, VPT_BUTTONS, class_to_buttons
from vptlens.agents.policy import N_BUTTON_CLASSES

KEYS = ("attack", "forward", "back", "left", "right", "jump", "sneak", "sprint", "use", "drop", "inventory")
"""Buttons shown, in the order people think of them (hotbar keys left out: the agents barely press them)."""
CAMERA = ("camera ←", "camera →", "camera ↑", "camera ↓")
LABELS = (*KEYS, "camera moves", *CAMERA)
"""Every probability `key_probabilities` returns, in display order."""

_pressed, _camera_off = class_to_buttons(np.arange(N_BUTTON_CLASSES))
_BUTTON_MASKS = np.stack([*(_pressed[:, VPT_BUTTONS.index(k)] for k in KEYS), ~_camera_off]).astype(
    np.float64
)  # (keys + 1, 8641)
_pitch, _yaw = np.divmod(np.arange(N_CAMERA_CLASSES), N_CAMERA_BINS)
_CAMERA_MASKS = np.stack(
    [_yaw < CAMERA_NULL_BIN, _yaw > CAMERA_NULL_BIN, _pitch < CAMERA_NULL_BIN, _pitch > CAMERA_NULL_BIN]
).astype(np.float64)  # (4, 121): left, right, up, down


def key_probabilities(
    buttons_logits: Float[torch.Tensor, "*b 8641"], camera_logits: Float[torch.Tensor, "*b 121"]
) -> Float[np.ndarray, "*b k"]:
    """P of each of `LABELS` (last axis) from the heads' logits (normalised here), float64."""
    pb = torch.softmax(buttons_logits.double(), -1).cpu().numpy()
    pc = torch.softmax(camera_logits.double(), -1).cpu().numpy()
    buttons = pb @ _BUTTON_MASKS.T  # (..., keys + 1): the last is P(camera moves)
    camera = buttons[..., -1:] * (pc @ _CAMERA_MASKS.T)
    return np.concatenate([buttons, camera], -1)
