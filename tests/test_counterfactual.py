"""Counterfactual frames: the recorded camera path in the recorded scene reproduces the recording; in another
scene it shows another world, and the agent's view of both is compared step by step."""

import numpy as np
import pytest

from vptlens.interventions.counterfactual import counterfactual_frames, counterfactual_replay
from vptlens.recordings.store import Run


@pytest.fixture(scope="module")
def episode(tiny_run):
    return Run.open(tiny_run).episodes()[0]


def test_the_recorded_path_in_the_recorded_scene_gives_the_recorded_frames(episode):
    """The same poses and actions in the same scene: the recording again, but for the float32 rounding of stored poses
    (a sub-pixel shift on a few edge pixels)."""
    frames, full = counterfactual_frames(episode, episode.meta.scene)
    recorded = np.asarray(episode.frames[:])
    assert frames.shape == recorded.shape and full.shape[1:] == (64, 64, 3)
    assert np.array_equal(frames[0], recorded[0])
    differs = np.abs(frames.astype(int) - recorded.astype(int)).max(-1) > 0
    assert differs.mean() < 0.002 and differs.mean((1, 2)).max() < 0.01


def test_another_scene_changes_what_the_agent_sees_and_does(episode):
    result = counterfactual_replay(episode, "tree_at_spot", hooks=("blocks.1.hook_resid_post",))
    n = len(episode)
    assert result.frames.shape == (n, 128, 128, 3) and result.kl_buttons.shape == (n,)
    assert not np.array_equal(result.frames[0], np.asarray(episode.frames[0]))  # a trunk instead of the villager
    assert result.kl_buttons.mean() > 0 and result.activation_distance["blocks.1.hook_resid_post"].mean() > 0
    assert result.replay_max_abs_logprob_error < 1e-3  # row 0 is the recording itself
    same = counterfactual_replay(episode, episode.meta.scene)
    assert same.kl_buttons.mean() < 0.1 * result.kl_buttons.mean()
