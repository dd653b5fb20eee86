"""The input-blind control: an agent's recorded actions replayed whatever the env shows.

A scene can change an agent's behaviour through what it sees, or through geometry alone: a canopy
changes where walking and punching lead even for an agent that sees nothing. The blind control
replays, per seed, the MineRL actions an agent took in one scene (the control scene, by default)
in every scene of the experiment; the worlds, spawn and ticks are the same for a seed, so its
differences between scenes are what geometry alone does with those actions, and an agent's
excess over it is what it did because of what it saw (`analysis` reports that difference of
differences with its interval).
"""

from pathlib import Path

import numpy as np

from vptlens.agents.actions import get_null_action
from vptlens.recordings.store import Episode, Run


class ReplayActions:
    """A scripted actor: step t's MineRL action of a recorded episode, whatever it is shown; the null action after
    the recording's end (an episode cut short by death, say)."""

    def __init__(self, episode: Episode):
        self._keys = {key: np.asarray(episode.minerl_action(key)[:]) for key in episode.minerl_keys}
        self._camera = np.asarray(episode.minerl_action("camera")[:], np.float32)
        self._t = 0

    def act(self, env, info: dict) -> dict:
        t, self._t = self._t, self._t + 1
        if t >= len(self._camera):
            return get_null_action()
        action = get_null_action()
        action.update({key: int(values[t]) for key, values in self._keys.items()})
        action["camera"] = self._camera[t].copy()
        return action

    @staticmethod
    def factory(source_run: Path):
        """`seed -> ReplayActions` over a recorded run's episodes (by their seeds), for `Recorder(actor=...)`."""
        episodes = {e.meta.seed: e for e in Run.open(source_run).episodes()}

        def make(seed: int) -> ReplayActions:
            if seed not in episodes:
                raise FileNotFoundError(f"{source_run} has no episode with seed {seed} to replay blind")
            return ReplayActions(episodes[seed])

        return make
