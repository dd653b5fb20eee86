"""What the probes need from a recorded run besides its arrays: the agent that played it, the goal, its steps."""

import logging
from pathlib import Path

import numpy as np
import torch

from vptlens.agents import load_policy
from vptlens.agents.loading import sha256_file
from vptlens.agents.policy import VPTPolicy
from vptlens.recordings.store import Episode

logger = logging.getLogger(__name__)


def load_run_policy(
    episode: Episode,
    model_path: str | Path | None = None,
    weights_path: str | Path | None = None,
    device: str = "cpu",
) -> VPTPolicy:
    """The policy that recorded `episode`, from the files its provenance names (or the ones given).

    The files' sha256 must match the recording's: activations spliced into a different
    network would give numbers that mean nothing.
    """
    agent = episode.attrs.get("agent") or {}
    model = Path(model_path or agent.get("model_path", ""))
    weights = Path(weights_path or agent.get("weights_path", ""))
    for kind, path in (("model", model), ("weights", weights)):
        if not path.is_file():
            raise FileNotFoundError(
                f"{episode.path} was recorded with the {kind} file {str(path)!r}, which is not here; "
                f"pass the same file with --{kind} PATH"
            )
        expected = agent.get(f"{kind}_sha256")
        if expected is not None and sha256_file(path) != expected:
            raise ValueError(
                f"{path}: sha256 differs from the {kind} file {episode.path} was recorded with ({expected[:12]}...); "
                "pass the exact file the run was recorded with"
            )
    return load_policy(model, weights, device=device)


def episode_goal(episode: Episode) -> np.ndarray | None:
    """STEVE-1: the 512-d goal embedding the episode was recorded with (None for VPT)."""
    goal_path = (episode.attrs.get("record_config") or {}).get("goal")
    if goal_path is None:
        return None
    path = Path(goal_path)
    if not path.is_file():
        raise FileNotFoundError(f"{episode.path} was recorded with the goal {goal_path!r}, which is not here")
    return np.load(path, allow_pickle=False).astype(np.float32).reshape(-1)


def episode_inputs(episode: Episode, policy: VPTPolicy) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The episode as one sequence the policy can replay: frames (1, N, 128, 128, 3), first (1, N), goal (1, g)."""
    frames = torch.from_numpy(np.asarray(episode["frames"][:])).unsqueeze(0).to(policy.device)
    first = torch.zeros(frames.shape[:2], dtype=torch.bool, device=policy.device)
    first[:, 0] = True
    goal = episode_goal(episode)
    goal_t = None if goal is None else torch.from_numpy(goal).unsqueeze(0).to(policy.device, policy.dtype)
    return frames, first, goal_t
