"""BlockWorld: a small Minecraft-like voxel world behind MineRL's observation and action spaces."""

from vptlens.envs.blockworld.env import BlockWorldConfig, BlockWorldEnv, SceneWrapper
from vptlens.envs.blockworld.world import World

__all__ = ["BlockWorldConfig", "BlockWorldEnv", "SceneWrapper", "World"]
