"""Hook points: names, shapes, caching, replacement flowing into later layers and later steps."""

import pytest
import torch


def _inputs(oracle, i):
    return torch.from_numpy(oracle["frames"][:, i]), torch.from_numpy(oracle["first"][:, i])


def _run(policy, oracle, n_steps, hooks=()):
    state = policy.initial_state(oracle["first"].shape[0])
    outs = []
    with policy.hooks(hooks):
        for i in range(n_steps):
            out, state = policy.step(*_inputs(oracle, i), state)
            outs.append(out)
    return outs


def test_every_documented_hook_exists_with_its_step_shape(vpt_tiny, vpt_oracle):
    cfg = vpt_tiny.cfg
    b, d, n, k, T = 2, cfg.hidsize, cfg.attention_heads, cfg.head_dim, cfg.memory_len + 1
    expected = {
        "img.hook_out": (b, d),
        "hook_latent": (b, d),
        "pi_head.hook_buttons_logits": (b, 8641),
        "pi_head.hook_camera_logits": (b, 121),
        "value_head.hook_value": (b,),
    }
    for layer in range(cfg.n_recurrence_layers):
        for name in ("hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_out", "hook_resid_post"):
            expected[f"blocks.{layer}.{name}"] = (b, d)
        for name in ("hook_q", "hook_k", "hook_v", "hook_z"):
            expected[f"blocks.{layer}.attn.{name}"] = (b, n, k)
        expected[f"blocks.{layer}.attn.hook_scores"] = (b, n, T)
        expected[f"blocks.{layer}.attn.hook_pattern"] = (b, n, T)
        expected[f"blocks.{layer}.mlp.hook_post"] = (b, d * cfg.pointwise_ratio)
        expected[f"blocks.{layer}.ln1.hook_normalized"] = (b, d)
    _, _, cache = vpt_tiny.run_with_cache(*_inputs(vpt_oracle, 0), vpt_tiny.initial_state(2), names="*")
    assert {name: tuple(x.shape) for name, x in cache.items()} == expected
    assert sorted(vpt_tiny.hook_names) == sorted(expected)


def test_goal_hook_only_on_steve1(vpt_tiny, steve1_tiny):
    assert "hook_goal_embed" in steve1_tiny.hook_names
    assert "hook_goal_embed" not in vpt_tiny.hook_names


def test_wildcards_select_in_model_order(vpt_tiny):
    assert vpt_tiny.select_hooks("blocks.*.attn.hook_pattern") == [
        "blocks.0.attn.hook_pattern",
        "blocks.1.attn.hook_pattern",
    ]
    assert vpt_tiny.select_hooks(["hook_latent", "img.*"]) == ["img.hook_out", "hook_latent"]


def test_unknown_hook_name_suggests(vpt_tiny):
    with pytest.raises(KeyError, match="blocks.0.hook_resid_post"):
        vpt_tiny.select_hooks("blocks.0.hook_resid_pots")


def test_cache_values_are_the_activations_flowing(vpt_tiny, vpt_oracle):
    _, _, cache = vpt_tiny.run_with_cache(*_inputs(vpt_oracle, 0), vpt_tiny.initial_state(2), names="*")
    torch.testing.assert_close(cache["blocks.0.hook_resid_pre"], cache["img.hook_out"])
    torch.testing.assert_close(cache["blocks.1.hook_resid_pre"], cache["blocks.0.hook_resid_post"])
    torch.testing.assert_close(
        cache["blocks.0.hook_resid_mid"],
        cache["blocks.0.ln1.hook_normalized"] + cache["blocks.0.hook_attn_out"],
    )
    torch.testing.assert_close(
        cache["blocks.0.hook_resid_post"], cache["blocks.0.hook_resid_mid"] + cache["blocks.0.hook_mlp_out"]
    )
    # at an episode's first frame the only key is the frame itself: z == v
    torch.testing.assert_close(cache["blocks.0.attn.hook_z"], cache["blocks.0.attn.hook_v"])


def test_identity_hooks_change_nothing(vpt_tiny, vpt_oracle):
    base = _run(vpt_tiny, vpt_oracle, 5)
    hooked = _run(vpt_tiny, vpt_oracle, 5, hooks=[("*", lambda x, hook: x)])
    for a, b in zip(base, hooked):
        assert torch.equal(a.buttons_logits, b.buttons_logits)


def test_hooks_are_removed_after_the_block_even_on_error(vpt_tiny):
    with pytest.raises(RuntimeError), vpt_tiny.hooks([("hook_latent", lambda x, hook: None)]):
        raise RuntimeError("boom")
    assert all(not h.active for h in vpt_tiny._hook_points.values())


def test_replacement_flows_into_later_layers(vpt_tiny, vpt_oracle):
    base = _run(vpt_tiny, vpt_oracle, 1)[0]
    ablated = _run(vpt_tiny, vpt_oracle, 1, hooks=[("blocks.1.hook_mlp_out", lambda x, hook: torch.zeros_like(x))])[0]
    assert not torch.allclose(base.buttons_logits, ablated.buttons_logits)


def test_edit_at_step_t_changes_later_steps_through_memory(vpt_tiny, vpt_oracle):
    edit_step = 3
    calls = {"n": 0}

    def zero_value_at_edit_step(v, hook):
        calls["n"] += 1
        return torch.zeros_like(v) if calls["n"] == edit_step + 1 else None

    base = _run(vpt_tiny, vpt_oracle, 8)
    edited = _run(vpt_tiny, vpt_oracle, 8, hooks=[("blocks.0.attn.hook_v", zero_value_at_edit_step)])
    for i in range(edit_step):
        assert torch.equal(base[i].buttons_logits, edited[i].buttons_logits)
    for i in range(edit_step, 8):  # the edit at step 3 is in memory for steps 4..7
        assert not torch.allclose(base[i].buttons_logits, edited[i].buttons_logits)


def test_pattern_patch_in_sequence_mode_equals_step_mode(vpt_tiny, vpt_oracle):
    # Knock out attention to the frame one step back and renormalise, in both modes.
    def drop_lag1(p, hook):
        p = p.clone()
        p[..., -2] = 0
        return p / p.sum(-1, keepdim=True)

    hooks = [("blocks.*.attn.hook_pattern", drop_lag1)]
    stepped = _run(vpt_tiny, vpt_oracle, 12, hooks=hooks)
    frames = torch.from_numpy(vpt_oracle["frames"][:, :12])
    first = torch.from_numpy(vpt_oracle["first"][:, :12])
    with torch.no_grad(), vpt_tiny.hooks(hooks):
        seq, _ = vpt_tiny(frames, first, vpt_tiny.initial_state(2), chunk_len=5)
    base = _run(vpt_tiny, vpt_oracle, 12)
    for i in range(12):
        torch.testing.assert_close(seq.buttons_logits[:, i], stepped[i].buttons_logits, atol=1e-4, rtol=0)
    assert not torch.allclose(base[5].buttons_logits, stepped[5].buttons_logits)


def test_wrong_shaped_replacement_is_refused(vpt_tiny, vpt_oracle):
    with pytest.raises(ValueError, match="returned shape"):
        _run(vpt_tiny, vpt_oracle, 1, hooks=[("hook_latent", lambda x, hook: x[:, :3])])


def test_gradients_flow_through_sequence_forward(vpt_tiny, vpt_oracle):
    frames = torch.from_numpy(vpt_oracle["frames"][:, :3])
    first = torch.from_numpy(vpt_oracle["first"][:, :3])
    out, _, cache = vpt_tiny.run_with_cache(frames, first, vpt_tiny.initial_state(2), "img.hook_out", detach=False)
    assert cache["img.hook_out"].requires_grad
    out.value.sum().backward()
    grad = vpt_tiny.net.img_process.linear.layer.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    vpt_tiny.zero_grad(set_to_none=True)
