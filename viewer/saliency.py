"""Saliency for the player's overlay: |d log pi(action taken) / d pixels| of each step's frame, on one scale for the
whole episode so that frames compare.

The gradient is the one `vptlens replay --saliency` draws (`recordings.replay.saliency_maps`: the recording's agent
through the `EpisodeReplayer`, the memory of earlier steps as replayed and held fixed, the max over colour
channels, a Gaussian blur of 2 pixels), but not normalised per frame: every map of an episode is divided by one
scale, the 99.5th percentile of the maps of SCALE_SAMPLES steps spread evenly over the episode, and clipped to 1.
Maps travel as RGBA PNG sprites laid out like the frame sprites (JET colours, alpha 0.7 x value).

The state after the last block computed is kept, so playing forward with the overlay on replays each step once.
"""

import cv2
import numpy as np
import torch

from vptlens.agents.distributions import log_prob
from vptlens.agents.policy import PolicyState
from vptlens.recordings.replayer import EpisodeReplayer
from vptlens.recordings.store import Episode
from vptlens.viewer.episodes import LRU, SPRITE_COLUMNS, SPRITE_STEPS
from vptlens.viewer.policies import Policies, make_replayer

SCALE_SAMPLES = 8
SCALE_PERCENTILE = 99.5
BLUR_SIGMA = 2.0
MAX_STEP_MODE = 256
"""From a kept state, step one frame at a time up to this far; farther, replay from the start in blocks."""


class Saliency:
    """Saliency sprites of served episodes, with their shared scale (cached)."""

    def __init__(self, policies: Policies):
        self.policies = policies
        self.scales = LRU(64)
        self.sprites = LRU(256)
        self._last: dict[tuple, tuple[int, PolicyState]] = {}
        """Per episode, the state after the last block computed (one: a 2x agent's memory is ~8 MB)."""

    @staticmethod
    def _key(episode: Episode) -> tuple:
        return (episode.path, episode.length, episode.status)

    def _maps(self, replayer: EpisodeReplayer, steps: list[int], start_state: PolicyState | None, start: int):
        """Raw blurred maps (steps, h, w) float32 of consecutive `steps` from the state before `start` (None: replay
        from the episode's start), and the state after the last step."""
        episode = replayer.episode
        buttons = torch.from_numpy(np.asarray(episode.action("buttons")[steps[0] : steps[-1] + 1], np.int64))
        camera = torch.from_numpy(np.asarray(episode.action("camera")[steps[0] : steps[-1] + 1], np.int64))
        if start_state is None or steps[0] - start > MAX_STEP_MODE:
            ((_, state),) = replayer.states([steps[0]])
        else:
            state = start_state
            with torch.no_grad():
                for t in range(start, steps[0]):
                    _, state = replayer.step(t, state)
        maps = []
        for i, t in enumerate(steps):
            frame = replayer.frames(t, t + 1)[0].float().requires_grad_(True)
            with torch.enable_grad():
                out, _ = replayer.step(t, state, frame=frame)
                (grad,) = torch.autograd.grad(log_prob(out, buttons[i : i + 1], camera[i : i + 1]).sum(), frame)
            maps.append(cv2.GaussianBlur(grad.abs().amax(-1).cpu().numpy(), (0, 0), BLUR_SIGMA))
            with torch.no_grad():
                _, state = replayer.step(t, state)
        return np.stack(maps), state

    def _replayer(self, episode: Episode):
        if not episode.has_policy_outputs:
            raise ValueError(f"{episode.path.name} stores no actions' classes: saliency needs the action taken")
        policy, lock = self.policies.get(episode)
        return make_replayer(episode, policy), lock

    def scale(self, episode: Episode) -> float:
        """The episode's saliency scale (gradient units): the SCALE_PERCENTILE-th percentile of SCALE_SAMPLES maps."""

        def make() -> float:
            replayer, lock = self._replayer(episode)
            samples = sorted({int(t) for t in np.linspace(0, len(episode) - 1, SCALE_SAMPLES)})
            values = []
            with lock:
                for t, state in replayer.states(samples):
                    maps, _ = self._maps(replayer, [t], state, t)
                    values.append(maps[0].ravel())
            return max(float(np.percentile(np.concatenate(values), SCALE_PERCENTILE)), 1e-12)

        return self.scales.get(self._key(episode), make)

    def sprite(self, episode: Episode, block: int) -> bytes:
        """RGBA PNG of the saliency of steps block*SPRITE_STEPS.., in the frame sprites' layout."""
        start = block * SPRITE_STEPS
        if not 0 <= start < len(episode):
            raise IndexError(f"saliency block {block} out of range: {episode.path.name} has {len(episode)} steps")
        key = self._key(episode)

        def make() -> bytes:
            scale = self.scale(episode)
            steps = list(range(start, min(len(episode), start + SPRITE_STEPS)))
            replayer, lock = self._replayer(episode)
            with lock:
                at, kept = self._last.get(key, (0, None))
                maps, state = self._maps(replayer, steps, kept if at <= start else None, at)
                self._last[key] = (steps[-1] + 1, state)
            values = np.clip(maps / scale, 0, 1)
            n, h, w = values.shape
            grid = np.zeros((-(-n // SPRITE_COLUMNS) * h, SPRITE_COLUMNS * w, 4), np.uint8)
            for i, v in enumerate(values):
                y, x = divmod(i, SPRITE_COLUMNS)
                colour = cv2.applyColorMap((v * 255).astype(np.uint8), cv2.COLORMAP_JET)  # BGR
                grid[y * h : (y + 1) * h, x * w : (x + 1) * w, :3] = colour
                grid[y * h : (y + 1) * h, x * w : (x + 1) * w, 3] = (0.7 * 255 * v).astype(np.uint8)
            ok, png = cv2.imencode(".png", grid)  # BGRA
            if not ok:
                raise ValueError("could not encode the saliency maps as PNG")
            return png.tobytes()

        return self.sprites.get((*key, block), make)
