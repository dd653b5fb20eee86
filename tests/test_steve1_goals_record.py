"""STEVE-1 goals from a prompt or a clip through `vptlens record`, the experiment spec and `vptlens info`."""

import numpy as np
import pytest
import torch
from conftest import FIXTURES_DIR, fixture_paths

from vptlens.agents import goals
from vptlens.agents.info import describe
from vptlens.agents.loading import load_policy, sha256_file
from vptlens.agents.mineclip import MineCLIP, MineCLIPConfig, load_mineclip
from vptlens.agents.prior import Steve1Prior, load_prior
from vptlens.envs.blockworld import BlockWorldConfig
from vptlens.interventions.spec import SpecError, spec_from_dict
from vptlens.recordings import recorder
from vptlens.recordings.store import Episode

SMALL = MineCLIPConfig(vision_width=64, vision_layers=1, text_width=32, text_layers=1, text_heads=2, temporal_layers=1)
"""A MineCLIP with the released 512-d features (what STEVE-1's policy takes) and small everything else."""


@pytest.fixture
def checkpoints(tmp_path, monkeypatch):
    """attn.pth and steve1_prior.pt with random weights, in the zoo's file names; MineCLIP read at SMALL sizes."""
    monkeypatch.setattr(goals, "MineCLIPConfig", lambda: SMALL)
    torch.manual_seed(0)
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    state = {f"model.{k}": v for k, v in MineCLIP(SMALL).state_dict().items()}
    torch.save({"state_dict": state}, directory / "attn.pth")
    torch.save(Steve1Prior().state_dict(), directory / "steve1_prior.pt")
    return directory


def _record(tmp_path, **goal) -> Episode:
    model, weights = fixture_paths("steve1_tiny")
    cfg = recorder.RecordConfig(
        model=model,
        weights=weights,
        out=tmp_path / "run",
        env=BlockWorldConfig(height=64, width=64),
        n_episodes=1,
        n_envs=1,
        n_steps=6,
        **goal,
    )
    recorder.main(cfg)
    return Episode(tmp_path / "run" / "episode_000000.zarr")


def test_record_steve1_from_a_prompt(tmp_path, checkpoints):
    episode = _record(tmp_path, prompt="chop a tree", goal_seed=2, checkpoint_dir=checkpoints, cond_scale=6.0)
    meta = episode.meta
    expected = goals.goal_from_prompt(
        "chop a tree", load_mineclip(checkpoints / "attn.pth", SMALL), load_prior(checkpoints / "steve1_prior.pt"), 2
    )
    np.testing.assert_allclose(np.asarray(meta.goal, np.float32), expected.embedding, atol=1e-6)
    assert meta.cond_scale == 6.0 and meta.record_config["prompt"] == "chop a tree"
    source = meta.goal_source
    assert (source["source"], source["prompt"], source["seed"]) == ("prompt", "chop a tree", 2)
    assert source["mineclip"]["sha256"] == sha256_file(checkpoints / "attn.pth")
    assert source["prior"]["sha256"] == sha256_file(checkpoints / "steve1_prior.pt")


def test_record_steve1_from_a_clip(tmp_path, checkpoints):
    clip = FIXTURES_DIR / "mineclip_tiny" / "clip_20fps.avi"
    episode = _record(tmp_path, goal_video=clip, checkpoint_dir=checkpoints, cond_scale=7.0)
    source = episode.meta.goal_source
    assert source["source"] == "video" and source["fps"] == 20.0 and source["frames"] == [8, 23]
    assert len(episode.meta.goal) == 512


def test_record_refuses_bad_goals_before_recording(tmp_path, checkpoints):
    with pytest.raises(ValueError, match="give one STEVE-1 goal"):
        _record(tmp_path, prompt="chop a tree", goal=tmp_path / "goal.npy", checkpoint_dir=checkpoints)
    with pytest.raises(ValueError, match="empty"):
        _record(tmp_path, prompt="  ", checkpoint_dir=checkpoints)
    with pytest.raises(ValueError, match="needs a goal"):
        _record(tmp_path)
    assert not (tmp_path / "run").exists()


def test_spec_agents_take_a_prompt(tmp_path):
    model, weights = fixture_paths("steve1_tiny")
    spec = {
        "name": "prompted",
        "agents": [{"name": "steve", "model": str(model), "weights": str(weights), "prompt": "chop a tree"}],
        "scenes": ["villager_under_leaves"],
        "edits": [{"name": "none", "kind": "none"}],
    }
    agent = spec_from_dict(spec).agents[0]
    assert agent.prompt == "chop a tree" and agent.has_goal
    spec["agents"][0].update(prompt="", goal_video="missing.mp4")
    with pytest.raises(SpecError) as err:
        spec_from_dict(spec, tmp_path)
    assert any("prompt" in p and "empty" in p for p in err.value.problems)
    assert any("give one goal" in p for p in err.value.problems)


def test_info_shows_the_goal_pathway():
    text = describe(load_policy(*fixture_paths("steve1_tiny")), hooks=False)
    assert "prompt   CLIP BPE" in text and "16 frames at 20 fps" in text
