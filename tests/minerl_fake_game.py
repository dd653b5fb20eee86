"""A test double of a MineRL 1.0 env (old gym API), for running the real bridge server in tests.

The server loads it with `--game-factory minerl_fake_game:make_fake_game`. It never starts
Minecraft: it records every call (seeds, resets, chat commands, actions) and returns them in
`info["log"]`, with a pov that encodes the seed and tick so tests can check what arrived.
Special chat commands steer it: `/fake sleep S` blocks for S seconds, `/fake crash` kills
the process as a Java crash would.
"""

import os
import sys
import time
from types import SimpleNamespace

import numpy as np

KEYS = ["forward", "back", "left", "right", "jump", "sneak", "sprint", "attack", "use", "drop", "inventory", "ESC",
        *(f"hotbar.{i}" for i in range(1, 10)), "pickItem", "swapHands"]  # fmt: skip


class _ActionSpace:
    def __init__(self, chat):
        self.spaces = {k: None for k in [*KEYS, "camera", *(["chat"] if chat else [])]}

    def noop(self):
        return {**{k: 0 for k in KEYS}, "camera": np.zeros(2, np.float32)}


class FakeMineRLGame:
    def __init__(self, chat=True):
        fov = float(os.environ.get("FAKE_MINERL_FOV", "70"))
        self.task = SimpleNamespace(
            resolution=[640, 360], fov_range=[fov, fov], gamma_range=[2, 2], guiscale_range=[1, 1],
            cursor_size_range=[16.0, 16.0],
        )  # fmt: skip
        self.action_space = _ActionSpace(chat)
        self.log = []
        self._seed = None
        self.tick = 0
        print("fake MineRL game started", file=sys.stderr, flush=True)
        print("noise on stdout must not corrupt the protocol")

    def seed(self, seed):
        self.log.append(["seed", seed])
        self._seed = seed

    def _obs(self):
        pov = np.zeros((360, 640, 3), np.uint8)
        pov[..., 0] = (self._seed or 0) % 256
        pov[..., 1] = self.tick % 256
        pov[0, :, 2] = np.arange(640) % 256
        return {
            "pov": pov,
            "inventory": {"oak_log": np.array(self.tick), "diamond": np.array(1)},
            "location_stats": {
                "xpos": np.array(1.5),
                "ypos": np.array(64.0),
                "zpos": np.array(-3.0),
                "pitch": np.array(0.0),
                "yaw": np.array(90.0),
            },  # fmt: skip
            "life_stats": {"life": np.array(20.0), "food": np.array(20.0)},
        }

    def reset(self):
        self.log.append(["reset", self._seed])
        self.tick = 0
        return self._obs()

    def step(self, action):
        self.tick += 1
        chat = action.get("chat")
        if chat:
            self.log.append(["chat", chat])
            if chat.startswith("/fake sleep"):
                time.sleep(float(chat.split()[-1]))
            if chat == "/fake crash":
                print("# A fatal error has been detected by the Java Runtime Environment", file=sys.stderr, flush=True)
                os._exit(134)
        else:
            pressed = sorted(k for k in KEYS if action.get(k))
            self.log.append(["step", pressed, [float(v) for v in action["camera"]]])
        return self._obs(), 0.5, False, {"log": self.log}

    def close(self):
        self.log.append(["close"])


def make_fake_game(env_id, chat):
    return FakeMineRLGame(chat=chat)
