"""Action mapping: against OpenAI's reference, hand-computed values, and round trips."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vptlens.agents.actions import (
    CAMERA_NULL_CLASS,
    FACTORED_BUTTONS,
    INVENTORY_CLASS,
    MINERL_BUTTONS,
    N_BUTTON_CLASSES,
    N_CAMERA_CLASSES,
    NULL_BUTTON_CLASS,
    class_to_buttons,
    dequantize_camera,
    factored_to_minerl,
    minerl_to_factored,
    null_action,
    quantize_camera,
)

ORACLE = Path(__file__).parent / "fixtures" / "actions_oracle.npz"


def test_class_counts_and_null_classes():
    assert (N_BUTTON_CLASSES, N_CAMERA_CLASSES) == (8641, 121)
    assert (NULL_BUTTON_CLASS, CAMERA_NULL_CLASS, INVENTORY_CLASS) == (0, 60, 8640)
    b, c = minerl_to_factored(null_action())
    assert (b[0], c[0]) == (0, 60)


def test_matches_openai_reference_both_ways():
    # tests/fixtures/actions_oracle.npz: 3000 random actions run through OpenAI's
    # ActionTransformer (mu-law, as released) and CameraHierarchicalMapping.
    o = np.load(ORACLE)
    env = {k: o["env_buttons"][:, i] for i, k in enumerate(FACTORED_BUTTONS)}
    env["camera"] = o["env_camera"]
    buttons, camera = minerl_to_factored(env)
    np.testing.assert_array_equal(buttons, o["ref_button_class"])
    np.testing.assert_array_equal(camera, o["ref_camera_class"])
    actions = factored_to_minerl(o["classes_buttons"], o["classes_camera"])
    for i, key in enumerate(FACTORED_BUTTONS):
        np.testing.assert_array_equal([a[key] for a in actions], o["ref_factored_buttons"][:, i])
    np.testing.assert_allclose([a["camera"] for a in actions], o["ref_factored_camera"], atol=1e-5)


def test_mu_law_by_hand():
    # bin = round((10 * sign(x) * ln(1 + 10|x|/10) / ln(11) + 10) / 2)
    np.testing.assert_array_equal(
        quantize_camera(np.array([0.0, 10.0, -10.0, 100.0, -180.0, 1.0, -1.0])), [5, 10, 0, 10, 0, 6, 4]
    )
    # degrees = sign * (11 ** |(2 * bin - 10) / 10| - 1)
    np.testing.assert_allclose(
        dequantize_camera(np.array([5, 6, 7, 8, 9, 10, 0])),
        [0.0, 0.6153942, 1.6094986, 3.2153691, 5.8094831, 10.0, -10.0],
        atol=1e-6,
    )


def test_hand_built_actions():
    action = {"forward": 1, "attack": 1, "camera": np.array([0.0, 10.0])}
    buttons, camera = minerl_to_factored(action)
    assert (buttons[0], camera[0]) == (288 + 4 + 1, 65)  # strides: fore_back 288, attack 4, camera meta 1
    back = factored_to_minerl(buttons, camera)[0]
    assert {k for k in MINERL_BUTTONS if back[k]} == {"forward", "attack"}
    np.testing.assert_allclose(back["camera"], [0.0, 10.0])
    assert back["ESC"] == 0 and set(back) == {*MINERL_BUTTONS, "camera"}

    buttons, camera = minerl_to_factored({"hotbar.3": 1, "jump": 1, "camera": [0.1, -0.1]})
    assert (buttons[0], camera[0]) == (3 * 864 + 2, 60)  # camera rounds to the null bin: meta action off


def test_conflicts_resolve_as_in_openai_code():
    both = minerl_to_factored({"forward": 1, "back": 1, "left": 1, "right": 1, "camera": [0, 0]})
    assert both[0][0] == NULL_BUTTON_CLASS
    sprint_sneak = factored_to_minerl(*minerl_to_factored({"sprint": 1, "sneak": 1, "camera": [0, 0]}))[0]
    assert sprint_sneak["sneak"] == 1 and sprint_sneak["sprint"] == 0
    hotbars = factored_to_minerl(*minerl_to_factored({"hotbar.2": 1, "hotbar.7": 1, "camera": [0, 0]}))[0]
    assert hotbars["hotbar.7"] == 1 and hotbars["hotbar.2"] == 0
    inventory = minerl_to_factored({"inventory": 1, "forward": 1, "camera": [5.0, 5.0]})
    assert (inventory[0][0], inventory[1][0]) == (INVENTORY_CLASS, CAMERA_NULL_CLASS)


def test_batched_and_single_agree():
    rng = np.random.default_rng(0)
    batch = {k: rng.integers(0, 2, 16) for k in FACTORED_BUTTONS}
    batch["camera"] = rng.uniform(-12, 12, (16, 2))
    buttons, camera = minerl_to_factored(batch)
    for i in range(16):
        single = {k: int(v[i]) for k, v in batch.items() if k != "camera"} | {"camera": batch["camera"][i]}
        b, c = minerl_to_factored(single)
        assert (b[0], c[0]) == (buttons[i], camera[i])


def _consistent_factored():
    # A factored action the policy can take and that maps back to itself: the camera class
    # is the null one exactly when the button class's camera meta action is off.
    def fix(buttons: int, camera: int) -> tuple[int, int]:
        _, camera_off = class_to_buttons(np.array([buttons]))
        if buttons == INVENTORY_CLASS:
            return buttons, CAMERA_NULL_CLASS
        if camera_off[0]:
            return buttons, CAMERA_NULL_CLASS
        return buttons, camera if camera != CAMERA_NULL_CLASS else CAMERA_NULL_CLASS + 1

    return st.builds(fix, st.integers(0, N_BUTTON_CLASSES - 1), st.integers(0, N_CAMERA_CLASSES - 1))


@given(_consistent_factored())
def test_round_trip_factored_dict_factored(action):
    buttons, camera = action
    back = minerl_to_factored(factored_to_minerl(np.array([buttons]), np.array([camera]))[0])
    assert (back[0][0], back[1][0]) == (buttons, camera)


@given(
    st.fixed_dictionaries(
        {
            "fore_back": st.sampled_from([None, "forward", "back"]),
            "left_right": st.sampled_from([None, "left", "right"]),
            "sprint_sneak": st.sampled_from([None, "sprint", "sneak"]),
            "hotbar": st.sampled_from([None, *(f"hotbar.{i}" for i in range(1, 10))]),
            "singles": st.sets(st.sampled_from(["use", "drop", "attack", "jump"])),
            "camera_bins": st.tuples(st.integers(0, 10), st.integers(0, 10)),
        }
    )
)
def test_round_trip_dict_factored_dict(spec):
    pressed = {spec[g] for g in ("fore_back", "left_right", "sprint_sneak", "hotbar") if spec[g]} | spec["singles"]
    camera = dequantize_camera(np.array(spec["camera_bins"])).astype(np.float32)
    action = {k: int(k in pressed) for k in MINERL_BUTTONS} | {"camera": camera}
    back = factored_to_minerl(*minerl_to_factored(action))[0]
    assert {k for k in MINERL_BUTTONS if back[k]} == pressed
    np.testing.assert_allclose(back["camera"], camera, atol=1e-5)


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match="unknown MineRL action keys"):
        minerl_to_factored({"fly": 1, "camera": [0, 0]})
    with pytest.raises(ValueError, match="camera must be"):
        minerl_to_factored({"camera": [0, 0, 0]})
    with pytest.raises(ValueError, match="no 'camera'"):
        minerl_to_factored({"forward": 1})
    with pytest.raises(ValueError, match="button classes must be in"):
        factored_to_minerl(np.array([8641]), np.array([0]))
    with pytest.raises(ValueError, match="camera classes must be in"):
        factored_to_minerl(np.array([0]), np.array([-1]))
