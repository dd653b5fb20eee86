"""On CUDA (pytest --gpu): the policy matches OpenAI's reference outputs, and an SAE trains and splices there too."""

import numpy as np
import pytest
import torch
from conftest import fixture_paths

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _exact_matmuls():
    # TF32 would round matmul inputs to 10 mantissa bits: fine for speed, not for a 1e-4 comparison.
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@pytest.mark.parametrize("which", ["vpt_tiny", "steve1_tiny"])
def test_cuda_float32_matches_the_reference(which, request):
    from vptlens.agents import load_policy

    policy = load_policy(*fixture_paths(which), device="cuda")
    oracle = request.getfixturevalue(which.replace("tiny", "oracle"))
    b, n = oracle["first"].shape
    goal = torch.from_numpy(oracle["goal_embed"]).cuda() if "goal_embed" in oracle else None
    state = policy.initial_state(b)
    for i in range(n):
        out, state, cache = policy.run_with_cache(
            torch.from_numpy(oracle["frames"][:, i]).cuda(),
            torch.from_numpy(oracle["first"][:, i]).cuda(),
            state,
            "blocks.*.attn.hook_pattern",
            goal=goal,
        )
        np.testing.assert_allclose(out.buttons_logits.cpu().numpy(), oracle["buttons_logits"][:, i], atol=2e-4)
        np.testing.assert_allclose(out.camera_logits.cpu().numpy(), oracle["camera_logits"][:, i], atol=2e-4)
        for layer in range(policy.cfg.n_recurrence_layers):
            pattern = cache[f"blocks.{layer}.attn.hook_pattern"].cpu().numpy()
            np.testing.assert_allclose(pattern, oracle[f"attn_L{layer}"][:, i], atol=1e-4)


def test_cuda_bfloat16_stays_close(vpt_oracle):
    from vptlens.agents import load_policy
    from vptlens.probes.splice import kl_divergence

    policy = load_policy(*fixture_paths("vpt_tiny"), device="cuda", dtype=torch.bfloat16)
    frames = torch.from_numpy(vpt_oracle["frames"]).cuda()
    first = torch.from_numpy(vpt_oracle["first"]).cuda()
    with torch.no_grad():
        out, _ = policy(frames, first, policy.initial_state(frames.shape[0]))
    kl = kl_divergence(torch.from_numpy(vpt_oracle["buttons_logits"]), out.buttons_logits.float().cpu())
    assert float(kl.max()) < 1e-2
