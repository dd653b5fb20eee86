"""Agents: VPT and STEVE-1 policies with hook points, checkpoint loading, action mapping."""

from vptlens.agents.actions import factored_to_minerl, minerl_to_factored
from vptlens.agents.agent import Agent, preprocess_frames
from vptlens.agents.config import PolicyConfig, load_config
from vptlens.agents.distributions import entropy, log_prob, sample_actions
from vptlens.agents.loading import load_policy, make_random_policy
from vptlens.agents.policy import PolicyOutput, PolicyState, VPTPolicy

__all__ = [
    "Agent",
    "PolicyConfig",
    "PolicyOutput",
    "PolicyState",
    "VPTPolicy",
    "entropy",
    "factored_to_minerl",
    "load_config",
    "load_policy",
    "log_prob",
    "make_random_policy",
    "minerl_to_factored",
    "preprocess_frames",
    "sample_actions",
]
