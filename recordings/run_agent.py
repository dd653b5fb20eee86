"""The agent a recording runs: its files (given, downloaded or shipped), kept in the run, its goal, or a scripted
actor instead of a policy."""

import dataclasses
import logging
import os
import shutil
from pathlib import Path
from typing import Protocol

from vptlens.agents.goals import Goal
from vptlens.agents.policy import VPTPolicy
from vptlens.recordings.schema import AGENT_DIR, AgentRecord

logger = logging.getLogger(__name__)


class Actor(Protocol):
    """A scripted agent (e.g. `vptlens.training.expert.ChopperExpert`): the MineRL action for an env's state."""

    def act(self, env, info: dict) -> dict: ...


def check_goal(policy: VPTPolicy, goal: Goal | None) -> None:
    """A STEVE-1 policy needs a goal of its width; a plain VPT policy takes none."""
    if not policy.cfg.is_goal_conditioned:
        if goal is not None:
            raise ValueError("this is a VPT policy without goal conditioning: drop --prompt, --goal-video and --goal")
        return
    if goal is None:
        raise ValueError(
            "a STEVE-1 policy needs a goal: --prompt 'chop a tree', --goal-video clip.mp4 (20 fps) or --goal goal.npy"
        )
    if goal.embedding.shape != (policy.cfg.goal_dim,):
        raise ValueError(f"the goal has {goal.embedding.size} values; this policy takes {policy.cfg.goal_dim}")


def keep_agent_in_run(run_dir: Path, record: AgentRecord) -> AgentRecord:
    """Hard-link (or, across file systems, copy) the agent's files into `RUN/agent/`, and return the record with
    those run-relative paths: a run replays from itself, and its recorded paths are never followed outside it
    (`load_recording_policy`). A hard link costs no space; a copy of a 2x checkpoint is ~1 GB, said in the log."""
    if record.model_path is None or record.weights_path is None:
        return record  # a policy built in memory: nothing to keep
    folder = run_dir / AGENT_DIR
    folder.mkdir(exist_ok=True)
    relative = {}
    for kind in ("model", "weights"):
        source = Path(getattr(record, f"{kind}_path"))
        target = folder / source.name
        relative[f"{kind}_path"] = f"{AGENT_DIR}/{source.name}"
        if target.exists():
            continue  # a resume: the run's copy, whose sha256 was compared already
        try:
            os.link(source, target)
        except OSError:
            logger.info("copying %s into %s (a hard link was not possible)", source, folder)
            partial = target.with_name(target.name + ".part")
            shutil.copyfile(source, partial)
            partial.replace(target)
    return dataclasses.replace(record, **relative)


def agent_files(agent) -> tuple[Path, Path]:
    """The .model and .weights files of an agent given as `model`/`weights` or as a `zoo` name downloaded into
    `checkpoint_dir` (a `RecordConfig`, or an experiment's agent)."""
    if agent.zoo is None:
        return agent.model, agent.weights
    from vptlens.agents.zoo import get_zoo_entry, shipped_files

    entry = get_zoo_entry(agent.zoo)
    if entry.shipped:
        files = shipped_files(entry)
        return files["model"], files["weights"]
    paths = agent.checkpoint_dir / entry.model_file, agent.checkpoint_dir / entry.weights_file
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: not downloaded; run `vptlens download {agent.zoo} --dir {agent.checkpoint_dir}`"
            )
    return paths
