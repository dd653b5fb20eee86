"""MineCLIP against the authors' code: tokenisation exactly, the encoders and the reward head at 1e-4.

The reference outputs in tests/fixtures/mineclip_tiny were computed by MineDojo/MineCLIP's and STEVE-1's own
code on a MineCLIP with the released architecture at small widths (scripts/make_mineclip_fixtures.py).
"""

import dataclasses
import gzip
import hashlib
import importlib.metadata
import json
import sys

import numpy as np
import pytest
import torch
from conftest import FIXTURES_DIR
from safetensors.torch import load_file

from vptlens.agents import mineclip_tokenizer as tk
from vptlens.agents.goals import goal_from_video, read_goal_frames
from vptlens.agents.mineclip import MineCLIP, MineCLIPConfig, check_state_dict, load_mineclip, read_mineclip_state

FIXTURE = FIXTURES_DIR / "mineclip_tiny"
ATOL = RTOL = 1e-4


def tiny_config() -> MineCLIPConfig:
    """Our config for the fixture's model (its `config.json` holds the authors' constructor arguments)."""
    cfg = json.loads((FIXTURE / "config.json").read_text())
    clip = cfg["clip"]
    heads = int(cfg["pool_type"].split(".nh")[1].split(".")[0])
    return MineCLIPConfig(
        embed_dim=clip["embed_dim"],
        image_size=tuple(cfg["resolution"]),
        vision_width=clip["vision_width"],
        vision_layers=clip["vision_layers"],
        text_width=clip["text_width"],
        text_layers=clip["text_layers"],
        text_heads=clip["text_heads"],
        temporal_heads=heads,
    )


@pytest.fixture(scope="module")
def tiny() -> MineCLIP:
    return load_mineclip(FIXTURE / "attn_tiny.pth", tiny_config())


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    return load_file(FIXTURE / "reference.safetensors")


@pytest.fixture(scope="module")
def tokenization() -> dict:
    return json.loads((FIXTURE / "tokenization.json").read_text())


def random_videos() -> torch.Tensor:
    """The fixture script's random videos (legacy RandomState: a stream numpy keeps fixed), as (b, t, h, w, c)."""
    cfg = json.loads((FIXTURE / "config.json").read_text())
    rng = np.random.RandomState(cfg["video_seed"])
    videos = rng.randint(0, 256, size=(2, 16, 3, *cfg["resolution"]), dtype=np.uint8)
    return torch.from_numpy(videos).permute(0, 1, 3, 4, 2)


def write_clip(path, fps: int, n_frames: int) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("png", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "rgb24"
        for i in range(n_frames):
            frame = np.full((48, 64, 3), 10 * i, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# ------------------------------------------------------------------------------------------ tokenizer


def test_tokenization_matches_authors_tokenizer_exactly(tokenization):
    tok = tk.get_tokenizer()
    for prompt, ids in zip(tokenization["prompts"], tokenization["bpe_ids"]):
        assert tok.encode(prompt) == ids, repr(prompt)
    assert tk.tokenize(tokenization["accepted"]).tolist() == tokenization["tokens"]


def test_tokens_are_clips_documented_ids():
    tokens = tk.tokenize("a photo of a cat")
    assert tokens.shape == (1, 77) and tokens.dtype == torch.int64
    assert tokens[0, :8].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407, 0]


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t "])
def test_empty_prompt_is_refused(prompt):
    with pytest.raises(ValueError, match="empty"):
        tk.tokenize(prompt)


def test_prompt_longer_than_the_context_is_refused(tokenization):
    fits, too_long = " ".join(["mine"] * 75), " ".join(["mine"] * 76)
    assert tk.tokenize(fits)[0, 76].item() == tk.EOT_ID
    with pytest.raises(ValueError, match="76 tokens long; MineCLIP reads at most 75"):
        tk.tokenize(["chop a tree", too_long])


def test_control_token_in_prompt_is_refused():
    with pytest.raises(ValueError, match="control token"):
        tk.tokenize("chop a tree<|endoftext|>")


def test_missing_vocabulary_package_names_the_install(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(tk.importlib.metadata, "distribution", missing)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps 'open-clip-torch"):
        tk.find_vocab_file()


def test_another_vocabulary_file_is_refused(tmp_path):
    path = tmp_path / tk.VOCAB_FILE
    path.write_bytes(gzip.compress(b"#version: 0.2\ni n\n"))
    with pytest.raises(ValueError, match="not CLIP's"):
        tk.read_merges(path)


# ------------------------------------------------------------------------------------------ encoders


def test_text_encoder_matches_reference(tiny, reference, tokenization):
    with torch.no_grad():
        text = tiny.encode_text(tk.tokenize(tokenization["accepted"]))
    torch.testing.assert_close(text, reference["text_features"], atol=ATOL, rtol=RTOL)


def test_frame_and_video_encoders_match_reference(tiny, reference):
    videos = random_videos()
    with torch.no_grad():
        frames = tiny.encode_frames(videos)
        video = tiny.encode_video(videos)
    torch.testing.assert_close(frames, reference["image_features"], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(video, reference["video_features"], atol=ATOL, rtol=RTOL)


def test_reward_head_matches_reference(tiny, reference):
    logits = tiny.score(reference["video_features"], reference["text_features"])
    torch.testing.assert_close(logits, reference["logits_per_video"], atol=ATOL, rtol=RTOL)


def test_video_goal_matches_steve1_preprocessing(tiny, reference):
    frames, info = read_goal_frames(FIXTURE / "clip_20fps.avi")
    assert frames.shape == (16, 160, 256, 3) and info == {"fps": 20.0, "frames": [8, 23]}
    expected_sha = json.loads((FIXTURE / "config.json").read_text())["clip_frames_sha256"]
    assert hashlib.sha256(np.ascontiguousarray(frames.transpose(0, 3, 1, 2)).tobytes()).hexdigest() == expected_sha
    goal = goal_from_video(FIXTURE / "clip_20fps.avi", tiny)
    assert goal.embedding.dtype == np.float32 and goal.provenance["source"] == "video"
    np.testing.assert_allclose(goal.embedding, reference["clip_video_features"][0].numpy(), atol=ATOL, rtol=RTOL)


def test_video_goal_window_ends_at_the_chosen_frame(tiny):
    frames, info = read_goal_frames(FIXTURE / "clip_20fps.avi", end_frame=15)
    assert info["frames"] == [0, 15]
    last, _ = read_goal_frames(FIXTURE / "clip_20fps.avi")
    assert not np.array_equal(frames, last)
    with pytest.raises(ValueError, match="past the clip's last frame"):
        read_goal_frames(FIXTURE / "clip_20fps.avi", end_frame=40)


def test_video_at_another_frame_rate_is_refused(tmp_path):
    path = tmp_path / "clip_30fps.avi"
    write_clip(path, fps=30, n_frames=20)
    with pytest.raises(ValueError, match="30 fps, but MineCLIP embeds 16 consecutive frames"):
        read_goal_frames(path)


def test_too_short_video_is_refused(tmp_path):
    path = tmp_path / "short.avi"
    write_clip(path, fps=20, n_frames=10)
    with pytest.raises(ValueError, match="10 frames; a STEVE-1 goal is 16 frames"):
        read_goal_frames(path)


def test_video_without_pyav_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(ModuleNotFoundError, match=r"vpt-lens\[video\]"):
        read_goal_frames(FIXTURE / "clip_20fps.avi")


# ------------------------------------------------------------------------------------------ checkpoints


def test_released_checkpoint_layout_loads_strictly():
    """The released attn.pth's keys and shapes (listed from the authors' module) fit MineCLIPConfig()."""
    released = json.loads((FIXTURE / "released_keys.json").read_text())["keys"]
    with torch.device("meta"):
        model = MineCLIP()
        state = {name: torch.empty(shape) for name, shape in released}
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == {name.removeprefix("model."): shape for name, shape in released}
    stripped = {k.removeprefix("model."): v for k, v in state.items()}
    check_state_dict(model, stripped, "released", "MineCLIP")
    model.load_state_dict(stripped, strict=True, assign=True)


def test_checkpoint_prefix_and_wrapper_are_handled(tmp_path, tiny):
    state = read_mineclip_state(FIXTURE / "attn_tiny.pth")
    assert all(not k.startswith("model.") for k in state) and "clip_model.logit_scale" in state
    bare = tmp_path / "bare.pth"
    torch.save(tiny.state_dict(), bare)
    load_mineclip(bare, tiny_config())


def test_wrong_checkpoint_keys_are_named(tmp_path):
    state = read_mineclip_state(FIXTURE / "attn_tiny.pth")
    state["clip_model.text_model.ln_final.weight_renamed"] = state.pop("clip_model.text_model.ln_final.weight")
    path = tmp_path / "renamed.pth"
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}}, path)
    with pytest.raises(KeyError, match=r"missing \(1\): clip_model.text_model.ln_final.weight"):
        load_mineclip(path, tiny_config())
    wider = r"mis-shaped \(.*clip_model.text_model.pos_embed: file \(77, 16\) vs model \(77, 32\)"
    with pytest.raises(KeyError, match=wider):
        load_mineclip(FIXTURE / "attn_tiny.pth", dataclasses.replace(tiny_config(), text_width=32))


def test_files_that_are_not_checkpoints_are_refused(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="weights_only=True"):
        read_mineclip_state(junk)
    code = tmp_path / "code.pth"
    torch.save({"state_dict": {"model.x": torch.zeros(1)}, "hook": np.random.default_rng}, code)
    with pytest.raises(ValueError, match="refuses to execute"):
        read_mineclip_state(code)
    with pytest.raises(FileNotFoundError, match="mineclip-attn"):
        read_mineclip_state(tmp_path / "absent.pth")
