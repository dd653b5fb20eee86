"""Action mapping: OpenAI's reference outputs, hand-computed values, conflicts, round trips, bad input."""

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vptlens.agents.actions import (
    BUTTON_GROUPS,
    CAMERA_NULL_CLASS,
    INVENTORY_CLASS,
    MINERL_BUTTONS,
    N_BUTTON_CLASSES,
    N_CAMERA_CLASSES,
    NULL_BUTTON_CLASS,
    VPT_BUTTONS,
    buttons_to_class,
    class_to_buttons,
    dequantize_camera,
    factored_to_minerl,
    get_null_action,
    minerl_to_factored,
    quantize_camera,
)

ORACLE = Path(__file__).parent / "fixtures" / "actions_oracle.npz"


def _pressed(action: dict) -> set[str]:
    return {k for k in MINERL_BUTTONS if action[k]}


def _one(buttons: int, camera: int) -> dict:
    return factored_to_minerl(np.array([buttons]), np.array([camera]))[0]


def test_class_counts_and_null_classes():
    assert (N_BUTTON_CLASSES, N_CAMERA_CLASSES) == (8641, 121)
    assert (NULL_BUTTON_CLASS, CAMERA_NULL_CLASS, INVENTORY_CLASS) == (0, 60, 8640)
    null = get_null_action()
    assert set(null) == {*MINERL_BUTTONS, "camera"} and not _pressed(null)
    np.testing.assert_array_equal(null["camera"], [0.0, 0.0])
    buttons, camera = minerl_to_factored(null)
    assert (buttons.tolist(), camera.tolist()) == ([0], [60])


def test_classes_are_numbered_like_itertools_product_of_the_groups():
    # OpenAI numbers the joint classes by enumerating itertools.product over the groups
    pressed, camera_off = class_to_buttons(np.arange(N_BUTTON_CLASSES))
    for cls, combo in enumerate(itertools.product(*BUTTON_GROUPS.values())):
        expected = {choice for choice in combo[:-1] if choice != "none"}
        assert {VPT_BUTTONS[i] for i in np.flatnonzero(pressed[cls])} == expected
        assert camera_off[cls] == (combo[-1] == "none")
    assert {VPT_BUTTONS[i] for i in np.flatnonzero(pressed[INVENTORY_CLASS])} == {"inventory"}
    assert not camera_off[INVENTORY_CLASS]
    # and reading the buttons back gives every class again
    np.testing.assert_array_equal(buttons_to_class(pressed, ~camera_off), np.arange(N_BUTTON_CLASSES))


def test_mu_law_by_hand():
    # bin = round(5 + 5 * sign(x) * ln(1 + |x|) / ln(11)) for |x| <= 10 degrees:
    # 0.2 -> 5.380, 0.5 -> 5.845, 1 -> 6.445, 2 -> 7.291, 3 -> 7.890, 5 -> 8.736, 8 -> 9.581
    degrees = np.array([0.0, 0.2, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, -1.0, -5.0, 10.0, -10.0, 100.0, -180.0])
    bins = [5, 5, 6, 6, 7, 8, 9, 10, 4, 1, 10, 0, 10, 0]
    np.testing.assert_array_equal(quantize_camera(degrees), bins)
    np.testing.assert_array_equal(quantize_camera(degrees.astype(np.float32)), bins)
    # bin edges sit at |x| = 11 ** ((k - 4.5) / 5) - 1: 0.27097 between bins 5 and 6
    np.testing.assert_array_equal(quantize_camera(np.array([0.2709, 0.2711, -0.2711])), [5, 6, 4])
    # degrees = sign(b - 5) * (11 ** (|b - 5| / 5) - 1)
    np.testing.assert_allclose(
        dequantize_camera(np.arange(11)),
        [-10.0, -5.8094831, -3.2153691, -1.6094986, -0.6153942, 0.0, 0.6153942, 1.6094986, 3.2153691, 5.8094831, 10.0],
        atol=1e-6,
    )
    np.testing.assert_array_equal(quantize_camera(dequantize_camera(np.arange(11))), np.arange(11))


def test_matches_openai_reference_both_ways():
    # tests/fixtures/actions_oracle.npz: 3000 random actions run through OpenAI's
    # ActionTransformer (mu-law, as released) and CameraHierarchicalMapping.
    o = np.load(ORACLE)
    env = {k: o["env_buttons"][:, i] for i, k in enumerate(VPT_BUTTONS)} | {"camera": o["env_camera"]}
    buttons, camera = minerl_to_factored(env)
    np.testing.assert_array_equal(buttons, o["ref_button_class"])
    np.testing.assert_array_equal(camera, o["ref_camera_class"])
    actions = factored_to_minerl(o["classes_buttons"], o["classes_camera"])
    for i, key in enumerate(VPT_BUTTONS):
        np.testing.assert_array_equal([a[key] for a in actions], o["ref_factored_buttons"][:, i])
    camera_b2 = np.stack([a["camera"] for a in actions])
    np.testing.assert_array_equal(camera_b2, o["ref_factored_camera"].astype(np.float32))


def test_hand_built_actions():
    # strides: hotbar 864, fore_back 288, left_right 96, sprint_sneak 32, use 16, drop 8, attack 4, jump 2, camera 1
    buttons, camera = minerl_to_factored({"forward": 1, "attack": 1, "camera": np.array([0.0, 10.0])})
    assert (buttons.tolist(), camera.tolist()) == ([288 + 4 + 1], [5 * 11 + 10])
    back = factored_to_minerl(buttons, camera)[0]
    assert _pressed(back) == {"forward", "attack"} and set(back) == {*MINERL_BUTTONS, "camera"}
    assert back["camera"].dtype == np.float32 and back["camera"].tolist() == [0.0, 10.0]
    assert all(type(back[k]) is int for k in MINERL_BUTTONS)

    # a camera movement that rounds to the null bins turns the camera meta action off
    buttons, camera = minerl_to_factored({"hotbar.3": 1, "jump": 1, "camera": [0.1, -0.1]})
    assert (buttons.tolist(), camera.tolist()) == ([3 * 864 + 2], [60])
    buttons, camera = minerl_to_factored({"sneak": 1, "use": 1, "camera": [-1.0, 2.0]})
    assert (buttons.tolist(), camera.tolist()) == ([2 * 32 + 16 + 1], [4 * 11 + 7])


def test_conflicts_resolve_as_in_openai_code():
    def classes(**pressed) -> tuple[int, int]:
        buttons, camera = minerl_to_factored(pressed | {"camera": pressed.get("camera", [0.0, 0.0])})
        return int(buttons[0]), int(camera[0])

    assert classes(forward=1, back=1, left=1, right=1) == (NULL_BUTTON_CLASS, CAMERA_NULL_CLASS)
    assert classes(forward=1, back=1, right=1) == (2 * 96, CAMERA_NULL_CLASS)
    assert classes(sprint=1, sneak=1) == (2 * 32, CAMERA_NULL_CLASS)
    assert classes(**{"hotbar.2": 1, "hotbar.7": 1, "hotbar.5": 1}) == (7 * 864, CAMERA_NULL_CLASS)
    assert classes(inventory=1, forward=1, attack=1, camera=[5.0, 5.0]) == (INVENTORY_CLASS, CAMERA_NULL_CLASS)
    assert classes(ESC=1, pickItem=1, swapHands=1) == (NULL_BUTTON_CLASS, CAMERA_NULL_CLASS)
    # back to MineRL: with the meta action off the camera class is ignored; with the inventory it is not
    assert _one(288, 65)["camera"].tolist() == [0.0, 0.0]
    inventory = _one(INVENTORY_CLASS, 65)
    assert _pressed(inventory) == {"inventory"} and inventory["camera"].tolist() == [0.0, 10.0]


def test_batched_and_single_agree():
    rng = np.random.default_rng(0)
    batch = {k: rng.integers(0, 2, 16) for k in MINERL_BUTTONS} | {"camera": rng.uniform(-12, 12, (16, 2))}
    buttons, camera = minerl_to_factored(batch)
    assert buttons.shape == camera.shape == (16,) and buttons.dtype == camera.dtype == np.int64
    for i in range(16):
        single = {k: int(v[i]) for k, v in batch.items() if k != "camera"} | {"camera": batch["camera"][i]}
        b, c = minerl_to_factored(single)
        assert (b.tolist(), c.tolist()) == ([buttons[i]], [camera[i]])
        assert _pressed(_one(buttons[i], camera[i])) == _pressed(factored_to_minerl(buttons, camera)[i])
    # a scalar button applies to every row; an empty batch is fine
    shared = minerl_to_factored({"jump": 1, "camera": np.zeros((3, 2), np.float32)})
    assert shared[0].tolist() == [2, 2, 2]
    assert factored_to_minerl(*minerl_to_factored({"camera": np.zeros((0, 2))})) == []


@st.composite
def _consistent_factored(draw) -> tuple[int, int]:
    # a factored action that maps back to itself: the camera class is the null one exactly
    # when the camera meta action is off, and the inventory class always has it
    buttons = draw(st.integers(0, N_BUTTON_CLASSES - 1))
    _, camera_off = class_to_buttons(np.array([buttons]))
    if camera_off[0] or buttons == INVENTORY_CLASS:
        return buttons, CAMERA_NULL_CLASS
    return buttons, draw(st.integers(0, N_CAMERA_CLASSES - 1).filter(lambda c: c != CAMERA_NULL_CLASS))


@settings(deadline=None)
@given(_consistent_factored())
def test_round_trip_factored_dict_factored(action):
    buttons, camera = minerl_to_factored(_one(*action))
    assert (int(buttons[0]), int(camera[0])) == action


@settings(deadline=None)
@given(
    groups=st.tuples(*(st.sampled_from(options) for options in BUTTON_GROUPS.values() if "camera" not in options)),
    camera_bins=st.tuples(st.integers(0, 10), st.integers(0, 10)),
    inventory=st.booleans(),
)
def test_round_trip_dict_factored_dict(groups, camera_bins, inventory):
    # no conflicts: one option per group, or the inventory alone with a still camera
    pressed = {"inventory"} if inventory else set(groups) - {"none"}
    camera = dequantize_camera(np.array((5, 5) if inventory else camera_bins)).astype(np.float32)
    action = {k: int(k in pressed) for k in MINERL_BUTTONS} | {"camera": camera}
    back = factored_to_minerl(*minerl_to_factored(action))[0]
    assert {k: v for k, v in back.items() if k != "camera"} == {k: v for k, v in action.items() if k != "camera"}
    np.testing.assert_array_equal(back["camera"], camera)


@pytest.mark.parametrize(
    "action, message",
    [
        ({"fly": 1, "camera": [0, 0]}, "unknown MineRL action keys"),
        ({"forward": 1}, "no 'camera'"),
        ({"camera": [0, 0, 0]}, r"camera must be \[pitch, yaw\]"),
        ({"camera": np.zeros((2, 2, 2))}, r"camera must be \[pitch, yaw\]"),
        ({"camera": [np.nan, 0.0]}, "camera must be finite"),
        ({"camera": ["a", "b"]}, "camera must be numbers"),
        ({"forward": 2, "camera": [0, 0]}, "'forward' must be 0 or 1"),
        ({"jump": [1, 0], "camera": [0, 0]}, r"'jump' has shape \(2,\) but camera has 1 row"),
    ],
)
def test_bad_minerl_action_is_explained(action, message):
    with pytest.raises(ValueError, match=message):
        minerl_to_factored(action)


def test_bad_classes_are_explained():
    with pytest.raises(ValueError, match=r"button classes must be in \[0, 8641\).*got \[8641\]"):
        factored_to_minerl(np.array([8641]), np.array([0]))
    with pytest.raises(ValueError, match=r"camera classes must be in \[0, 121\).*got \[-1\]"):
        factored_to_minerl(np.array([0]), np.array([-1]))
    with pytest.raises(ValueError, match="button classes must be in"):
        class_to_buttons(np.array([-3]))
