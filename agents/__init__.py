"""Agents: VPT and STEVE-1 policies with hook points, checkpoint loading, action mapping."""

from vptlens.agents.actions import factored_to_minerl, minerl_to_factored
from vptlens.agents.agent import Agent, preprocess_frames
from vptlens.agents.config import PolicyConfig, load_config
from vptlens.agents.distributions import entropy, log_prob, sample_actions
from vptlens.agents.goals import Goal, goal_from_prompt, goal_from_video, make_goal
from vptlens.agents.loading import load_policy, make_random_policy
from vptlens.agents.mineclip import MineCLIP, load_mineclip
from vptlens.agents.policy import PolicyOutput, PolicyState, VPTPolicy
from vptlens.agents.prior import Steve1Prior, load_prior

__all__ = [
    "Agent",
    "Goal",
    "MineCLIP",
    "PolicyConfig",
    "PolicyOutput",
    "PolicyState",
    "Steve1Prior",
    "VPTPolicy",
    "entropy",
    "factored_to_minerl",
    "goal_from_prompt",
    "goal_from_video",
    "load_config",
    "load_mineclip",
    "load_policy",
    "load_prior",
    "log_prob",
    "make_goal",
    "make_random_policy",
    "minerl_to_factored",
    "preprocess_frames",
    "sample_actions",
]
