"""The re-implementation against OpenAI's reference outputs (tests/fixtures), step by step."""

import numpy as np
import pytest
import torch

TOL = 1e-4


def _step_all(policy, oracle, names="blocks.*.attn.hook_pattern", goal=None):
    b, n = oracle["first"].shape
    state = policy.initial_state(b)
    outs, caches = [], []
    for i in range(n):
        out, state, cache = policy.run_with_cache(
            torch.from_numpy(oracle["frames"][:, i]),
            torch.from_numpy(oracle["first"][:, i]),
            state,
            names,
            goal=goal,
        )
        outs.append(out)
        caches.append(cache)
    return outs, caches


@pytest.mark.parametrize("which", ["vpt", "steve1"])
def test_step_matches_reference_at_every_step(which, request):
    policy = request.getfixturevalue(f"{which}_tiny")
    oracle = request.getfixturevalue(f"{which}_oracle")
    goal = torch.from_numpy(oracle["goal_embed"]) if "goal_embed" in oracle else None
    outs, caches = _step_all(policy, oracle, goal=goal)
    n_layers = policy.cfg.n_recurrence_layers
    for i, (out, cache) in enumerate(zip(outs, caches)):
        np.testing.assert_allclose(out.buttons_logits.numpy(), oracle["buttons_logits"][:, i], atol=TOL, rtol=0)
        np.testing.assert_allclose(out.camera_logits.numpy(), oracle["camera_logits"][:, i], atol=TOL, rtol=0)
        np.testing.assert_allclose(out.value.numpy(), oracle["vpred"][:, i], atol=TOL, rtol=0)
        for layer in range(n_layers):
            pattern = cache[f"blocks.{layer}.attn.hook_pattern"].numpy()
            np.testing.assert_allclose(pattern, oracle[f"attn_L{layer}"][:, i], atol=TOL, rtol=0)


def test_fixture_covers_resets_and_memory_overflow(vpt_oracle, vpt_tiny):
    # The claims of the fixture README that make the test above meaningful.
    first = vpt_oracle["first"]
    assert first[:, 0].all() and first[0, 50] and not first[1, 1:].any()
    assert first.shape[1] > vpt_tiny.cfg.memory_len + 1


def test_masked_keys_are_exactly_zero(vpt_tiny, vpt_oracle):
    _, caches = _step_all(vpt_tiny, vpt_oracle)
    M = vpt_tiny.cfg.memory_len
    for i in (0, 5, 50, 51, 79):
        pattern = caches[i]["blocks.0.attn.hook_pattern"]  # (B, n, T)
        assert pattern.shape == (2, vpt_tiny.cfg.attention_heads, M + 1)
        assert torch.all(pattern[..., 0] == 0)  # lag M is never attended
        torch.testing.assert_close(pattern.sum(-1), torch.ones(pattern.shape[:2]))
    assert torch.all(caches[0]["blocks.1.attn.hook_pattern"][..., :-1] == 0)  # episode start: only itself
    row0_at_reset = caches[50]["blocks.1.attn.hook_pattern"][0]
    assert torch.all(row0_at_reset[:, :-1] == 0) and torch.all(row0_at_reset[:, -1] == 1)
    row0_after = caches[53]["blocks.1.attn.hook_pattern"][0]
    assert torch.all(row0_after[:, : M + 1 - 4] == 0) and torch.all(row0_after[:, -4:] > 0)


def test_steve1_classifier_free_guidance(steve1_tiny, steve1_oracle):
    o = steve1_oracle
    b, n = o["first"].shape
    goal = torch.from_numpy(o["goal_embed"])
    state = steve1_tiny.initial_state(b, guided=True)
    for i in range(n):
        out, state = steve1_tiny.step(
            torch.from_numpy(o["frames"][:, i]),
            torch.from_numpy(o["first"][:, i]),
            state,
            goal=goal,
            cond_scale=float(o["cond_scale"]),
        )
        np.testing.assert_allclose(out.buttons_logits.numpy(), o["cfg_buttons_logits"][:, i], atol=TOL, rtol=0)
        np.testing.assert_allclose(out.camera_logits.numpy(), o["cfg_camera_logits"][:, i], atol=TOL, rtol=0)
        np.testing.assert_allclose(out.value.numpy(), o["vpred"][:, i], atol=TOL, rtol=0)


def test_steve1_needs_goal_and_guided_state(steve1_tiny, steve1_oracle):
    frames = torch.from_numpy(steve1_oracle["frames"][:, 0])
    first = torch.ones(1, dtype=torch.bool)
    with pytest.raises(ValueError, match="goal"):
        steve1_tiny.step(frames, first, steve1_tiny.initial_state(1))
    goal = torch.from_numpy(steve1_oracle["goal_embed"])
    with pytest.raises(ValueError, match="guided=True"):
        steve1_tiny.step(frames, first, steve1_tiny.initial_state(1), goal=goal, cond_scale=6.0)


@pytest.mark.parametrize("chunk_len", [None, 7, 80])
def test_sequence_forward_equals_stepping(vpt_tiny, vpt_oracle, chunk_len):
    o = vpt_oracle
    frames, first = torch.from_numpy(o["frames"]), torch.from_numpy(o["first"])
    with torch.no_grad():
        out, state_seq = vpt_tiny(frames, first, vpt_tiny.initial_state(2), chunk_len=chunk_len)
    np.testing.assert_allclose(out.buttons_logits.numpy(), o["buttons_logits"], atol=TOL, rtol=0)
    np.testing.assert_allclose(out.camera_logits.numpy(), o["camera_logits"], atol=TOL, rtol=0)
    np.testing.assert_allclose(out.value.numpy(), o["vpred"], atol=TOL, rtol=0)
    # and the state it leaves is the stepping state
    state = vpt_tiny.initial_state(2)
    for i in range(frames.shape[1]):
        _, state = vpt_tiny.step(frames[:, i], first[:, i], state)
    assert torch.equal(state.valid, state_seq.valid)
    for a, b in zip(state.keys, state_seq.keys):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_sequence_patterns_in_lag_layout_equal_step_patterns(vpt_tiny, vpt_oracle):
    o = vpt_oracle
    frames, first = torch.from_numpy(o["frames"]), torch.from_numpy(o["first"])
    _, _, cache = vpt_tiny.run_with_cache(frames, first, vpt_tiny.initial_state(2), "blocks.*.attn.hook_pattern")
    for layer in range(2):
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"]  # (B, n, t, T)
        expected = np.moveaxis(o[f"attn_L{layer}"], 1, 2)
        np.testing.assert_allclose(pattern.numpy(), expected, atol=TOL, rtol=0)


def test_mid_chunk_reset_in_sequence(vpt_tiny, vpt_oracle):
    # Row 0 resets at frame 50; a chunk of 80 contains it: same as stepping (the oracle).
    o = vpt_oracle
    with torch.no_grad():
        out, _ = vpt_tiny(
            torch.from_numpy(o["frames"]),
            torch.from_numpy(o["first"]),
            vpt_tiny.initial_state(2),
            chunk_len=80,
        )
    np.testing.assert_allclose(out.buttons_logits[0, 50:].numpy(), o["buttons_logits"][0, 50:], atol=TOL, rtol=0)


def test_bfloat16_close_to_float32(vpt_oracle):
    from conftest import fixture_paths

    from vptlens.agents import load_policy

    policy = load_policy(*fixture_paths("vpt_tiny"), dtype=torch.bfloat16)
    o = vpt_oracle
    state = policy.initial_state(2)
    for i in range(12):
        out, state = policy.step(torch.from_numpy(o["frames"][:, i]), torch.from_numpy(o["first"][:, i]), state)
        assert out.buttons_logits.dtype == torch.float32  # heads' log-softmax in float32
        p_ref = torch.from_numpy(o["camera_logits"][:, i]).exp()
        kl = (p_ref * (torch.from_numpy(o["camera_logits"][:, i]) - out.camera_logits)).sum(-1)
        assert torch.all(kl < 1e-2), kl
        assert state.keys[0].dtype == torch.bfloat16
