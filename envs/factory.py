"""`make(env_cfg, scene=...)`: the one place that turns an env config into an env.

The env configs form a tagged union, `EnvConfig`: the config's type says which env it builds
(`BlockWorldConfig` BlockWorld, `MineRLConfig` real Minecraft). tyro turns the union into the
subcommands `env:blockworld` / `env:minerl` of every command that has an `env` field. A
worker process builds its env from the same config with the same call.
"""

from dataclasses import asdict
from typing import Annotated

import gymnasium
import tyro

from vptlens.envs.blockworld.env import BlockWorldConfig, BlockWorldEnv, SceneWrapper
from vptlens.envs.minerl_env import MineRLConfig, MineRLEnv
from vptlens.envs.scenes import Scene, as_scene

EnvConfig = (
    Annotated[BlockWorldConfig, tyro.conf.subcommand("blockworld")]
    | Annotated[MineRLConfig, tyro.conf.subcommand("minerl")]
)
"""Which env, and its settings: BlockWorld (embedded, offline) or MineRL (real Minecraft)."""

_ENVS: dict[type, tuple[str, type[gymnasium.Env]]] = {
    BlockWorldConfig: ("blockworld", BlockWorldEnv),
    MineRLConfig: ("minerl", MineRLEnv),
}
"""Each env config type: the id an episode records, and the env it builds."""


def _lookup(env_cfg: object) -> tuple[str, type[gymnasium.Env]]:
    if type(env_cfg) not in _ENVS:
        valid = " or ".join(t.__name__ for t in _ENVS)
        raise TypeError(f"{type(env_cfg).__name__} is not an env config; pass a {valid}")
    return _ENVS[type(env_cfg)]


def get_env_id(env_cfg: BlockWorldConfig | MineRLConfig) -> str:
    """'blockworld' or 'minerl' (what an episode records as its env's id)."""
    return _lookup(env_cfg)[0]


def get_env_settings(env_cfg: BlockWorldConfig | MineRLConfig) -> dict:
    """The config as a dict, with the frame's height and width (what an episode records as its env's settings)."""
    _lookup(env_cfg)
    return {**asdict(env_cfg), "height": env_cfg.height, "width": env_cfg.width}


def make(env_cfg: BlockWorldConfig | MineRLConfig, *, scene: Scene | dict | str | None = None) -> gymnasium.Env:
    """The env `env_cfg` describes; with a scene, applied at every reset. Parse the scene once (`as_scene`) and
    pass the Scene when making many envs: a bad scene then fails before any env is built."""
    _, env_type = _lookup(env_cfg)
    env = env_type(env_cfg)
    return env if scene is None else SceneWrapper(env, as_scene(scene))
