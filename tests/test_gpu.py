"""On CUDA (pytest --gpu): the policy matches OpenAI's reference outputs; SAEs train there as on the CPU; record,
train, evaluate (with the KL splice) and dashboards run end to end on the GPU."""

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
    from vptlens.probes.sae.splice import kl_divergence

    policy = load_policy(*fixture_paths("vpt_tiny"), device="cuda", dtype=torch.bfloat16)
    frames = torch.from_numpy(vpt_oracle["frames"]).cuda()
    first = torch.from_numpy(vpt_oracle["first"]).cuda()
    with torch.no_grad():
        out, _ = policy(frames, first, policy.initial_state(frames.shape[0]))
    kl = kl_divergence(torch.from_numpy(vpt_oracle["buttons_logits"]), out.buttons_logits.float().cpu())
    assert float(kl.max()) < 1e-2


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "relu", "jumprelu"])
def test_sae_trains_on_cuda_as_on_cpu(arch):
    """The same init and batches give the same training curve on CUDA as on the CPU (TF32 off)."""
    from vptlens.probes.sae import SAE, SAEConfig, SAETrainer

    k = 8 if arch in ("topk", "batchtopk") else None
    l1, l0 = (0.1 if arch == "relu" else None), (0.5 if arch == "jumprelu" else None)
    cfg = SAEConfig(d_in=64, d_sae=256, architecture=arch, k=k, l1_coefficient=l1, l0_coefficient=l0, hook_name="x")
    data = torch.randn(40, 256, 64, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.3
    losses = {}
    for device in ("cpu", "cuda"):
        sae = SAE(cfg, generator=torch.Generator().manual_seed(1)).to(device)
        trainer = SAETrainer(sae, lr=1e-3, n_steps=40, warmup_steps=5, dead_window=256 * 10)
        losses[device] = [float(trainer.step(x.to(device))["loss"]) for x in data]
        assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(256, device=device), atol=1e-5)
    np.testing.assert_allclose(losses["cuda"], losses["cpu"], rtol=1e-3)
    assert losses["cuda"][-1] < losses["cuda"][0]


def test_record_train_eval_dashboard_on_cuda(tmp_path):
    """The whole look-inside path with the policy and the SAEs on the GPU: record, train all four kinds, evaluate
    (with the KL splice, which replays the run and checks the recorded log-probabilities), dashboards."""
    from vptlens.envs.blockworld import BlockWorldConfig
    from vptlens.probes.sae import dashboard
    from vptlens.probes.sae import evaluate as sae_eval
    from vptlens.probes.sae import train as sae_train
    from vptlens.recordings import recorder

    model, weights = fixture_paths("vpt_tiny")
    run = tmp_path / "run"
    env = BlockWorldConfig(height=64, width=64)
    recorder.main(recorder.RecordConfig(model=model, weights=weights, out=run, n_episodes=3, n_envs=3, n_steps=96,
                                        env=env, scene="villager_under_leaves", device="cuda"))  # fmt: skip
    archs = ("topk:k=4", "batchtopk:k=4", "relu:l1=0.5", "jumprelu:l0=0.5")
    log = sae_train.main(sae_train.TrainConfig(run=run, hook="blocks.1.hook_resid_post", out=tmp_path / "saes",
                                               architectures=archs, expansion_factor=2, batch_size=64,
                                               buffer_rows=256, total_activations=64 * 40, warmup_steps=5,
                                               val_fraction=0.34, block_steps=64, device="cuda"))  # fmt: skip
    for name, result in log["saes"].items():
        assert 0 <= result["val"]["nmse"] < 2, name
        evaluated = sae_eval.main(sae_eval.EvalConfig(sae=tmp_path / "saes" / name, device="cuda"))
        assert evaluated["behaviour"]["sae_splice"]["replay_max_abs_logprob_error"] < 1e-3
    out = dashboard.main(dashboard.DashboardConfig(tmp_path / "saes" / "topk-k_4", run, out=tmp_path / "dash",
                                                   n_latents=4, device="cuda"))  # fmt: skip
    assert (tmp_path / "dash" / "index.html").is_file() and out


def test_recorded_actions_do_not_depend_on_the_device(tmp_path):
    """Actions are sampled on the CPU from per-episode seeded streams: a CUDA recording takes the CPU one's actions."""
    from vptlens.envs.blockworld import BlockWorldConfig
    from vptlens.recordings import recorder
    from vptlens.recordings.store import Episode

    model, weights = fixture_paths("vpt_tiny")
    actions = {}
    env = BlockWorldConfig(height=64, width=64)
    for device in ("cpu", "cuda"):
        cfg = recorder.RecordConfig(model=model, weights=weights, out=tmp_path / device, n_episodes=2, n_envs=2,
                                    n_steps=48, env=env, seed=11, device=device)  # fmt: skip
        recorder.main(cfg)
        episode = Episode(tmp_path / device / "episode_000001.zarr")
        actions[device] = np.asarray(episode["action/buttons"][:]), np.asarray(episode["action/camera"][:])
    np.testing.assert_array_equal(actions["cuda"][0], actions["cpu"][0])
    np.testing.assert_array_equal(actions["cuda"][1], actions["cpu"][1])
