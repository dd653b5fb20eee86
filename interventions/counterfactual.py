"""Counterfactual frames: a recorded camera path re-rendered in another scene, and the agent's view of both.

`counterfactual_frames(episode, scene)` resets BlockWorld as the episode was reset (its seed and
settings) with another scene, then carries the player along the recorded poses step by step
(`BlockWorldEnv.follow`), with the recorded actions (attack, use, drop) acting on what is there:
the frames the agent would have seen had the villager been a tree, with the same poses, ticks and
actions, so its behaviour cannot diverge. What the actions do depends on the world: punching
where the villager stood breaks the trunk that stands there instead.

`counterfactual_replay(episode, scene)` feeds the recording's agent both streams side by side
(row 0 the recorded frames, checked against the recording; row 1 the counterfactual frames,
each with its own memory) and reports per step the KL between the two action distributions,
P(attack) in each, and, for chosen hooks, how far the activations move: the way to find where
in the network two paired scenes part, and the source for patching between them.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vptlens.agents.agent import preprocess_frames
from vptlens.envs.blockworld import BlockWorldConfig, BlockWorldEnv
from vptlens.envs.scenes import Scene, as_scene
from vptlens.interventions.open_loop import p_attack
from vptlens.probes.sae.splice import kl_divergence
from vptlens.recordings.replayer import EpisodeReplayer
from vptlens.recordings.store import Episode


def _blockworld_config(episode: Episode) -> BlockWorldConfig:
    env = episode.meta.env
    if env.id != "blockworld":
        raise ValueError(f"{episode.path} was recorded in {env.id}; counterfactual frames need a BlockWorld episode")
    fields = set(BlockWorldConfig.__dataclass_fields__)
    return BlockWorldConfig(**{k: v for k, v in env.settings.items() if k in fields})


def counterfactual_frames(
    episode: Episode | str | Path, scene: Scene | dict | str | Path | None
) -> tuple[np.ndarray, np.ndarray]:
    """The recorded poses seen in `scene` (None: no scene): agent frames (N, h, w, 3) at the recording's agent
    resolution (128x128 for the released models) and env frames (N, H, W, 3), uint8."""
    episode = episode if isinstance(episode, Episode) else Episode(episode)
    if not episode.has_ground_truth("pose"):
        raise ValueError(f"{episode.path} stores no poses; record it again with `vptlens record`")
    poses = np.asarray(episode.ground_truth("pose")[:], np.float64)
    if not np.all(np.isfinite(poses)):
        raise ValueError(f"{episode.path}: some poses are unknown (NaN); counterfactual frames need every pose")
    keys = episode.minerl_keys
    pressed = {k: np.asarray(episode.minerl_action(k)[:]) for k in keys}
    env = BlockWorldEnv(_blockworld_config(episode))
    scene_obj = None if scene is None else as_scene(scene)
    obs, _ = env.reset(seed=episode.meta.seed, options=None if scene_obj is None else {"scene": scene_obj})
    full = np.empty((len(episode), *obs["pov"].shape), np.uint8)
    full[0] = obs["pov"]  # the reset puts the player where the recording's reset did (same seed, same spawn)
    for t in tqdm(range(1, len(episode)), desc="counterfactual frames", unit="step", disable=len(episode) < 200):
        action = {k: int(pressed[k][t - 1]) for k in keys}  # action t-1 led to frame t, seen from pose t
        obs, _ = env.follow(poses[t], action)
        full[t] = obs["pov"]
    env.close()
    return preprocess_frames(full, episode.frame_size), full


@dataclass
class CounterfactualResult:
    """Per step: the two action distributions compared, and how far chosen activations move."""

    episode: str
    scene: str
    frames: np.ndarray
    """(N, h, w, 3) the counterfactual agent frames."""
    kl_buttons: np.ndarray
    """KL(recorded frames || counterfactual frames) of the button head, nats, per step."""
    kl_camera: np.ndarray
    p_attack_recorded: np.ndarray
    p_attack_counterfactual: np.ndarray
    activation_distance: dict[str, np.ndarray] = field(default_factory=dict)
    """Per hook, per step: ||x_cf - x|| / ||x|| of the hook's activation (flattened)."""
    replay_max_abs_logprob_error: float = 0.0

    def means(self) -> dict[str, float]:
        out = {
            "kl_buttons": float(self.kl_buttons.mean()),
            "kl_camera": float(self.kl_camera.mean()),
            "d_p_attack": float((self.p_attack_counterfactual - self.p_attack_recorded).mean()),
        }
        out.update({f"distance {h}": float(d.mean()) for h, d in self.activation_distance.items()})
        return out


def counterfactual_replay(
    episode: Episode | str | Path,
    scene: Scene | dict | str | Path | None,
    *,
    hooks: tuple[str, ...] = (),
    replayer: EpisodeReplayer | None = None,
) -> CounterfactualResult:
    """The recording's agent on the recorded frames (row 0, checked) and on the counterfactual ones (row 1)."""
    episode = episode if isinstance(episode, Episode) else Episode(episode)
    replayer = replayer or EpisodeReplayer(episode)
    frames, _ = counterfactual_frames(episode, scene)
    cf = torch.from_numpy(frames)
    names = replayer.policy.select_hooks(list(hooks)) if hooks else []

    def row_frames(start: int, stop: int) -> torch.Tensor:
        return torch.stack([replayer.frames(start, stop), cf[start:stop].to(replayer.policy.device)])

    kl_b, kl_c, pa_rec, pa_cf = [], [], [], []
    distance = {h: [] for h in names}
    for block in replayer.run(rows=2, names=names, row_frames=row_frames):
        b_logits, c_logits = block.out.buttons_logits, block.out.camera_logits
        kl_b.append(kl_divergence(b_logits[0], b_logits[1]).cpu().numpy())
        kl_c.append(kl_divergence(c_logits[0], c_logits[1]).cpu().numpy())
        pa_rec.append(p_attack(b_logits[0]).cpu().numpy())
        pa_cf.append(p_attack(b_logits[1]).cpu().numpy())
        for h in names:
            x = block.cache[h].float().flatten(2)  # (2, t, features)
            distance[h].append(((x[1] - x[0]).norm(dim=-1) / x[0].norm(dim=-1).clamp_min(1e-12)).cpu().numpy())
    scene_name = "none" if scene is None else as_scene(scene).name
    return CounterfactualResult(
        episode=str(episode.path),
        scene=scene_name,
        frames=frames,
        kl_buttons=np.concatenate(kl_b),
        kl_camera=np.concatenate(kl_c),
        p_attack_recorded=np.concatenate(pa_rec),
        p_attack_counterfactual=np.concatenate(pa_cf),
        activation_distance={h: np.concatenate(d) for h, d in distance.items()},
        replay_max_abs_logprob_error=replayer.max_error,
    )
