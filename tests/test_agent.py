"""The MineRL-style Agent wrapper and VPT's preprocessing."""

import cv2
import numpy as np
import pytest
import torch

from vptlens.agents.actions import MINERL_BUTTONS, minerl_to_factored
from vptlens.agents.agent import Agent, preprocess_frames


def _obs(seed: int) -> dict:
    return {"pov": np.random.default_rng(seed).integers(0, 256, (360, 640, 3), dtype=np.uint8)}


def test_preprocess_is_opencv_inter_linear():
    pov = _obs(0)["pov"]
    expected = cv2.resize(pov, (128, 128), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(preprocess_frames(pov), expected)
    batch = preprocess_frames(np.stack([pov, pov[::-1]]))
    assert batch.shape == (2, 128, 128, 3)
    np.testing.assert_array_equal(batch[1], cv2.resize(pov[::-1].copy(), (128, 128), interpolation=cv2.INTER_LINEAR))
    with pytest.raises(ValueError, match="uint8"):
        preprocess_frames(pov.astype(np.float32))


def test_agent_acts_like_stepping_the_policy(vpt_tiny):
    agent = Agent(vpt_tiny, deterministic=True)
    state = vpt_tiny.initial_state(1)
    for t in range(4):
        obs = _obs(t)
        action = agent.act(obs)
        frame = torch.from_numpy(preprocess_frames(obs["pov"])[None])
        out, state = vpt_tiny.step(frame, torch.tensor([t == 0]), state)
        assert set(action) == {*MINERL_BUTTONS, "camera"} and action["ESC"] == 0
        assert agent.last["buttons"] == int(out.buttons_logits.argmax()) and agent.last["camera"] == int(
            out.camera_logits.argmax()
        )
        # the returned dict encodes the chosen classes (up to the camera meta action)
        assert minerl_to_factored(action)[0][0] == agent.last["buttons"]


def test_seeded_agents_repeat_and_reset_forgets(vpt_tiny):
    runs = []
    for _ in range(2):
        agent = Agent(vpt_tiny, seed=11)
        runs.append([agent.act(_obs(t))["camera"].tolist() + [agent.last["buttons"]] for t in range(5)])
    assert runs[0] == runs[1]
    agent = Agent(vpt_tiny, deterministic=True)
    first = [agent.act(_obs(t)) and agent.last["log_prob"] for t in range(3)]
    agent.reset()
    again = [agent.act(_obs(t)) and agent.last["log_prob"] for t in range(3)]
    np.testing.assert_allclose(first, again, rtol=1e-6)


def test_steve1_agent_needs_a_goal_and_guides(steve1_tiny, steve1_oracle):
    with pytest.raises(ValueError, match="goal"):
        Agent(steve1_tiny)
    agent = Agent(steve1_tiny, goal=steve1_oracle["goal_embed"][0], cond_scale=6.0, deterministic=True)
    assert agent.state.batch_size == 2
    action = agent.act(_obs(0))
    assert isinstance(action["camera"], np.ndarray) and action["camera"].shape == (2,)
