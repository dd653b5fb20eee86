"""Splicing a replacement into the policy: KL of the action heads, the replay check, the activation mean."""

import numpy as np
import pytest
import scipy.special
import torch

from vptlens.agents.loading import make_random_policy
from vptlens.probes.sae.splice import activation_mean, kl_divergence, splice_kl
from vptlens.recordings.replayer import load_recording_policy
from vptlens.recordings.store import Run

HOOK = "blocks.0.hook_resid_post"


@pytest.fixture(scope="module")
def episodes(tiny_run):
    return Run(tiny_run).episodes()[:2]


@pytest.fixture(scope="module")
def policy(episodes):
    return load_recording_policy(episodes[0])


def test_kl_by_hand():
    p = torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64).log()
    q = torch.tensor([0.25, 0.25, 0.5], dtype=torch.float64).log()
    assert float(kl_divergence(p, q)) == pytest.approx(np.log(2.0), abs=1e-12)  # 0.5 ln2 + 0.5 ln2, the p=0 term is 0
    assert float(kl_divergence(p, p)) == 0.0
    assert float(kl_divergence(q, p)) == float("inf")  # q puts mass where p has none
    # the same as scipy's relative entropy, on random distributions
    rng = np.random.default_rng(0)
    p2, q2 = rng.dirichlet(np.ones(50), size=4), rng.dirichlet(np.ones(50), size=4)
    expected = scipy.special.rel_entr(p2, q2).sum(-1)
    np.testing.assert_allclose(
        kl_divergence(torch.from_numpy(np.log(p2)), torch.from_numpy(np.log(q2))), expected, rtol=1e-12
    )


def test_identity_splice_is_free_and_the_replay_matches_the_recording(policy, episodes):
    result = splice_kl(policy, episodes, HOOK, lambda x: x, block_steps=48)
    assert result.kl_buttons == 0.0 and result.kl_camera == 0.0
    assert result.replay_max_abs_logprob_error < 1e-4
    assert result.n_steps == sum(len(e) for e in episodes)


def test_mean_ablation_costs_more_than_a_small_perturbation(policy, episodes):
    mean = torch.from_numpy(activation_mean(episodes, HOOK)).float()
    ablated = splice_kl(policy, episodes, HOOK, lambda x: mean.expand_as(x).clone())
    # the next block layer-normalises its input, so scaling would change nothing: nudge a fixed direction
    direction = torch.randn(mean.shape, generator=torch.Generator().manual_seed(0))
    nudged = splice_kl(policy, episodes, HOOK, lambda x: x + 0.02 * direction)
    assert ablated.kl_total > 10 * nudged.kl_total > 0
    low, high = ablated.ci95()
    assert low <= np.mean(np.add(ablated.per_episode_buttons, ablated.per_episode_camera)) <= high


def test_blocks_do_not_change_the_numbers(policy, episodes):
    one = splice_kl(policy, episodes[:1], HOOK, lambda x: x + 0.5, block_steps=1000)
    many = splice_kl(policy, episodes[:1], HOOK, lambda x: x + 0.5, block_steps=40)
    assert many.kl_total == pytest.approx(one.kl_total, rel=1e-4)


def test_activation_mean_is_the_mean(episodes):
    stacked = np.concatenate([np.asarray(e.activation(HOOK)[:], np.float64) for e in episodes])
    np.testing.assert_allclose(activation_mean(episodes, HOOK, block_steps=50), stacked.mean(0), rtol=1e-12)


def test_a_different_policy_is_refused(policy, episodes):
    other = make_random_policy(policy.cfg, seed=123)
    with pytest.raises(ValueError, match="not the one that recorded"):
        splice_kl(other, episodes[:1], HOOK, lambda x: x)


def test_bad_replacement_shape_and_unknown_hook(policy, episodes):
    with pytest.raises(ValueError, match="shape"):
        splice_kl(policy, episodes[:1], HOOK, lambda x: x[..., :3])
    with pytest.raises(KeyError, match="no hook"):
        splice_kl(policy, episodes[:1], "blocks.9.hook_resid_post", lambda x: x)
