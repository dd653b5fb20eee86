"""One replayer: it reproduces the recording, refuses another agent, and the replays built on it
(splice, saliency, branching at a step) agree with a direct run of the policy."""

import shutil

import numpy as np
import pytest
import torch
from conftest import fixture_paths, record_guided_steve1

from vptlens.agents import load_policy, make_random_policy
from vptlens.agents.distributions import log_prob
from vptlens.recordings.replay import saliency_maps
from vptlens.recordings.replayer import EpisodeReplayer, ReplayMismatch, load_recording_policy
from vptlens.recordings.store import Run

HOOK = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def episode(tiny_run):
    return Run.open(tiny_run).episodes()[1]


def direct_logits(policy, episode, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The policy stepped by hand over the recorded frames: (n, 8641) and (n, 121) logits."""
    frames = torch.from_numpy(np.asarray(episode.frames[:n]))
    state = policy.initial_state(1)
    buttons, camera = [], []
    for t in range(n):
        out, state = policy.step(frames[t : t + 1], torch.tensor([t == 0]), state)
        buttons.append(out.buttons_logits[0])
        camera.append(out.camera_logits[0])
    return torch.stack(buttons), torch.stack(camera)


def test_run_reproduces_a_direct_policy_run_and_the_recording(vpt_tiny, episode):
    replayer = EpisodeReplayer(episode, block_steps=64)
    blocks = list(replayer.run(names=[HOOK], rows=2))
    assert [(b.start, b.stop) for b in blocks] == [(0, 64), (64, 128)]
    buttons = torch.cat([b.out.buttons_logits[0] for b in blocks])
    camera = torch.cat([b.out.camera_logits[0] for b in blocks])
    ref_b, ref_c = direct_logits(vpt_tiny, episode, len(episode))
    torch.testing.assert_close(buttons, ref_b, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(camera, ref_c, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(blocks[0].out.buttons_logits[1], blocks[0].out.buttons_logits[0])  # rows alike
    stored = torch.from_numpy(np.asarray(episode.activation(HOOK)[:64], np.float32))
    torch.testing.assert_close(blocks[0].cache[HOOK][0], stored, atol=2e-2, rtol=1e-2)  # stored as float16
    assert 0 < replayer.max_error < 1e-3


def test_states_then_step_branch_exactly_where_run_goes(episode):
    replayer = EpisodeReplayer(episode)
    (block,) = list(replayer.run(stop=40))
    for t, state in replayer.states([0, 17, 39]):
        out, _ = replayer.step(t, state, rows=3)
        for row in range(3):
            torch.testing.assert_close(out.buttons_logits[row], block.out.buttons_logits[0, t], atol=1e-4, rtol=1e-4)


def test_hooks_edit_the_replay_and_flow_into_memory(episode):
    replayer = EpisodeReplayer(episode)
    at = 10

    def nudge(x, *, hook):
        x = x.clone()
        # row 1, one step, one feature: a shift of every feature alike would be taken out by the next LayerNorm (it
        # moved the logits by float rounding only, ~1e-6, which one CPU rounded to 0 at a later step)
        x[1, at, 0] += 10.0
        return x

    (block,) = list(replayer.run([(HOOK.replace("1.hook_resid_post", "0.hook_resid_post"), nudge)], rows=2, stop=30))
    diff = (block.out.buttons_logits[1] - block.out.buttons_logits[0]).abs().amax(-1)
    assert float(diff[:at].max()) == 0.0  # nothing before the edit
    assert float(diff[at]) > 0.1 and float(diff[at + 1 :].min()) > 1e-3  # the step itself, then through memory


def test_another_agent_is_refused(vpt_tiny, episode, tmp_path):
    other = make_random_policy(vpt_tiny.cfg, seed=5)
    with pytest.raises(ReplayMismatch, match="not the one that recorded"):
        list(EpisodeReplayer(episode, policy=other).run())
    model, weights = fixture_paths("vpt_tiny")
    changed = tmp_path / "agent.weights"
    shutil.copy(weights, changed)
    with changed.open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ValueError, match="sha256 differs"):
        load_recording_policy(episode, model, changed)
    with pytest.raises(FileNotFoundError, match="no such model file"):
        load_recording_policy(episode, tmp_path / "missing.model")


def test_saliency_is_the_gradient_of_a_direct_run(vpt_tiny, episode):
    """Saliency goes through the replayer: its map at step t is the blurred |d log pi(a_t) / d frame_t| of a direct
    run."""
    import cv2

    maps = saliency_maps(episode)
    frames = torch.from_numpy(np.asarray(episode.frames[:]))
    buttons = torch.from_numpy(np.asarray(episode.action("buttons")[:], np.int64))
    camera = torch.from_numpy(np.asarray(episode.action("camera")[:], np.int64))
    state = vpt_tiny.initial_state(1)
    for t in range(6):
        frame = frames[t : t + 1, None].float().requires_grad_(True)
        out, new_state = vpt_tiny(frame, torch.tensor([[t == 0]]), state)
        lp = log_prob(out, buttons[t : t + 1, None], camera[t : t + 1, None]).sum()
        (grad,) = torch.autograd.grad(lp, frame)
        state = new_state.detach()
        g = cv2.GaussianBlur(grad[0, 0].abs().amax(-1).numpy(), (0, 0), 2.0)
        expected = np.clip(g / max(float(np.percentile(g, 99.5)), 1e-12), 0, 1)
        np.testing.assert_allclose(maps[t], expected, atol=1e-4)


def test_guided_steve1_episodes_replay_with_their_goal_and_scale(tmp_path):
    out = tmp_path / "guided"
    goal = record_guided_steve1(out, goal_seed=3, cond_scale=4.0, n_episodes=1, n_envs=1, n_steps=40)
    episode = Run.open(out).episodes()[0]
    assert episode.meta.cond_scale == 4.0 and np.allclose(episode.meta.goal, goal)
    (tmp_path / "guided_goal.npy").unlink()  # the goal now travels inside the episode
    replayer = EpisodeReplayer(episode, block_steps=64)
    (block,) = list(replayer.run(rows=2))
    assert block.out.buttons_logits.shape[:2] == (2, 40) and replayer.max_error < 1e-3
    # and the same policy without guidance does not reproduce it
    policy = load_policy(*fixture_paths("steve1_tiny"))
    unguided = EpisodeReplayer(episode, policy=policy)
    unguided.cond_scale = None
    with pytest.raises(ReplayMismatch):
        list(unguided.run())


def test_splice_through_the_replayer_equals_a_direct_edited_run(vpt_tiny, episode):
    """The KL that `splice_kl` reports is the KL between a direct clean run and a direct run with the same edit."""
    from vptlens.probes.sae.splice import kl_divergence, splice_kl

    n = 48
    result = splice_kl(vpt_tiny, [episode], HOOK, lambda x: x + 0.5, max_steps_per_episode=n, block_steps=32)
    clean_b, clean_c = direct_logits(vpt_tiny, episode, n)
    with vpt_tiny.hooks([(HOOK, lambda x, hook: x + 0.5)]):
        edit_b, edit_c = direct_logits(vpt_tiny, episode, n)
    assert result.kl_buttons == pytest.approx(float(kl_divergence(clean_b, edit_b).mean()), rel=1e-3)
    assert result.kl_camera == pytest.approx(float(kl_divergence(clean_c, edit_c).mean()), rel=1e-3)
    assert result.kl_buttons > 0 and result.replay_max_abs_logprob_error < 1e-3


def test_replay_and_summary_refuse_bad_input_before_writing(episode, tmp_path):
    from vptlens.recordings import replay

    existing = tmp_path / "old.mp4"
    existing.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="--overwrite"):
        replay.main(replay.ReplayConfig(episode.path, out=existing))
    assert existing.read_bytes() == b"keep me"
    with pytest.raises(KeyError, match="not 7"):
        replay.main(replay.ReplayConfig(episode.path, out=tmp_path / "a.mp4", layer=7))
    with pytest.raises(ValueError, match="4 heads"):
        replay.main(replay.ReplayConfig(episode.path, out=tmp_path / "a.mp4", head="4"))
    with pytest.raises(ValueError, match="head index"):
        replay.ReplayConfig(episode.path, head="first")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.mp4"]
    replay.summary(replay.SummaryConfig(episode.path, out=tmp_path / "s.png"))
    assert (tmp_path / "s.png").stat().st_size > 0


def test_a_recording_without_checksums_needs_the_files_given(episode, tmp_path):
    import zarr

    copy = tmp_path / "episode.zarr"
    shutil.copytree(episode.path, copy)
    shutil.copytree(episode.path.parent / "agent", tmp_path / "agent")
    group = zarr.open_group(str(copy), mode="r+")
    group.attrs["agent"] = {**group.attrs["agent"], "weights_sha256": None}
    from vptlens.recordings.store import Episode

    unchecked = Episode(copy)
    with pytest.raises(ValueError, match="records no sha256 for its weights file"):
        load_recording_policy(unchecked)
    model, weights = fixture_paths("vpt_tiny")
    assert load_recording_policy(unchecked, weights_path=weights).cfg == load_policy(model, weights).cfg


def test_the_agent_is_kept_in_the_run_and_recorded_paths_are_never_followed_outside_it(episode, tmp_path):
    """Issue 12, finding 5: a run's provenance paths resolve only inside the run (RUN/agent/, hard links of the
    recording's files); an absolute path, a `../` or a symlink out of the run is refused even when it points to the
    right file, and the user's own --model/--weights are always taken (sha256-checked)."""
    import os

    import zarr

    from vptlens.recordings.store import Episode

    model, weights = fixture_paths("vpt_tiny")
    agent = episode.meta.agent
    assert (agent.model_path, agent.weights_path) == ("agent/agent.model", "agent/agent.weights")
    assert (episode.path.parent / agent.weights_path).read_bytes() == weights.read_bytes()
    run = tmp_path / "run"
    run.mkdir()
    shutil.copytree(episode.path, run / "episode.zarr")
    group = zarr.open_group(str(run / "episode.zarr"), mode="r+")
    outside = tmp_path / "elsewhere"
    shutil.copytree(episode.path.parent / "agent", outside)
    for recorded in (
        str(outside / "agent.weights"),
        "../elsewhere/agent.weights",
        "agent/../../elsewhere/agent.weights",
    ):
        group.attrs["agent"] = {**agent.to_dict(), "model_path": recorded.replace("weights", "model"),
                                "weights_path": recorded}  # fmt: skip
        with pytest.raises(FileNotFoundError, match="outside its run"):
            load_recording_policy(Episode(run / "episode.zarr"))
    group.attrs["agent"] = agent.to_dict()
    os.symlink(outside, run / "agent")  # the run's agent folder is a link out of the run
    with pytest.raises(FileNotFoundError, match="outside its run"):
        load_recording_policy(Episode(run / "episode.zarr"))
    assert load_recording_policy(Episode(run / "episode.zarr"), model, weights).cfg == load_policy(model, weights).cfg


def test_an_episode_without_steps_is_a_clear_error_not_a_crash(episode, tmp_path):
    import zarr

    from vptlens.probes import attention
    from vptlens.recordings import replay

    empty = tmp_path / "episode_000000.zarr"
    shutil.copytree(episode.path, empty)
    zarr.open_group(str(empty), mode="r+").attrs["committed_length"] = 0
    with pytest.raises(ValueError, match="no committed steps to plot"):
        replay.summary(replay.SummaryConfig(empty, out=tmp_path / "s.png"))
    with pytest.raises(ValueError, match="no committed steps to replay"):
        replay.main(replay.ReplayConfig(empty, out=tmp_path / "r.mp4"))
    with pytest.raises(ValueError, match="no complete episodes with steps"):
        attention.compute(attention.AttentionConfig(run=empty, out=tmp_path / "att"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["episode_000000.zarr"]


def test_a_policy_with_another_input_size_records_at_it_and_replays(tmp_path):
    """A VPT-architecture policy whose input is not 128x128 (`img_shape`): the recorder resizes the game's frames to
    it, the episode stores what it saw, and the replayer reproduces the recorded log-probabilities from them."""
    from vptlens.agents.config import PolicyConfig
    from vptlens.envs.blockworld import BlockWorldConfig
    from vptlens.interventions.counterfactual import counterfactual_frames
    from vptlens.recordings import recorder
    from vptlens.training.checkpoint import save_policy

    config = PolicyConfig(hidsize=32, attention_heads=2, n_recurrence_layers=2, impala_chans=(4, 8, 8),
                          img_shape=(48, 48, 3), attention_memory_size=24, timesteps=16)  # fmt: skip
    model, weights = save_policy(make_random_policy(config, seed=1), tmp_path / "small")
    out = tmp_path / "run"
    recorder.main(recorder.RecordConfig(model=model, weights=weights, out=out, n_episodes=1, n_steps=20,
                                        env=BlockWorldConfig(height=128, width=128), seed=3))  # fmt: skip
    episode = Run.open(out).episodes()[0]
    assert episode.frames.shape == (20, 48, 48, 3) and episode.frame_size == (48, 48)
    (block,) = list(EpisodeReplayer(episode).run())
    buttons = torch.from_numpy(np.asarray(episode.action("buttons")[:], np.int64))
    camera = torch.from_numpy(np.asarray(episode.action("camera")[:], np.int64))
    replayed = log_prob(block.out, buttons[None], camera[None])[0]
    torch.testing.assert_close(replayed, torch.from_numpy(np.asarray(episode.log_prob[:])), atol=1e-4, rtol=1e-4)
    agent_frames, _ = counterfactual_frames(episode, None)  # the same poses, no scene: what it saw, at its size
    recorded = np.asarray(episode.frames[:])
    assert agent_frames.shape == recorded.shape and np.array_equal(agent_frames[0], recorded[0])
    assert (np.abs(agent_frames.astype(int) - recorded.astype(int)).max(-1) > 0).mean() < 0.002  # poses in float32
