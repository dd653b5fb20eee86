"""`vptlens scenes`: list the built-in scenes, print one as YAML, or render its first frame in BlockWorld."""

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

from vptlens.envs.blockworld.env import BlockWorldConfig
from vptlens.envs.scenes import as_scene, list_builtin_scenes, load_builtin_scene


@dataclass(frozen=True)
class ScenesConfig:
    """List the built-in scenes (the default), print one as YAML (--show NAME), or render one (--preview NAME)."""

    show: str | None = None
    """A scene to print as YAML: a built-in scene's name or a .yaml/.json file."""
    preview: str | None = None
    """A scene to render in BlockWorld: the first frame after reset, written as a PNG to --out."""
    out: Path = Path("scene.png")
    """Where --preview writes its PNG."""
    seed: int = 0
    """The reset seed of the --preview world."""
    env: BlockWorldConfig = BlockWorldConfig()
    """The BlockWorld --preview renders in (its frame size is --env.height x --env.width)."""

    def __post_init__(self):
        if self.show is not None and self.preview is not None:
            raise ValueError("pass --show or --preview, not both")


def describe_builtin_scenes() -> str:
    """One line per built-in scene: its name and the first sentence of its description."""
    names = list_builtin_scenes()
    width = max(map(len, names))
    lines = []
    for name in names:
        text = " ".join(load_builtin_scene(name).description.split())
        first = re.split(r"(?<=\.)\s", text, maxsplit=1)[0]
        lines.append(f"{name:<{width}}  {textwrap.shorten(first, 100, placeholder=' ...')}")
    return "\n".join(lines)


def save_preview(scene: str, out_path: Path, env_cfg: BlockWorldConfig, seed: int = 0) -> Path:
    """Render the scene's first frame in BlockWorld and write it as a PNG."""
    import cv2

    from vptlens.envs.factory import make

    parsed = as_scene(scene)  # a bad scene fails before anything is written
    env = make(env_cfg, scene=parsed)
    try:
        obs, _ = env.reset(seed=seed)
    finally:
        env.close()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out_path), cv2.cvtColor(obs["pov"], cv2.COLOR_RGB2BGR)):
        raise ValueError(f"{out_path}: could not write a PNG there (use a path ending in .png)")
    return out_path


def main(cfg: ScenesConfig) -> str:
    if cfg.show is not None:
        text = as_scene(cfg.show).to_yaml()
    elif cfg.preview is not None:
        path = save_preview(cfg.preview, cfg.out, cfg.env, cfg.seed)
        text = f"{path}: {cfg.preview} in BlockWorld at {cfg.env.height}x{cfg.env.width}, seed {cfg.seed}"
    else:
        text = describe_builtin_scenes() + "\n\n`vptlens scenes --show NAME` prints one; `--preview NAME` renders it."
    print(text.rstrip("\n"))
    return text
