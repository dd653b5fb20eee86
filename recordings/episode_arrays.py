"""What an episode stores per step: the arrays' specs (PROTOCOL.md documents them) and the ground truth's
encodings."""

from typing import TYPE_CHECKING

import numpy as np

from vptlens.agents.policy import VPTPolicy
from vptlens.minerl_spec import MINERL_BUTTONS
from vptlens.recordings import schema as S
from vptlens.recordings.writer import TEXT, ArraySpec

if TYPE_CHECKING:
    from vptlens.recordings.recorder import RecordConfig


def frame_shape(policy: VPTPolicy | None) -> tuple[int, int, int]:
    """What an episode's `frames` hold: the policy's input (`img_shape`; the released models' 128x128x3), or
    128x128x3 for a scripted agent (what a released policy would have seen)."""
    return (128, 128, 3) if policy is None else tuple(policy.cfg.img_shape)


def episode_specs(policy: VPTPolicy | None, cfg: "RecordConfig", hook_names: list[str]) -> dict[str, ArraySpec]:
    """Every per-step array an episode stores (documented in PROTOCOL.md); a scripted agent (`policy` None) has
    no log-probabilities, entropies, value, attention or activations."""
    specs = {
        S.FRAMES: ArraySpec(frame_shape(policy), "uint8", 64, "the agent-resolution frame the policy saw", "RGB"),
        S.action_array("buttons"): ArraySpec((), "int32", 64, "joint button class taken (0..8640)", "class"),
        S.action_array("camera"): ArraySpec(
            (), "int32", 64, "camera class taken (0..120) = pitch_bin * 11 + yaw_bin", "class"
        ),
        S.minerl_action_array("camera"): ArraySpec(
            (2,), "float32", 64, "camera action sent to the env", "degrees [pitch, yaw]"
        ),
        S.LOG_PROB: ArraySpec((), "float32", 64, "log-probability of the action taken (both heads)", "nats"),
        S.entropy_array("buttons"): ArraySpec((), "float32", 64, "entropy of the button head", "nats"),
        S.entropy_array("camera"): ArraySpec((), "float32", 64, "entropy of the camera head", "nats"),
        S.VALUE: ArraySpec((), "float32", 64, "value head output (denormalised)", ""),
        S.REWARD: ArraySpec((), "float32", 64, "env reward after the action", ""),
        S.TERMINATED: ArraySpec((), "bool", 64, "the env ended the episode after this step", ""),
        S.TRUNCATED: ArraySpec((), "bool", 64, "the episode was cut after this step", ""),
        S.ground_truth_array("pose"): ArraySpec(
            (5,), "float32", 64, "player pose when the frame was seen", "x, y, z, pitch, yaw"
        ),
        S.ground_truth_array("crosshair"): ArraySpec(
            (), TEXT, 64, "what the crosshair was on (JSON)", "env's info['crosshair']"
        ),
        S.ground_truth_array("nearest_log"): ArraySpec(
            (4,), "float32", 64, "tree trunk (log block) nearest the eyes; NaN if none or unknown", "x, y, z, distance"
        ),
        S.ground_truth_array("visible_entities"): ArraySpec(
            (), TEXT, 64, "mobs on screen with pixel boxes (JSON)", "x0, y0, x1, y1"
        ),
        S.ground_truth_array("events"): ArraySpec(
            (), TEXT, 64, "events of the step that produced the frame (JSON)", ""
        ),
    }
    for key in MINERL_BUTTONS:
        specs[S.minerl_action_array(key)] = ArraySpec((), "uint8", 64, f"MineRL '{key}' sent to the env", "0/1")
    if cfg.full_frames:
        specs[S.FRAMES_FULL] = ArraySpec((cfg.env.height, cfg.env.width, 3), "uint8", 16, "the env's full frame", "RGB")
    if policy is None:
        return {k: v for k, v in specs.items() if k not in _POLICY_OUTPUTS}
    pc = policy.cfg
    T = pc.memory_len + 1
    for layer in range(pc.n_recurrence_layers):
        specs[S.attention_array(layer)] = ArraySpec(
            (pc.attention_heads, T),
            "float16",
            64,
            f"block {layer}'s attention of the current frame over its memory",
            f"lag: column {T - 1} is the current frame, column {T - 1}-k is k steps back",
        )
    dims = {
        "d": pc.hidsize,
        "f": pc.hidsize * pc.pointwise_ratio,
        "n": pc.attention_heads,
        "k": pc.head_dim,
        "T": T,
        "a": 8641,
        "c": 121,
    }
    for name in hook_names:
        shape = tuple(dims[c] for c in policy.hook_dims(step=True)[name].split() if c != "b")
        specs[S.activation_array(name)] = ArraySpec(shape, "float16", 64, f"hook {name} at each step", "")
    return specs


_POLICY_OUTPUTS = {S.LOG_PROB, S.entropy_array("buttons"), S.entropy_array("camera"), S.VALUE}


def nearest_log_array(log: dict | None) -> np.ndarray:
    """info['nearest_log'] as [x, y, z, distance] (NaN where the env reports none, e.g. MineRL)."""
    if not log:
        return np.full(4, np.nan, np.float32)
    return np.array([*log["pos"], log["distance"]], np.float32)
