"""Render a contact sheet of BlockWorld views, to judge by eye whether it looks like Minecraft.

    python scripts/blockworld_contact_sheet.py --out blockworld_contact_sheet.png

Panels, all at 640x360 as MineRL renders for VPT: a forest by day; the villager-under-leaves
probe and its controls (built-in scenes); mobs; sunset; night; close to a trunk; a log
half broken (cracks, outline, swinging arm); the hotbar after chopping (magnified inset).
"""

import argparse
from pathlib import Path

import cv2
import numpy as np

from vptlens.envs.blockworld import BlockWorldEnv
from vptlens.envs.vocab import BLOCK_ID

NOOP = {"camera": np.zeros(2, np.float32)}
SCENES = ("villager_under_leaves", "villager_in_open", "villager_other_clothes_under_leaves", "tree_at_spot")
MOBS = {
    "name": "mobs",
    "edits": [
        {"op": "teleport", "pos": ["~", "~", "~"], "pitch": 5, "yaw": 0},
        {"op": "fill", "from": ["~-6", "~", "~1"], "to": ["~6", "~4", "~9"], "block": "air"},
        {"op": "fill", "from": ["~-6", "~-1", "~1"], "to": ["~6", "~-1", "~9"], "block": "grass_block"},
        {"op": "summon", "entity": "cow", "pos": ["~-3", "~", "~6"], "no_ai": True, "yaw": 120},
        {"op": "summon", "entity": "pig", "pos": ["~-1", "~", "~4"], "no_ai": True, "yaw": 200},
        {"op": "summon", "entity": "sheep", "pos": ["~1.5", "~", "~5"], "no_ai": True, "yaw": 160},
        {"op": "summon", "entity": "zombie", "pos": ["~3.5", "~", "~7"], "no_ai": True, "yaw": 180},
        {
            "op": "summon",
            "entity": "villager",
            "pos": ["~0", "~", "~8"],
            "no_ai": True,
            "profession": "cleric",
            "yaw": 180,
        },  # fmt: skip
    ],
}


def _face_tree(env: BlockWorldEnv, distance: float, pitch: float = 0.0, dense: bool = False) -> None:
    """Stand `distance` blocks north of an oak trunk's base, facing south (towards it), with a clear view.

    With `dense`, the trunk with the most trees around it (a forest); else the nearest one.
    """
    world = env.world
    log = world.blocks == BLOCK_ID["oak_log"]
    base = log & (np.roll(world.blocks, 1, axis=1) == BLOCK_ID["dirt"])  # trunks stand on dirt
    xs, ys, zs = np.nonzero(base)
    if dense:
        crowd = cv2.blur(log.any(axis=1).astype(np.float32), (15, 15))[xs, zs]
        order = np.argsort(-crowd, kind="stable")
    else:
        px, _, pz = world.player.pos
        order = np.argsort((xs - px) ** 2 + (zs - pz) ** 2, kind="stable")
    for i in order:
        x, y, z0 = int(xs[i]), int(ys[i]), int(zs[i])
        z = z0 - int(np.ceil(distance))
        if z < 1:
            continue
        sight = world.blocks[x, y : y + 2, z:z0]
        if world.solid[world.blocks[x, y - 1, z]] and not world.solid[sight].any():
            world.teleport(x + 0.5, float(y), z + 0.5, pitch=pitch, yaw=0.0)
            return
    raise RuntimeError("no suitable tree found; try another seed")


def panels() -> list[tuple[str, np.ndarray]]:
    out = []
    env = BlockWorldEnv()
    env.reset(seed=5)
    _face_tree(env, 10, pitch=-10, dense=True)
    env.world.set_time(4000)
    out.append(("forest by day", env.step(NOOP)[0]["pov"]))

    hills = BlockWorldEnv(spawn_mobs=False)
    for name in SCENES:
        out.append((name, hills.reset(seed=3, options={"scene": name})[0]["pov"]))
    out.append(("mobs: cow, pig, sheep, cleric, zombie", hills.reset(seed=3, options={"scene": MOBS})[0]["pov"]))

    env.reset(seed=5)
    _face_tree(env, 12, pitch=-8)
    env.world.set_time(11800)
    env.world.teleport(*env.world.player_position(), pitch=-8.0, yaw=80.0)  # towards the setting sun (west)
    out.append(("sunset", env.step(NOOP)[0]["pov"]))

    env.reset(seed=5)
    _face_tree(env, 7, pitch=-25)
    env.world.set_time(18000)
    out.append(("night", env.step(NOOP)[0]["pov"]))

    env.reset(seed=5)
    _face_tree(env, 2)
    out.append(("close to a trunk", env.step(NOOP)[0]["pov"]))

    chop = BlockWorldEnv(terrain="flat", spawn_mobs=False)
    chop.reset(seed=0, options={"scene": "tree_at_spot"})
    for _ in range(13):
        chop.step({"forward": 1, **NOOP})
    for _ in range(35):
        obs, *_ = chop.step({"attack": 1, **NOOP})
    out.append(("breaking a log: cracks, outline, arm", obs["pov"]))
    for _ in range(3):
        for _ in range(66):
            obs, *_ = chop.step({"attack": 1, **NOOP})
        obs, *_ = chop.step({"camera": np.array([-15.0, 0.0], np.float32)})
    obs, *_ = chop.step({"camera": np.array([60.0, 0.0], np.float32), "hotbar.1": 1})
    pov = obs["pov"].copy()
    bar = pov[330:360, 220:420]  # the hotbar, magnified 3x into the top left
    pov[10 : 10 + 90, 10 : 10 + 600] = cv2.resize(bar, (600, 90), interpolation=cv2.INTER_NEAREST)
    out.append((f"after chopping: {int(obs['inventory']['oak_log'])} logs (hotbar inset 3x)", pov))
    return out


def contact_sheet(items: list[tuple[str, np.ndarray]], columns: int = 3) -> np.ndarray:
    h, w = items[0][1].shape[:2]
    rows = -(-len(items) // columns)
    sheet = np.full((rows * (h + 24), columns * w, 3), 30, np.uint8)
    for k, (label, img) in enumerate(items):
        r, c = divmod(k, columns)
        y0 = r * (h + 24)
        sheet[y0 + 24 : y0 + 24 + h, c * w : (c + 1) * w] = img
        cv2.putText(sheet, label, (c * w + 6, y0 + 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (235, 235, 235), 1, cv2.LINE_AA)
    return sheet


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("blockworld_contact_sheet.png"))
    args = parser.parse_args()
    sheet = contact_sheet(panels())
    cv2.imwrite(str(args.out), sheet[:, :, ::-1])
    print(f"wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]})")


if __name__ == "__main__":
    main()
