"""BlockWorld: the gymnasium contract, determinism, mechanics and ground truth on hand-built scenes."""

import json

import gymnasium
import numba
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import vptlens.envs  # noqa: F401  (registers vptlens/BlockWorld-v0)
from vptlens.envs.blockworld import BlockWorldEnv, SceneWrapper
from vptlens.envs.blockworld.accel import Accel
from vptlens.envs.blockworld.textures import break_ticks

NOOP = {"camera": np.zeros(2, np.float32)}


def _flat_env(**kw):
    return BlockWorldEnv(height=64, width=64, terrain="flat", spawn_mobs=False, **kw)


def _scene(*edits):
    # face south (+z), level, at the flat world's spawn; then the given edits
    return {"name": "test", "edits": [{"op": "teleport", "pos": ["~", "~", "~"], "pitch": 0, "yaw": 0}, *edits]}


def _run(env, action, n):
    out = []
    for _ in range(n):
        out.append(env.step(action))
    return out


def test_check_env_passes():
    env = BlockWorldEnv(height=64, width=64)
    check_env(env, skip_render_check=False)


def test_registered_with_gymnasium():
    env = gymnasium.make("vptlens/BlockWorld-v0", height=32, width=48)
    obs, _ = env.reset(seed=0)
    assert obs["pov"].shape == (32, 48, 3) and obs["pov"].dtype == np.uint8


def test_same_seed_same_actions_same_frames_and_infos():
    rng = np.random.default_rng(0)
    actions = []
    for _ in range(40):
        action = {k: int(rng.random() < 0.3) for k in ("forward", "left", "jump", "attack", "use")}
        action["camera"] = rng.uniform(-5, 5, 2).astype(np.float32)
        actions.append(action)
    runs = []
    for _ in range(2):
        env = BlockWorldEnv(height=48, width=64)
        obs, info = env.reset(seed=7)
        frames, infos = [obs["pov"]], [json.dumps(info, sort_keys=True)]
        for action in actions:
            obs, _, _, _, info = env.step(action)
            frames.append(obs["pov"])
            infos.append(json.dumps(info, sort_keys=True))
        runs.append((frames, infos))
    assert all(np.array_equal(a, b) for a, b in zip(runs[0][0], runs[1][0]))
    assert runs[0][1] == runs[1][1]
    other, _ = BlockWorldEnv(height=48, width=64).reset(seed=8)
    assert not np.array_equal(other["pov"], runs[0][0][0])


def test_crosshair_target_of_a_hand_built_scene():
    env = _flat_env()
    _, info = env.reset(
        seed=0, options={"scene": _scene({"op": "set_block", "pos": ["~", "~1", "~3"], "block": "oak_log"})}
    )
    x, y, z = (int(np.floor(v)) for v in (info["pose"]["x"], info["pose"]["y"], info["pose"]["z"]))
    target = info["crosshair"]
    assert target["kind"] == "block" and target["block"] == "oak_log"
    assert target["pos"] == [x, y + 1, z + 3] and target["face"] == "north"
    assert target["distance"] == pytest.approx((z + 3) - info["pose"]["z"])  # eye level, straight ahead


def test_nearest_log_follows_the_trees_as_they_are_chopped():
    env = _flat_env()
    _, info = env.reset(seed=0, options={"scene": _scene()})
    assert info["nearest_log"] is None  # the flat world has no trees
    logs = [{"op": "set_block", "pos": ["~", "~1", "~3"], "block": "oak_log"},
            {"op": "set_block", "pos": ["~-6", "~", "~-6"], "block": "birch_log"}]  # fmt: skip
    _, info = env.reset(seed=0, options={"scene": _scene(*logs)})
    px, py, pz = info["pose"]["x"], info["pose"]["y"], info["pose"]["z"]
    x, y, z = (int(np.floor(v)) for v in (px, py, pz))
    near = info["nearest_log"]
    assert near["block"] == "oak_log" and near["pos"] == [x, y + 1, z + 3]
    assert near["distance"] == pytest.approx(info["crosshair"]["distance"])  # straight ahead at eye level
    steps = _run(env, {**NOOP, "attack": 1}, 60)  # chop it
    far = steps[-1][4]["nearest_log"]
    eye = np.array([px, py + 1.62, pz])
    closest = np.clip(eye, [x - 6, y, z - 6], [x - 5, y + 1, z - 5])
    assert far["block"] == "birch_log" and far["pos"] == [x - 6, y, z - 6]
    assert far["distance"] == pytest.approx(float(np.linalg.norm(closest - eye)), abs=1e-9)


def test_a_square_frame_is_the_16_9_view_squashed():
    """At 128x128 the view is Minecraft's 16:9 window fit to the frame (as VPT resizes 640x360), so a mob off to
    the side lies 16/9 times closer to the centre column than with square pixels; at 640x360 nothing changes."""
    villager = {"op": "summon", "entity": "villager", "pos": ["~2", "~", "~6"], "no_ai": True}
    offsets = {}
    for aspect in (16 / 9, 1.0):
        env = BlockWorldEnv(height=128, width=128, terrain="flat", spawn_mobs=False, hud=False, aspect=aspect)
        _, info = env.reset(seed=0, options={"scene": _scene(villager)})
        (seen,) = info["visible_entities"]
        x0, _, x1, _ = seen["box"]
        offsets[aspect] = (x0 + x1 + 1) / 2 - 64
    assert abs(offsets[1.0]) > 20
    assert offsets[16 / 9] == pytest.approx(offsets[1.0] / (16 / 9), abs=1.5)
    wide = BlockWorldEnv(height=90, width=160, terrain="flat", spawn_mobs=False, hud=False)
    square_pixels = BlockWorldEnv(height=90, width=160, terrain="flat", spawn_mobs=False, hud=False, aspect=160 / 90)
    a, _ = wide.reset(seed=0, options={"scene": _scene(villager)})
    b, _ = square_pixels.reset(seed=0, options={"scene": _scene(villager)})
    np.testing.assert_array_equal(a["pov"], b["pov"])


def test_visible_entity_box_contains_the_crosshair():
    env = _flat_env()
    villager = {"op": "summon", "entity": "villager", "pos": ["~", "~", "~4"], "no_ai": True, "tag": "target"}
    scene = _scene({**villager, "profession": "farmer"})
    _, info = env.reset(seed=0, options={"scene": scene})
    (seen,) = info["visible_entities"]
    x0, y0, x1, y1 = seen["box"]
    assert seen["entity_type"] == "villager" and seen["profession"] == "farmer" and seen["tag"] == "target"
    assert x0 <= 32 <= x1 and y0 <= 32 <= y1 and seen["pixels"] > 20
    assert info["crosshair"]["kind"] == "entity" and info["crosshair"]["entity_id"] == seen["entity_id"]
    assert info["scene"]["summoned"] == {"target": seen["entity_id"]}


def test_holding_attack_breaks_a_log_after_60_ticks():
    assert break_ticks("oak_log") == 60 and break_ticks("dirt") == 15 and break_ticks("stone") == 150
    env = _flat_env()
    env.reset(seed=0, options={"scene": _scene({"op": "set_block", "pos": ["~", "~1", "~2"], "block": "oak_log"})})
    steps = _run(env, {**NOOP, "attack": 1}, 60)
    events = [(i, e["type"]) for i, (_, _, _, _, info) in enumerate(steps) for e in info["events"]]
    assert events == [(59, "block_broken"), (59, "item_collected")]
    obs = steps[-1][0]
    assert obs["inventory"]["oak_log"] == 1 and steps[-1][4]["crosshair"]["kind"] == "none"
    assert steps[-1][4]["events"][1] == {"type": "item_collected", "item": "oak_log", "count": 1}


def test_releasing_attack_resets_break_progress():
    env = _flat_env()
    env.reset(seed=0, options={"scene": _scene({"op": "set_block", "pos": ["~", "~1", "~2"], "block": "oak_log"})})
    _run(env, {**NOOP, "attack": 1}, 50)
    env.step(NOOP)
    steps = _run(env, {**NOOP, "attack": 1}, 50)
    assert not any(info["events"] for *_, info in steps)


def test_punching_a_villager_to_death():
    env = _flat_env()
    scene = _scene(
        {"op": "summon", "entity": "villager", "pos": ["~", "~", "~2"], "no_ai": True, "profession": "farmer"}
    )
    env.reset(seed=0, options={"scene": scene})
    attacked, killed_at = [], None
    for t in range(400):
        _, _, _, _, info = env.step({**NOOP, "attack": 1})
        for event in info["events"]:
            if event["type"] == "entity_attacked":
                attacked.append((t, event["damage"], event["health"]))
            if event["type"] == "entity_killed":
                killed_at = t
        if killed_at is not None:
            break
    assert len(attacked) == 20 and all(d == 1.0 for _, d, _ in attacked)  # 20 health, 1 per fist hit
    assert [t2 - t1 for (t1, *_), (t2, *_) in zip(attacked, attacked[1:])] == [10] * 19  # invulnerability
    assert attacked[-1][2] == 0.0 and killed_at == attacked[-1][0]
    _run(env, NOOP, 20)
    assert env.world.entities == {}  # removed after the death animation


def test_pitch_clamps_and_yaw_wraps():
    env = _flat_env()
    env.reset(seed=0)
    obs, *_ = env.step({"camera": np.array([80.0, 170.0], np.float32)})
    obs, *_ = env.step({"camera": np.array([80.0, 170.0], np.float32)})
    assert obs["location_stats"]["pitch"] == 90.0
    assert -180.0 <= obs["location_stats"]["yaw"] < 180.0
    obs, *_ = env.step({"camera": np.array([-400.0, 0.0], np.float32)})
    assert obs["location_stats"]["pitch"] == -90.0


def test_walking_into_a_wall_stops():
    env = _flat_env()
    wall = {"op": "fill", "from": ["~-1", "~", "~2"], "to": ["~1", "~1", "~2"], "block": "stone"}
    _, info = env.reset(seed=0, options={"scene": _scene(wall)})
    z0 = info["pose"]["z"]
    steps = _run(env, {**NOOP, "forward": 1}, 40)
    z = steps[-1][4]["pose"]["z"]
    assert z == pytest.approx(np.floor(z0) + 2 - 0.3, abs=1e-6)  # the player's half width from the wall
    free = _flat_env()
    free.reset(seed=0, options={"scene": _scene()})
    z_free = _run(free, {**NOOP, "forward": 1}, 40)[-1][4]["pose"]["z"]
    assert 40 * 0.17 < z_free - z0 < 40 * 0.22  # Minecraft walks 4.3 m/s = 0.216 blocks per tick at full speed


def test_gravity_lands_the_player_and_falls_hurt():
    env = _flat_env()
    obs, info = env.reset(seed=0, options={"scene": _scene({"op": "teleport", "pos": ["~", "~5", "~"]})})
    ground = info["pose"]["y"] - 5
    steps = _run(env, NOOP, 40)
    obs, info = steps[-1][0], steps[-1][4]
    assert info["pose"]["y"] == pytest.approx(ground)
    hurt = [e for *_, i in steps for e in i["events"] if e["type"] == "player_hurt"]
    assert hurt == [{"type": "player_hurt", "cause": "fall", "damage": 2.0}]  # ceil(5 - 3)
    landed = next(i for i, (*_, inf) in enumerate(steps) if inf["events"])
    assert steps[landed][0]["life_stats"]["life"] == 18.0
    assert obs["life_stats"]["life"] > 18.0  # a full food bar with saturation heals it back fast


def test_placing_the_held_block():
    env = _flat_env()
    env.reset(seed=0, options={"scene": _scene({"op": "set_block", "pos": ["~", "~1", "~2"], "block": "oak_log"})})
    _run(env, {**NOOP, "attack": 1}, 60)
    obs, _, _, _, info = env.step({"camera": np.array([45.0, 0.0], np.float32)})  # look down at the ground
    obs, _, _, _, info = env.step({**NOOP, "use": 1})
    placed = [e for e in info["events"] if e["type"] == "block_placed"]
    assert placed and placed[0]["block"] == "oak_log" and obs["inventory"]["oak_log"] == 0


def test_scene_by_name_through_reset():
    env = _flat_env()
    _, info = env.reset(seed=0, options={"scene": "villager_under_leaves"})
    assert info["scene"]["name"] == "villager_under_leaves"
    assert info["crosshair"]["kind"] == "entity" and info["crosshair"]["profession"] == "farmer"
    assert info["time_of_day"] == 6000


def test_scene_wrapper_applies_the_scene_at_every_reset():
    scene = _scene({"op": "set_block", "pos": ["~", "~1", "~2"], "block": "oak_log"})
    env = SceneWrapper(_flat_env(), {**scene, "name": "log_ahead"})
    for seed in (0, 1):
        _, info = env.reset(seed=seed)
        assert info["scene"]["name"] == "log_ahead"
        assert info["crosshair"]["kind"] == "block" and info["crosshair"]["block"] == "oak_log"


def test_render_grids_follow_block_edits():
    env = _flat_env()
    fill = {"op": "fill", "from": ["~-3", "~", "~2"], "to": ["~3", "~5", "~6"], "block": "water"}
    env.reset(seed=0, options={"scene": _scene(fill, {"op": "set_block", "pos": ["~", "~1", "~1"], "block": "dirt"})})
    _run(env, {**NOOP, "attack": 1}, 15)  # breaks the dirt
    world = env.world
    fresh = Accel(world.blocks, world.accel.water_id, world.accel.occluding)
    for name in ("occluders", "occupancy4", "occupancy16", "heights"):
        assert np.array_equal(getattr(world.accel, name), getattr(fresh, name)), name
    assert world.accel.top_y == fresh.top_y


def test_frames_do_not_depend_on_the_number_of_threads():
    env = BlockWorldEnv(height=48, width=64)
    env.reset(seed=3)
    env.step({**NOOP, "forward": 1})
    frames = []
    try:
        for n in (1, numba.config.NUMBA_NUM_THREADS):
            numba.set_num_threads(n)
            frames.append(env._observe([])[0]["pov"])
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    assert np.array_equal(frames[0], frames[1])


def test_world_rejects_bad_scene_calls():
    env = _flat_env()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="unknown block"):
        env.world.set_block(1, 1, 1, "diamond_ore")
    with pytest.raises(ValueError, match="outside the world"):
        env.world.set_block(-1, 1, 1, "dirt")
    with pytest.raises(ValueError, match="unknown entity"):
        env.world.summon("creeper", 1.0, 20.0, 1.0, no_ai=True, profession=None, health=None, yaw=0.0, tag=None)


def test_hud_shows_health_and_food_by_halves():
    """Minecraft 1.16's layout at 640x360: ten hearts from x = 229 and ten drumsticks ending at x = 411, at y = 321;
    health 7 shows three full hearts, a half and six empty ones."""
    from vptlens.envs.blockworld import hud

    img = np.zeros((360, 640, 3), np.uint8)
    hud.draw_hud(img, [["", 0]] * 9, 0, health=7.0, food=20.0)
    red = np.all(img == hud._PALETTE["r"], axis=-1)
    meat = np.all(img == hud._PALETTE["m"], axis=-1)
    left = [int(red[321:330, 229 + 8 * i : 229 + 8 * i + 5].sum()) for i in range(10)]
    right = [int(red[321:330, 229 + 8 * i + 5 : 229 + 8 * i + 9].sum()) for i in range(10)]
    assert all(n > 0 for n in left[:4]) and all(n == 0 for n in left[4:])
    assert all(n > 0 for n in right[:3]) and all(n == 0 for n in right[3:])  # heart 4 is a half heart
    drumsticks = [int(meat[321:330, 411 - 8 * i - 9 : 411 - 8 * i].sum()) for i in range(10)]
    assert all(n > 0 for n in drumsticks)
    env = BlockWorldEnv(height=360, width=640, terrain="flat", spawn_mobs=False)
    env.reset(seed=0, options={"scene": _scene()})
    env.world.player.health = 0.4  # the env draws its player's health, rounded up: one half heart
    obs, *_ = env.step(NOOP)
    red = np.all(obs["pov"][321:330] == hud._PALETTE["r"], axis=-1)
    assert red[:, 229:234].any() and not red[:, 234:].any()


def test_food_follows_minecraft_exhaustion():
    """Minecraft 1.16 at normal difficulty: sprinting costs 0.1 exhaustion per block, 4 exhaustion cost a
    saturation point and then a food point; 18+ food heals 1 every 80 ticks (for 6 exhaustion); an empty bar
    starves 1 health every 80 ticks; no sprinting at 6 food or less."""
    env = _flat_env()
    env.reset(seed=0, options={"scene": _scene()})
    p = env.world.player
    p.saturation, p.exhaustion = 0.0, 3.9
    start = p.pos.copy()
    steps = _run(env, {**NOOP, "forward": 1, "sprint": 1}, 20)
    moved = float(np.hypot(*(p.pos - start)[[0, 2]]))
    assert 4.5 < moved < 6.5  # ~5.6 blocks/s sprinting
    assert p.food == 19.0 and p.exhaustion == pytest.approx(3.9 + 0.1 * moved - 4.0, abs=1e-9)
    assert steps[-1][0]["life_stats"]["food"] == 19.0

    p.health, p.food, p.saturation, p.exhaustion, p.food_timer = 15.0, 18.0, 0.0, 0.0, 0
    _run(env, NOOP, 80)
    assert p.health == 16.0 and p.food == 18.0 and p.exhaustion == pytest.approx(6.0)
    env.step(NOOP)  # the next tick spends 4 of it: one food point (saturation is empty)
    assert p.food == 17.0 and p.exhaustion == pytest.approx(2.0)

    p.health, p.food, p.food_timer = 20.0, 0.0, 0
    steps = _run(env, NOOP, 80)
    assert p.health == 19.0
    assert steps[-1][4]["events"] == [{"type": "player_hurt", "cause": "starvation", "damage": 1.0}]

    p.exhaustion = 0.0  # harm: a mob's hit costs 0.1 exhaustion, a fall (armour-bypassing) nothing
    env.world._hurt_player(2.0, "fall")
    assert p.exhaustion == 0.0
    env.world._hurt_player(3.0, "zombie", entity_id=1)
    assert p.exhaustion == pytest.approx(0.1)

    p.food = 6.0
    start = p.pos.copy()
    _run(env, {**NOOP, "forward": 1, "sprint": 1}, 20)
    assert float(np.hypot(*(p.pos - start)[[0, 2]])) < 4.5  # walking speed, ~4.3 blocks/s


def test_forest_terrain_is_the_hills_wooded_everywhere():
    from vptlens.envs.blockworld.world import World
    from vptlens.envs.vocab import BLOCK_ID

    hills, forest = World(3, terrain="hills", mobs=False), World(3, terrain="forest", mobs=False)
    assert np.array_equal(hills.height, forest.height)  # the same land from the same seed

    def trunks(world):  # columns whose ground carries a trunk's foot
        logs = np.isin(world.blocks, [BLOCK_ID["oak_log"], BLOCK_ID["birch_log"]])
        feet = ~logs[:, :-1] & logs[:, 1:]
        return int(feet.sum())

    assert trunks(forest) > 2 * trunks(hills)  # seed 3: 233 trunks against 75 (forest on part of the hills)
    near = forest.nearest_log()
    assert near is not None and near["distance"] < 8  # the player spawns among trees
    with pytest.raises(ValueError, match="'hills' or 'forest' or 'flat'"):
        BlockWorldEnv(terrain="jungle")


def test_cleric_trunks_change_only_how_logs_look():
    from vptlens.envs.blockworld.textures import CLERIC_ROBE, texture_atlas
    from vptlens.envs.vocab import BLOCK_ID

    bark, cleric = texture_atlas(), texture_atlas("cleric")
    logs = [BLOCK_ID["oak_log"], BLOCK_ID["birch_log"]]
    others = np.setdiff1d(np.arange(len(bark)), logs)
    assert np.array_equal(bark[others], cleric[others])  # every other block bit for bit as in Minecraft's look
    side = cleric[logs, 1, :, :, :3].reshape(-1, 3).astype(float)
    robe = np.array(CLERIC_ROBE) * 255
    assert (np.abs(side - robe).max(1) < 40).mean() > 0.6  # mostly the robe's purple, the rest its trim
    assert np.abs(bark[logs, 1, :, :, :3].reshape(-1, 3) - robe).max(1).min() > 40  # bark has none of it

    scene = _scene({"op": "fill", "from": ["~", "~", "~3"], "to": ["~", "~3", "~3"], "block": "oak_log"})
    frames, infos = [], []
    for trunks in ("bark", "cleric"):
        env = _flat_env(trunks=trunks)
        obs, info = env.reset(seed=0, options={"scene": scene})
        obs, _, _, _, info = env.step({**NOOP, "attack": 1})
        frames.append(obs["pov"].astype(int))
        infos.append(json.dumps(info, sort_keys=True))
    assert infos[0] == infos[1]  # the world, its physics and its ground truth are the same
    r, g, b = frames[1][26, 29]  # the trunk, above the crosshair and its gold band
    assert b > g + 30 and r > g + 30  # purple
    r, g, b = frames[0][26, 29]
    assert r > b + 20  # brown bark
    changed = (frames[0] != frames[1]).any(-1)
    assert changed[:, 29].mean() > 0.5 and not changed[:, :16].any()  # the trunk changed; beside it nothing did
    with pytest.raises(ValueError, match="trunks 'birch' unknown; use 'bark' or 'cleric'"):
        BlockWorldEnv(trunks="birch")
