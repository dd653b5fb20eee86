"""The recording agents the server replays (steering, feature effects), loaded once each and used one call at a time.

A policy's hooks are attached to the module for the length of a call, so two requests must not run the same
policy at once: each policy comes with its lock. Agent files come from the run (`RUN/agent/`, where the recorder
keeps them), or from the files given to `vptlens serve --model --weights` for runs recorded before it did; either
way their sha256 must match the recording's (`load_recording_policy`).
"""

import threading
from pathlib import Path

from vptlens.agents.policy import VPTPolicy
from vptlens.interventions.edits import edit_from_dict
from vptlens.recordings.replayer import EpisodeReplayer, load_recording_policy
from vptlens.recordings.store import Episode


class Policies:
    """Loaded policies keyed by the sha256 of the files an episode's provenance names."""

    def __init__(self, device: str = "cpu", model: Path | None = None, weights: Path | None = None):
        self.device, self.model, self.weights = device, model, weights
        self._policies: dict[tuple, tuple[VPTPolicy, threading.Lock, tuple[Path, Path]]] = {}
        self._lock = threading.Lock()

    def _load(self, episode: Episode) -> tuple[VPTPolicy, threading.Lock, tuple[Path, Path]]:
        agent = episode.meta.agent
        key = (agent.model_sha256, agent.weights_sha256)
        with self._lock:
            if key in self._policies and None not in key:
                return self._policies[key]
            try:  # the run's own copy first
                policy = load_recording_policy(episode, device=self.device)
                run_dir = episode.path.parent
                files = ((run_dir / agent.model_path).resolve(), (run_dir / agent.weights_path).resolve())
            except FileNotFoundError:
                if self.model is None or self.weights is None:
                    raise
                policy = load_recording_policy(episode, self.model, self.weights, device=self.device)
                files = (self.model.resolve(), self.weights.resolve())
            self._policies[key] = (policy.eval(), threading.Lock(), files)
            return self._policies[key]

    def get(self, episode: Episode) -> tuple[VPTPolicy, threading.Lock]:
        """The policy that recorded `episode` (sha256-checked) and its lock."""
        policy, lock, _ = self._load(episode)
        return policy, lock

    def files(self, episode: Episode) -> tuple[Path, Path]:
        """The .model and .weights files of the agent that recorded `episode` (checked by loading them)."""
        return self._load(episode)[2]


def make_replayer(episode: Episode, policy: VPTPolicy) -> EpisodeReplayer:
    """A replayer of `episode`, with the edit it was recorded under (an experiment's cell) applied throughout."""
    recorded = (
        [] if episode.meta.intervention is None else edit_from_dict(dict(episode.meta.intervention)).hooks(policy)
    )
    return EpisodeReplayer(episode, policy=policy, recorded_hooks=recorded)
