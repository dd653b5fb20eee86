"""An agent as MineRL sees one: observation dicts in, action dicts out, the memory kept inside.

Preprocessing is VPT's: the 360x640 `pov` resized to 128x128 with OpenCV's INTER_LINEAR.
"""

import cv2
import numpy as np
import torch
from jaxtyping import UInt8

from vptlens.agents.actions import factored_to_minerl
from vptlens.agents.distributions import log_prob, sample_actions
from vptlens.agents.policy import PolicyOutput, VPTPolicy


def preprocess_frames(pov: np.ndarray, size: tuple[int, int] = (128, 128)) -> UInt8[np.ndarray, "*b h w 3"]:
    """Resize uint8 game frames (H, W, 3) or (..., H, W, 3) to the agent's resolution as VPT does.

    The input is checked here (not by its type hint) so that a wrong frame gets an explanation.
    """
    pov = np.asarray(pov)
    if pov.dtype != np.uint8 or pov.ndim < 3 or pov.shape[-1] != 3:
        raise ValueError(f"pov must be uint8 (..., H, W, 3) RGB frames, got {pov.dtype} {pov.shape}")
    height, width = size
    if pov.shape[-3:-1] == (height, width):
        return pov
    flat = pov.reshape(-1, *pov.shape[-3:])
    out = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_LINEAR) for f in flat])
    return out.reshape(*pov.shape[:-3], height, width, 3)


class Agent:
    """Wraps a policy for one environment: `reset()`, then `act(obs) -> MineRL action dict`.

    Acts stochastically as the released agents do (temperature already in the policy's
    logits) unless `deterministic`. For STEVE-1 pass a MineCLIP `goal` (512,) and optionally
    `cond_scale` for classifier-free guidance. `last` holds the latest step's policy output,
    factored action and log-probability, for inspection.
    """

    def __init__(
        self,
        policy: VPTPolicy,
        *,
        deterministic: bool = False,
        seed: int | None = None,
        goal: np.ndarray | None = None,
        cond_scale: float | None = None,
    ):
        if policy.cfg.is_goal_conditioned and goal is None:
            raise ValueError("a STEVE-1 policy needs a goal: Agent(policy, goal=mineclip_embedding_512)")
        self.policy = policy
        self.deterministic = deterministic
        self.cond_scale = cond_scale
        self.goal = None if goal is None else torch.as_tensor(goal, dtype=torch.float32).reshape(1, -1)
        self.generator = torch.Generator(device=policy.device)
        if seed is not None:
            self.generator.manual_seed(seed)
        self.last: dict = {}
        self.reset()

    def reset(self) -> None:
        """Forget the episode: the next observation starts a new one."""
        self.state = self.policy.initial_state(1, guided=self.cond_scale is not None)
        self._first = True

    def act(self, obs: dict) -> dict:
        """One MineRL observation (`pov` (H, W, 3) uint8) -> one MineRL action dict."""
        if "pov" not in obs:
            raise KeyError(f"observation has no 'pov' (keys: {sorted(obs)}); pass a MineRL observation dict")
        h, w, _ = self.policy.cfg.img_shape
        frame = torch.from_numpy(preprocess_frames(obs["pov"], (h, w))[None]).to(self.policy.device)
        first = torch.tensor([self._first], device=self.policy.device)
        out, self.state = self.policy.step(frame, first, self.state, goal=self.goal, cond_scale=self.cond_scale)
        self._first = False
        buttons, camera = sample_actions(out, self.deterministic, self.generator)
        self.last = {
            "output": PolicyOutput(*(x[0].cpu() for x in vars(out).values())),
            "buttons": int(buttons[0]),
            "camera": int(camera[0]),
            "log_prob": float(log_prob(out, buttons, camera)[0]),
        }
        return factored_to_minerl(buttons.cpu().numpy(), camera.cpu().numpy())[0]
