"""Activation edits as data (interventions/edits.py) and their open-loop effect through the replayer."""

import json
import math

import numpy as np
import pytest
import torch

from vptlens.interventions.edit_ops import head_means, key_frame_mask, load_profile, save_head_means
from vptlens.interventions.edits import (
    HeadAblation,
    KeyFrameMask,
    LatentClamp,
    NoEdit,
    Patch,
    Steering,
    edit_from_dict,
)
from vptlens.interventions.open_loop import ATTACK_CLASSES, open_loop_effect, p_attack
from vptlens.probes import attention, report
from vptlens.probes.attention_stats import detect_key_frames, lag_order
from vptlens.probes.sae import SAE, SAEConfig
from vptlens.recordings.replayer import EpisodeReplayer
from vptlens.recordings.store import Run

HOOK = "blocks.0.hook_resid_post"


@pytest.fixture(scope="module")
def episode(tiny_run):
    return Run(tiny_run).episodes()[0]


@pytest.fixture(scope="module")
def inputs(vpt_tiny):
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (2, 6, *vpt_tiny.cfg.img_shape), generator=g, dtype=torch.uint8)
    first = torch.zeros(2, 6, dtype=torch.bool)
    first[:, 0] = True
    return frames, first


def run(policy, inputs, fwd_hooks=(), names=()):
    frames, first = inputs
    with policy.hooks(fwd_hooks):
        out, _, cache = policy.run_with_cache(frames, first, policy.initial_state(frames.shape[0]), list(names))
    return out, cache


@pytest.fixture(scope="module")
def sae_dir(tmp_path_factory):
    """A ReLU SAE on HOOK: latent 3 never fires (encoder bias -1e6), latent 5 always does (+10)."""
    sae = SAE(SAEConfig(d_in=64, d_sae=16, architecture="relu", k=None, l1_coefficient=0.0, hook_name=HOOK),
              torch.Generator().manual_seed(0))  # fmt: skip
    with torch.no_grad():
        sae.b_enc[3] = -1e6
        sae.b_enc[5] = 10.0
    out = tmp_path_factory.mktemp("sae") / "sae"
    sae.save(out, {})
    return out


# ---------------------------------------------------------------------------------------------- head ablation


def test_ablating_every_head_changes_the_logits(vpt_tiny, inputs):
    clean, _ = run(vpt_tiny, inputs)
    ablated, _ = run(vpt_tiny, inputs, HeadAblation(("0.*", "1.*")).hooks(vpt_tiny))
    assert not torch.allclose(clean.buttons_logits, ablated.buttons_logits, atol=1e-3)
    assert not torch.allclose(clean.camera_logits, ablated.camera_logits, atol=1e-3)


def test_one_head_ablation_is_the_manual_hook(vpt_tiny, inputs):
    def manual(z, *, hook):
        z = z.clone()
        z[:, :, 2] = 0.0  # (b, t, n, k)
        return z

    edit = HeadAblation(("1.2",))
    want, want_cache = run(vpt_tiny, inputs, [("blocks.1.attn.hook_z", manual)], ["blocks.1.attn.hook_z"])
    got, cache = run(vpt_tiny, inputs, edit.hooks(vpt_tiny), ["blocks.1.attn.hook_z"])
    assert torch.equal(got.buttons_logits, want.buttons_logits) and torch.equal(got.camera_logits, want.camera_logits)
    z_clean = run(vpt_tiny, inputs, names=["blocks.1.attn.hook_z"])[1]["blocks.1.attn.hook_z"]
    z = cache["blocks.1.attn.hook_z"]
    assert torch.equal(z[:, :, 2], torch.zeros_like(z[:, :, 2]))
    keep = [0, 1, 3]
    assert torch.equal(z[:, :, keep], z_clean[:, :, keep])  # layer 1 is the last: nothing else it feeds changes z


def test_mean_ablation_writes_the_mean(vpt_tiny, episode, tmp_path):
    means = head_means([episode], vpt_tiny)
    assert means.shape == (2, 4, 16)
    path = save_head_means(tmp_path / "means.npy", means)
    edit = HeadAblation(("0.1",), mode="mean", mean_path=path)
    assert edit.validate(vpt_tiny) == []
    replayer = EpisodeReplayer(episode, policy=vpt_tiny)
    block = next(replayer.run(edit.hooks(vpt_tiny), names=["blocks.0.attn.hook_z"], check_row=None))
    z = block.cache["blocks.0.attn.hook_z"][0]
    assert torch.equal(z[:, 1], torch.from_numpy(means[0, 1]).float().expand_as(z[:, 1]))
    # the mean is the mean over the replay of hook_z
    blocks = replayer.run(names=["blocks.0.attn.hook_z"])
    clean = torch.cat([b.cache["blocks.0.attn.hook_z"][0] for b in blocks])
    np.testing.assert_allclose(means[0], clean.double().mean(0).numpy(), rtol=1e-10)


# ---------------------------------------------------------------------------------------------- SAE latents, steering


def test_clamping_a_dead_latent_changes_nothing_bit_for_bit(vpt_tiny, inputs, sae_dir):
    clean, _ = run(vpt_tiny, inputs)
    for edit in (LatentClamp(sae_dir, (3,), value=0.0), LatentClamp(sae_dir, (3,), scale=5.0)):
        assert edit.validate(vpt_tiny) == []
        out, _ = run(vpt_tiny, inputs, edit.hooks(vpt_tiny))
        assert torch.equal(out.buttons_logits, clean.buttons_logits)
        assert torch.equal(out.camera_logits, clean.camera_logits)
        assert torch.equal(out.value, clean.value)


def test_clamping_a_firing_latent_keeps_the_error_term(vpt_tiny, inputs, sae_dir):
    clean, cache = run(vpt_tiny, inputs, names=[HOOK])
    edit = LatentClamp(sae_dir, (5,), value=0.0)
    out, edited = run(vpt_tiny, inputs, edit.hooks(vpt_tiny), [HOOK])
    assert not torch.allclose(out.buttons_logits, clean.buttons_logits, atol=1e-4)
    sae = SAE.load(sae_dir)
    x = cache[HOOK][:, :1]  # the first step: no earlier edit reached it through the memory
    expected = x - sae.encode(x)[..., 5:6] * sae.W_dec[5]
    torch.testing.assert_close(edited[HOOK][:, :1], expected.detach(), rtol=1e-6, atol=1e-5)


def test_steering(vpt_tiny, inputs, tmp_path, sae_dir):
    v = np.random.default_rng(0).standard_normal(64).astype(np.float32)
    np.save(tmp_path / "v.npy", v)
    clean, _ = run(vpt_tiny, inputs)
    zero, _ = run(vpt_tiny, inputs, Steering(HOOK, 0.0, vector_path=tmp_path / "v.npy").hooks(vpt_tiny))
    assert torch.equal(zero.buttons_logits, clean.buttons_logits)
    added, _ = run(vpt_tiny, inputs, Steering(HOOK, 3.0, vector_path=tmp_path / "v.npy").hooks(vpt_tiny))
    assert not torch.allclose(added.buttons_logits, clean.buttons_logits, atol=1e-4)
    for edit in (
        Steering(HOOK, 1.0, vector_path=tmp_path / "v.npy", mode="project_out"),
        Steering(HOOK, 1.0, sae_dir=sae_dir, latent=5, mode="project_out"),
    ):
        assert edit.validate(vpt_tiny) == []
        _, cache = run(vpt_tiny, inputs, edit.hooks(vpt_tiny), [HOOK])
        u = edit.vector(vpt_tiny)
        assert float(u.norm()) == pytest.approx(1.0, abs=1e-6)
        x = cache[HOOK]
        assert float((x @ u).abs().max()) < 1e-4 * float(x.norm(dim=-1).max())


# ---------------------------------------------------------------------------------------------- key frames


def _profile_json(path, n_heads=4, M=32, layers=(0, 1), row=None):
    """A synthetic profile, flat by default (1/(M+1) at every lag); lag M never reached (null)."""
    row = row or [1.0 / (M + 1)] * M + [None]
    doc = {"schema": "vptlens.attention", "profiles": {f"L{layer}": {"mean": [row] * n_heads} for layer in layers}}
    path.write_text(json.dumps(doc))
    return path


def test_key_frame_mask_masks_exactly_the_lags_above_ratio(vpt_tiny, tmp_path):
    M = 32
    edit = KeyFrameMask((1,), _profile_json(tmp_path / "attention.json"), ratio=4.0, min_lag=8)
    assert edit.validate(vpt_tiny) == []
    # a pattern at full memory (lags 0..M-1 exist, lag M is masked): flat, with boosts at chosen lags
    weights = np.ones((2, 4, M + 1))
    weights[..., 0] = 0.0  # column 0 = lag M: never attendable
    boosts = {(0, 0): [10, 20], (0, 3): [5, 12], (1, 2): [31]}  # (row, head): lags k (column M-k)
    for (b, n), lags in boosts.items():
        for k in lags:
            weights[b, n, M - k] = 20.0  # a = 20 / (~31 + 20...): far above 4 x 1/M
    weights[1, 1, M - 9] = 3.0  # below the ratio: kept
    pattern = weights / weights.sum(-1, keepdims=True)
    with np.errstate(divide="ignore"):
        scores = torch.from_numpy(np.log(pattern)).float()  # log 0 = -inf: lag M masked
    name, fn = edit.hooks(vpt_tiny)[0]
    assert name == "blocks.1.attn.hook_scores"
    out = fn(scores, hook=vpt_tiny._hook_points[name])
    masked = torch.isinf(out) & torch.isfinite(scores)
    expected = torch.zeros_like(masked)
    for (b, n), lags in boosts.items():
        for k in lags:
            if k >= 8:  # lag 5 is below min_lag
                expected[b, n, M - k] = True
    assert torch.equal(masked, expected)
    # sequence mode (b, n, t, T): the same per query
    out_seq = fn(scores[:, :, None].expand(2, 4, 3, M + 1), hook=vpt_tiny._hook_points[name])
    assert torch.equal(
        torch.isinf(out_seq) & torch.isfinite(scores[:, :, None]), expected[:, :, None].expand(2, 4, 3, M + 1)
    )

    control = KeyFrameMask((1,), tmp_path / "attention.json", ratio=4.0, min_lag=8, control=True, seed=3)
    fn_c = control.hooks(vpt_tiny)[0][1]
    out_c = fn_c(scores, hook=vpt_tiny._hook_points[name])
    masked_c = torch.isinf(out_c) & torch.isfinite(scores)
    assert torch.equal(masked_c.sum(-1), expected.sum(-1))  # as many lags, per row and head
    lag = M - torch.arange(M + 1)
    assert not (masked_c & (lag < 8)).any()
    again = control.hooks(vpt_tiny)[0][1](scores, hook=vpt_tiny._hook_points[name])
    assert torch.equal(again, out_c)  # a fresh hooks() call draws the same lags


def test_key_frame_mask_uses_the_existing_keys_only():
    # step 3 of an episode: keys at lags 0..3 exist; the profile restricted to them is renormalised
    scores = torch.full((1, 1, 33), -math.inf)
    scores[..., -4:] = torch.tensor([5.0, 0.0, 0.0, 0.0])  # lag 3 takes most of the mass
    profile = torch.full((1, 33), 1.0 / 33)
    assert key_frame_mask(scores, profile, ratio=2.0, min_lag=3)[0, 0].nonzero().flatten().tolist() == [29]
    assert not key_frame_mask(scores, profile, ratio=2.0, min_lag=4).any()


def test_key_frame_mask_agrees_with_vptlens_attention(tiny_run, vpt_tiny, episode, tmp_path):
    """Online key frames from the replay's scores = `vptlens attention`'s detections on the recorded (float16)
    attention, up to the few that float16 rounding moves across the threshold: the lag conventions match."""
    run = Run.open(tiny_run)
    cfg = attention.AttentionConfig(run=tiny_run, out=tmp_path / "att", n_bootstrap=0)
    path = report.write_json(tmp_path / "attention.json", attention.to_json(attention.compute(cfg, run), cfg, run, {}))
    ratio, min_lag = 1.1, 4  # low: the tiny random policy attends almost uniformly
    block = next(EpisodeReplayer(episode, policy=vpt_tiny).run(names=["blocks.*.attn.hook_scores"]))
    for layer in (0, 1):
        profile = load_profile(path, layer)
        offline, _ = detect_key_frames(lag_order(episode.attention(layer)[:]), profile, ratio, 0.0, min_lag)
        profile_cols = torch.from_numpy(np.nan_to_num(profile[:, ::-1].copy()))[:, None]  # (n, 1, T), last = now
        scores = block.cache[f"blocks.{layer}.attn.hook_scores"][0]  # (n, t, T)
        online = key_frame_mask(scores, profile_cols, ratio, min_lag)
        online = {(t, n, 32 - col) for n, t, col in online.nonzero().tolist()}  # as [step, head, lag]
        offline = {tuple(row) for row in offline.tolist()}
        assert len(offline) > 1000 and len(online ^ offline) < 0.01 * len(offline)


def test_key_frame_mask_runs_in_a_replay_same_in_step_and_sequence_mode(vpt_tiny, inputs, tmp_path):
    # the tiny random policy attends almost uniformly; a profile that expects little beyond lag 1 flags far lags
    path = _profile_json(tmp_path / "attention.json", row=[0.5, 0.5] + [0.002] * 30 + [None])
    edit = KeyFrameMask((0, 1), path, ratio=4.0, min_lag=2)
    clean, _ = run(vpt_tiny, inputs)
    seq, _ = run(vpt_tiny, inputs, edit.hooks(vpt_tiny))
    assert not torch.allclose(seq.buttons_logits, clean.buttons_logits, atol=1e-5)
    frames, first = inputs
    state, steps = vpt_tiny.initial_state(2), []
    with vpt_tiny.hooks(edit.hooks(vpt_tiny)):
        for t in range(frames.shape[1]):
            out, state = vpt_tiny.step(frames[:, t], first[:, t], state)
            steps.append(out.buttons_logits)
    torch.testing.assert_close(torch.stack(steps, 1), seq.buttons_logits, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------- patching


def test_patch_from_the_same_episode_reproduces_the_recording(vpt_tiny, episode):
    edit = Patch(episode.path, HOOK)
    assert edit.validate(vpt_tiny) == []
    names = [HOOK, "blocks.1.hook_resid_post"]
    replayer = EpisodeReplayer(episode, policy=vpt_tiny, tolerance=None, block_steps=48)
    blocks = list(replayer.run(edit.hooks(vpt_tiny), names=names))
    for name in names:
        got = torch.cat([b.cache[name][0] for b in blocks])
        stored = torch.from_numpy(np.asarray(episode.activation(name)[:])).float()
        if name == HOOK:
            assert torch.equal(got, stored)  # the patched hook is the stored stream, exactly
        else:  # downstream: within float16 rounding
            torch.testing.assert_close(got, stored, rtol=2e-2, atol=2e-2)
    # a window of steps only, and one row at a time
    part = Patch(episode.path, HOOK, steps=(10, 20))
    block = next(EpisodeReplayer(episode, policy=vpt_tiny, tolerance=None).run(part.hooks(vpt_tiny), names=[HOOK]))
    clean = next(EpisodeReplayer(episode, policy=vpt_tiny).run(names=[HOOK]))
    stored = torch.from_numpy(np.asarray(episode.activation(HOOK)[:])).float()
    assert torch.equal(block.cache[HOOK][0, :10], clean.cache[HOOK][0, :10])
    assert torch.equal(block.cache[HOOK][0, 10:20], stored[10:20])
    # step mode (one call per frame, as in an env loop) counts the same steps
    hooks, state = part.hooks(vpt_tiny), vpt_tiny.initial_state(1)
    frames = torch.from_numpy(np.asarray(episode.frames[:12]))
    for t in range(12):
        with vpt_tiny.hooks(hooks):
            _, state, cache = vpt_tiny.run_with_cache(frames[t : t + 1], torch.tensor([t == 0]), state, [HOOK])
        assert torch.equal(cache[HOOK][0], stored[t]) == (t >= 10)
    with pytest.raises(ValueError, match="batch of 2 rows"):
        next(EpisodeReplayer(episode, policy=vpt_tiny).run(edit.hooks(vpt_tiny), rows=2))
    assert Patch.needs_batch_one and not NoEdit.needs_batch_one


# ---------------------------------------------------------------------------------------------- validation, parsing


def test_validate_lists_every_problem(vpt_tiny, tmp_path, sae_dir, episode):
    problems = HeadAblation(("9.1", "0.7", "1.2")).validate(vpt_tiny)
    assert len(problems) == 2 and "9.1" in problems[0] and "0.7" in problems[1]
    other = SAE(SAEConfig(d_in=64, d_sae=8, architecture="relu", k=None, l1_coefficient=0.0,
                          hook_name="blocks.7.hook_resid_post"))  # fmt: skip
    other.save(tmp_path / "other", {})
    assert (
        "no hook 'blocks.7.hook_resid_post'" in LatentClamp(tmp_path / "other", (1,), value=0.0).validate(vpt_tiny)[0]
    )
    wide = SAE(SAEConfig(d_in=32, d_sae=8, architecture="relu", k=None, l1_coefficient=0.0, hook_name=HOOK))
    wide.save(tmp_path / "wide", {})
    assert "another architecture" in LatentClamp(tmp_path / "wide", (1,), value=0.0).validate(vpt_tiny)[0]
    problems = LatentClamp(sae_dir, (3, 16, 99), value=0.0).validate(vpt_tiny)
    assert problems == [f"latents [16, 99]: {sae_dir} has latents 0..15"]
    np.save(tmp_path / "short.npy", np.ones(10, np.float32))
    problems = Steering("blocks.1.hook_resid_post", 1.0, sae_dir=sae_dir, latent=40).validate(vpt_tiny)
    assert len(problems) == 2 and "trained on 'blocks.0.hook_resid_post'" in problems[0] and "latent 40" in problems[1]
    assert "width 64" in Steering(HOOK, 1.0, vector_path=tmp_path / "short.npy").validate(vpt_tiny)[0]
    problems = Patch(episode.path, "blocks.0.attn.hook_z", steps=(0, 500)).validate(vpt_tiny)
    assert len(problems) == 2 and "did not record" in problems[0] and "128 steps" in problems[1]
    problems = KeyFrameMask((0, 5), tmp_path / "missing.json", min_lag=40).validate(vpt_tiny)
    assert len(problems) == 3
    with pytest.raises(ValueError, match="9.1") as e:
        HeadAblation(("9.1", "0.7")).hooks(vpt_tiny)
    assert "0.7" in str(e.value)


def test_edit_from_dict_reports_every_problem():
    with pytest.raises(ValueError, match="did you mean 'head_ablation'"):
        edit_from_dict({"kind": "head_ablaton", "heads": ["1.*"]})
    with pytest.raises(ValueError) as e:
        edit_from_dict({"kind": "latent_clamp", "sae_dri": "x", "latents": ["a"], "value": "big"})
    msg = str(e.value)
    assert "unknown key 'sae_dri'; did you mean 'sae_dir'" in msg and "missing 'sae_dir'" in msg
    assert "latents must be a list of integers" in msg and "value must be a number or null" in msg
    with pytest.raises(ValueError, match="exactly one of value"):
        edit_from_dict({"kind": "latent_clamp", "sae_dir": "x", "latents": [1]})
    with pytest.raises(ValueError, match="mode must be"):
        edit_from_dict({"kind": "steering", "hook": HOOK, "strength": 1, "vector_path": "v.npy", "mode": "subtract"})


def test_dict_round_trip_and_descriptions(tmp_path):
    edits = [
        NoEdit(),
        HeadAblation(("2.5", "3.*"), mode="mean", mean_path=tmp_path / "m.npy"),
        KeyFrameMask((0, 1), tmp_path / "attention.json", ratio=3.0, control=True, seed=2),
        LatentClamp(tmp_path / "sae", (1, 2), scale=2.0),
        Steering(HOOK, 0.5, sae_dir=tmp_path / "sae", latent=4, mode="project_out"),
        Patch(tmp_path / "ep", HOOK, steps=(3, 9)),
    ]
    for edit in edits:
        d = json.loads(json.dumps(edit.to_dict()))
        assert edit_from_dict(d) == edit
        assert edit.describe() and "\n" not in edit.describe()


# ---------------------------------------------------------------------------------------------- open loop


def test_open_loop_effect(vpt_tiny, episode):
    none = open_loop_effect(episode, NoEdit(), policy=vpt_tiny, stop=64)
    assert none.n_steps == 64
    assert not none.d_p_attack.any() and not none.kl_buttons.any() and not none.kl_camera.any()
    assert none.replay_max_abs_logprob_error < 1e-4
    ablated = open_loop_effect(episode, HeadAblation(("0.*", "1.*")), policy=vpt_tiny, stop=64)
    assert ablated.mean_kl_buttons > 0 and ablated.mean_kl_camera > 0
    assert np.abs(ablated.d_p_attack).mean() > 0
    np.testing.assert_array_equal(ablated.p_attack_clean, none.p_attack_clean)
    assert json.loads(json.dumps(ablated.to_dict()))["means"]["kl_total"] == pytest.approx(ablated.mean_kl_total)


def test_p_attack_is_the_mass_of_the_attack_classes():
    assert ATTACK_CLASSES.sum() == 8640 // 2  # attack is a group of 2 options; the inventory class excludes it
    logits = torch.randn(3, 8641).log_softmax(-1)
    expected = logits.double().exp()[:, torch.from_numpy(ATTACK_CLASSES)].sum(-1)
    torch.testing.assert_close(p_attack(logits), expected, rtol=1e-6, atol=1e-6)  # float32 logits renormalised
