"""STEVE-1's prior and the prompt -> goal path against STEVE-1's own code (tests/fixtures/steve1_prior_tiny)."""

import json

import numpy as np
import pytest
import torch
from conftest import FIXTURES_DIR
from safetensors.torch import load_file
from test_mineclip import FIXTURE as MINECLIP_FIXTURE
from test_mineclip import tiny_config

from vptlens.agents.goals import describe_goal_pathway, goal_from_prompt, make_goal
from vptlens.agents.mineclip import MineCLIP, MineCLIPConfig, load_mineclip
from vptlens.agents.prior import PriorConfig, Steve1Prior, config_from_state, load_prior

FIXTURE = FIXTURES_DIR / "steve1_prior_tiny"
ATOL = RTOL = 1e-4


@pytest.fixture(scope="module")
def prior() -> Steve1Prior:
    return load_prior(FIXTURE / "prior_tiny.pt")


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    return load_file(FIXTURE / "reference.safetensors")


@pytest.fixture(scope="module")
def fixture_config() -> dict:
    return json.loads((FIXTURE / "config.json").read_text())


def test_prior_matches_reference(prior, reference, fixture_config):
    text, visual = reference["text_embeds"], reference["visual_embeds"]
    assert prior.cfg == PriorConfig(**{k: fixture_config[k] for k in ("input_dim", "hidden_dim", "latent_dim")})
    with torch.no_grad():
        torch.testing.assert_close(prior.encode(visual, text), reference["encoded"], atol=ATOL, rtol=RTOL)
        mean = prior.sample(text, deterministic=True)
        torch.testing.assert_close(mean, reference["decoded_mean"], atol=ATOL, rtol=RTOL)
        for seed in fixture_config["seeds"]:
            sampled = prior.sample(text, torch.Generator().manual_seed(seed))
            torch.testing.assert_close(sampled, reference[f"sampled_seed{seed}"], atol=ATOL, rtol=RTOL)


def test_goal_from_prompt_matches_steve1(prior, reference, fixture_config):
    """STEVE-1's get_prior_embed(prompt, mineclip, prior) after torch.manual_seed(seed)."""
    mineclip = load_mineclip(MINECLIP_FIXTURE / "attn_tiny.pth", tiny_config())
    for i, prompt in enumerate(fixture_config["prompts"]):
        for seed in fixture_config["seeds"]:
            goal = goal_from_prompt(prompt, mineclip, prior, seed=seed)
            expected = reference[f"prompt{i}_seed{seed}"][0].numpy()
            np.testing.assert_allclose(goal.embedding, expected, atol=ATOL, rtol=RTOL)
    assert goal.provenance["prompt"] == prompt and goal.provenance["seed"] == seed
    assert goal.provenance["prior"]["sha256"] == prior.provenance["sha256"]


def test_goal_from_prompt_is_a_512_float32_vector_fixed_by_its_seed():
    torch.manual_seed(0)
    mineclip = MineCLIP(
        MineCLIPConfig(vision_width=64, vision_layers=1, text_width=32, text_layers=1, text_heads=2, temporal_layers=1)
    ).eval()
    prior = Steve1Prior().eval()
    goal = goal_from_prompt("chop a tree", mineclip, prior, seed=3)
    assert goal.embedding.shape == (512,) and goal.embedding.dtype == np.float32
    assert goal.provenance == {
        "source": "prompt",
        "prompt": "chop a tree",
        "seed": 3,
        "deterministic": False,
        "mineclip": None,
        "prior": None,
    }
    np.testing.assert_array_equal(goal.embedding, goal_from_prompt("chop a tree", mineclip, prior, seed=3).embedding)
    assert not np.allclose(goal.embedding, goal_from_prompt("chop a tree", mineclip, prior, seed=4).embedding)
    mean = [goal_from_prompt("chop a tree", mineclip, prior, seed=s, deterministic=True).embedding for s in (3, 4)]
    np.testing.assert_array_equal(*mean)
    with pytest.raises(ValueError, match="empty"):
        goal_from_prompt(" ", mineclip, prior)


def test_released_prior_layout_loads_strictly():
    released = json.loads((FIXTURE / "released_keys.json").read_text())
    state = {name: torch.zeros(shape) for name, shape in released["keys"]}
    assert config_from_state(state, "released") == PriorConfig()
    prior = Steve1Prior()
    assert {k: list(v.shape) for k, v in prior.state_dict().items()} == dict(released["keys"])
    prior.load_state_dict(state, strict=True)


def test_wrong_prior_files_are_refused(tmp_path):
    state = torch.load(FIXTURE / "prior_tiny.pt", weights_only=True)
    state.pop("encoder.0.bias")
    path = tmp_path / "broken.pt"
    torch.save(state, path)
    with pytest.raises(KeyError, match=r"missing \(1\): encoder.0.bias"):
        load_prior(path)
    torch.save({"net.weight": torch.zeros(2)}, path)
    with pytest.raises(KeyError, match="not a STEVE-1 prior"):
        load_prior(path)
    torch.save({"state_dict": {"x": torch.zeros(2)}}, path)
    with pytest.raises(ValueError, match="state dict of tensors"):
        load_prior(path)


def test_make_goal_loads_the_zoo_files_and_checks_the_prompt_first(tmp_path, reference, fixture_config):
    with pytest.raises(ValueError, match="empty"):  # before looking for the (absent) checkpoints
        make_goal(prompt="", checkpoint_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="vptlens download mineclip-attn"):
        make_goal(prompt="chop a tree", checkpoint_dir=tmp_path)
    (tmp_path / "attn.pth").write_bytes((MINECLIP_FIXTURE / "attn_tiny.pth").read_bytes())
    (tmp_path / "steve1_prior.pt").write_bytes((FIXTURE / "prior_tiny.pt").read_bytes())
    prompt = fixture_config["prompts"][0]
    goal = make_goal(prompt=prompt, checkpoint_dir=tmp_path, seed=0, mineclip_cfg=tiny_config())
    np.testing.assert_allclose(goal.embedding, reference["prompt0_seed0"][0].numpy(), atol=ATOL, rtol=RTOL)
    assert goal.provenance["mineclip"]["path"] == str((tmp_path / "attn.pth").resolve())
    video = make_goal(video=MINECLIP_FIXTURE / "clip_20fps.avi", checkpoint_dir=tmp_path, mineclip_cfg=tiny_config())
    assert video.provenance["source"] == "video" and video.provenance["fps"] == 20.0
    np.save(tmp_path / "goal.npy", goal.embedding)
    loaded = make_goal(embedding=tmp_path / "goal.npy")
    np.testing.assert_array_equal(loaded.embedding, goal.embedding)
    with pytest.raises(ValueError, match="give one STEVE-1 goal"):
        make_goal(prompt="chop a tree", embedding=tmp_path / "goal.npy")


def test_goal_pathway_description():
    text = "\n".join(describe_goal_pathway(512))
    assert "MineCLIP 512" in text and "prior" in text and "16 frames at 20 fps" in text
