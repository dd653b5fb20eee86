"""Agents: VPT and STEVE-1 policies with hook points, checkpoint loading, action mapping."""

from vptlens.agents.config import PolicyConfig, load_config
from vptlens.agents.loading import load_policy, make_random_policy
from vptlens.agents.policy import PolicyOutput, PolicyState, VPTPolicy

__all__ = [
    "PolicyConfig",
    "PolicyOutput",
    "PolicyState",
    "VPTPolicy",
    "load_config",
    "load_policy",
    "make_random_policy",
]
