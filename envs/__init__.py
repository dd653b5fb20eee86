"""Environments: BlockWorld (embedded, offline), scenes that edit worlds, and the MineRL backend."""

import gymnasium

BLOCKWORLD_ID = "vptlens/BlockWorld-v0"

if BLOCKWORLD_ID not in gymnasium.registry:
    gymnasium.register(BLOCKWORLD_ID, entry_point="vptlens.envs.blockworld.env:BlockWorldEnv")
