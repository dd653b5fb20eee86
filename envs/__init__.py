"""Environments: BlockWorld (embedded, offline), scenes that edit worlds, and the MineRL backend.

`make(env_cfg, scene=...)` builds either from its config (`BlockWorldConfig` or `MineRLConfig`).
"""

import gymnasium

BLOCKWORLD_ID = "vptlens/BlockWorld-v0"

if BLOCKWORLD_ID not in gymnasium.registry:
    gymnasium.register(BLOCKWORLD_ID, entry_point="vptlens.envs.blockworld.env:BlockWorldEnv")

from vptlens.envs.factory import EnvConfig, get_env_id, get_env_settings, make  # noqa: E402

__all__ = ["BLOCKWORLD_ID", "EnvConfig", "get_env_id", "get_env_settings", "make"]
