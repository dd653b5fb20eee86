"""Sampling, log-probabilities and entropy of the factored action distribution."""

import math

import pytest
import torch

from vptlens.agents.distributions import entropy, log_prob, sample_actions, sample_actions_per_row
from vptlens.agents.policy import PolicyOutput


def _output(buttons_probs, camera_probs):
    return PolicyOutput(torch.log(buttons_probs), torch.log(camera_probs), torch.zeros(buttons_probs.shape[0]))


def test_sampling_frequencies_follow_the_probabilities():
    out = _output(torch.tensor([[0.7, 0.2, 0.1, 0.0]]), torch.tensor([[0.5, 0.5]]))
    gen = torch.Generator().manual_seed(0)
    many = PolicyOutput(*(x.expand(20000, *x.shape[1:]) for x in vars(out).values()))
    buttons, camera = sample_actions(many, generator=gen)
    freq = torch.bincount(buttons, minlength=4).float() / 20000
    # binomial standard error at p=0.7 and n=20000 is 0.0032; 5 sigma
    torch.testing.assert_close(freq, torch.tensor([0.7, 0.2, 0.1, 0.0]), atol=0.016, rtol=0)
    assert freq[3] == 0  # zero-probability class never drawn
    assert abs(camera.float().mean().item() - 0.5) < 0.02


def test_sampling_is_reproducible_with_a_generator():
    out = _output(torch.full((3, 8641), 1 / 8641), torch.full((3, 121), 1 / 121))
    a = sample_actions(out, generator=torch.Generator().manual_seed(7))
    b = sample_actions(out, generator=torch.Generator().manual_seed(7))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("rows", [1, 3, 8, 13])
def test_per_row_streams_give_the_row_by_row_samples(rows):
    """The recorder samples a batch at once from one stream per episode: each row must get exactly the actions it
    would get alone (so an episode's actions never depend on its batch-mates), at any batch size."""
    torch.manual_seed(rows)
    out = PolicyOutput(torch.randn(rows, 8641) * 3, torch.randn(rows, 121) * 3, torch.zeros(rows))
    seeds = [100 + 7 * r for r in range(rows)]
    batched = sample_actions_per_row(out, [torch.Generator().manual_seed(s) for s in seeds])
    for r, seed in enumerate(seeds):
        gen = torch.Generator().manual_seed(seed)
        alone = sample_actions(PolicyOutput(*(x[r : r + 1] for x in vars(out).values())), generator=gen)
        assert (batched[0][r].item(), batched[1][r].item()) == (alone[0].item(), alone[1].item())
    with pytest.raises(ValueError, match="one generator per row"):
        sample_actions_per_row(out, [torch.Generator()] * (rows + 1))


def test_deterministic_takes_the_modes():
    out = _output(torch.tensor([[0.1, 0.6, 0.3]]), torch.tensor([[0.2, 0.3, 0.5]]))
    buttons, camera = sample_actions(out, deterministic=True)
    assert buttons.item() == 1 and camera.item() == 2


def test_log_prob_sums_both_heads():
    out = _output(torch.tensor([[0.1, 0.6, 0.3]]), torch.tensor([[0.2, 0.3, 0.5]]))
    lp = log_prob(out, torch.tensor([2]), torch.tensor([1]))
    assert math.isclose(lp.item(), math.log(0.3) + math.log(0.3), rel_tol=1e-6)


def test_entropy_of_known_distributions():
    out = _output(torch.full((1, 8641), 1 / 8641), torch.tensor([[1.0, 0.0]]))
    h_buttons, h_camera = entropy(out)
    assert math.isclose(h_buttons.item(), math.log(8641), rel_tol=1e-5)
    assert h_camera.item() == 0.0  # a certain outcome, with log(0) = -inf terms ignored


def test_policy_samples_are_in_range(vpt_tiny, vpt_oracle):
    out, _ = vpt_tiny.step(
        torch.from_numpy(vpt_oracle["frames"][:, 0]), torch.ones(2, dtype=torch.bool), vpt_tiny.initial_state(2)
    )
    buttons, camera = sample_actions(out, generator=torch.Generator().manual_seed(0))
    assert buttons.shape == (2,) and buttons.min() >= 0 and buttons.max() < 8641
    assert camera.shape == (2,) and camera.min() >= 0 and camera.max() < 121
