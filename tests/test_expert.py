"""The scripted tree-chopper: actions VPT expresses exactly, chopping, never hitting a mob, determinism, and
labelling states another policy drove the env into (DAgger)."""

import math

import numpy as np
import pytest

from vptlens.agents.actions import factored_to_minerl, minerl_to_factored
from vptlens.envs.blockworld import BlockWorldEnv
from vptlens.envs.blockworld.world import BLOCK_REACH, LOG_IDS
from vptlens.envs.vocab import BLOCK_ID
from vptlens.training.expert import ChopperExpert


def _env(**settings) -> BlockWorldEnv:
    return BlockWorldEnv(height=64, width=64, **settings)  # the expert reads the world, not the frame


def _run(
    env: BlockWorldEnv, expert: ChopperExpert, info: dict, n_steps: int, until_logs: int | None = None
) -> tuple[list[dict], list[dict], dict[int, tuple]]:
    """Let the expert play; returns (actions, infos after each step, {step: position} of the logs it broke)."""
    actions, infos, logs = [], [], {}
    for step in range(1, n_steps + 1):
        action = expert.act(env, info)
        _, _, terminated, truncated, info = env.step(action)
        actions.append(action)
        infos.append(info)
        for event in info["events"]:
            if event["type"] == "block_broken" and event["block"].endswith("_log"):
                logs[step] = tuple(event["pos"])
        if terminated or truncated or (until_logs is not None and len(logs) >= until_logs):
            break
    return actions, infos, logs


def _attacked(infos: list[dict]) -> int:
    return sum(event["type"] == "entity_attacked" for info in infos for event in info["events"])


def _scene(*edits: dict) -> dict:
    # face south (+z), level, then the given edits
    return {"name": "test", "edits": [{"op": "teleport", "pos": ["~", "~", "~"], "pitch": 0, "yaw": 0}, *edits]}


def _log_behind_villager() -> dict:
    """A three-log trunk four blocks ahead, a villager standing still halfway to it."""
    return _scene(
        {"op": "fill", "from": ["~", "~", "~4"], "to": ["~", "~2", "~4"], "block": "oak_log"},
        {"op": "summon", "entity": "villager", "pos": ["~", "~", "~2"], "no_ai": True},
    )


def test_every_action_survives_vpt_action_space_unchanged():
    env = _env()
    _, info = env.reset(seed=6)
    actions = _run(env, ChopperExpert(6), info, 300)[0]  # walking, sprinting, jumping, turning, chopping
    env = _env(terrain="flat", spawn_mobs=False)
    _, info = env.reset(seed=0, options={"scene": _log_behind_villager()})
    actions += _run(env, ChopperExpert(0), info, 100)[0]  # stepping aside
    for action in actions:
        (back,) = factored_to_minerl(*minerl_to_factored(action))
        assert back.keys() == action.keys()
        assert back["camera"].dtype == action["camera"].dtype == np.float32
        np.testing.assert_array_equal(back["camera"], action["camera"])
        assert {k: v for k, v in back.items() if k != "camera"} == {k: v for k, v in action.items() if k != "camera"}
    # the round trip was tried on a varied stream: turning, walking, strafing, jumping and attacking
    assert len({tuple(a["camera"]) for a in actions}) >= 10
    for button in ("attack", "forward", "jump", "left", "right", "sprint"):
        assert any(a[button] for a in actions), button
    assert max(np.abs(a["camera"]).max() for a in actions) <= 10.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fells_the_trunk_in_tree_at_spot(seed):
    env = _env()
    _, info = env.reset(seed=seed, options={"scene": "tree_at_spot"})
    x, y, z = (math.floor(v) for v in info["scene"]["origin"])
    _, infos, logs = _run(env, ChopperExpert(seed), info, 500, until_logs=4)
    assert set(logs.values()) == {(x, y + dy, z + 4) for dy in range(4)}  # the trunk ahead, all of it
    # measured on seeds 0-7: the first log after 60 steps (in reach from the start; a log takes 60 ticks), the
    # whole trunk, two of its logs inside the canopy, after 261-294 steps
    assert min(logs) <= 80
    assert max(logs) <= 350
    assert _attacked(infos) == 0


@pytest.mark.parametrize("scene", ["villager_under_leaves", "villager_in_open"])
def test_never_attacks_the_villager(scene):
    env = _env()
    _, info = env.reset(seed=0, options={"scene": scene})
    assert info["crosshair"]["kind"] == "entity"  # the villager starts under the crosshair
    actions, infos, logs = _run(env, ChopperExpert(0), info, 400)
    assert _attacked(infos) == 0
    assert logs  # it did chop (trees of the world around the clearing) meanwhile
    assert not actions[0]["attack"]


def test_chops_a_trunk_behind_a_villager_without_touching_it():
    env = _env(terrain="flat", spawn_mobs=False)
    _, info = env.reset(seed=0, options={"scene": _log_behind_villager()})
    assert info["crosshair"]["kind"] == "entity"
    actions, infos, logs = _run(env, ChopperExpert(0), info, 400, until_logs=3)
    assert len(logs) == 3  # measured: the third log after 192 steps
    assert _attacked(infos) == 0
    sides = {a["left"] - a["right"] for a in actions if a["left"] or a["right"]}
    assert len(sides) == 1  # it stepped aside, to one side (no dithering)


@pytest.mark.parametrize("momentum", [0.0, 0.3])
def test_holds_attack_when_its_drift_would_carry_a_villager_into_the_crosshair(momentum):
    """The game picks the attack's target after the tick's move: a log in the crosshair now is not enough."""
    scene = _scene(
        {"op": "set_block", "pos": ["~", "~1", "~4"], "block": "oak_log"},
        {"op": "summon", "entity": "villager", "pos": ["~0.5", "~", "~2.5"], "no_ai": True},  # just off the line
    )
    env = _env(terrain="flat", spawn_mobs=False)
    _, info = env.reset(seed=0, options={"scene": scene})
    assert info["crosshair"]["block"] == "oak_log"
    env.world.player.vel[0] = momentum  # sideways, towards the villager
    label = ChopperExpert(0).act(env, info)
    naive = env.step({"attack": 1, "camera": np.zeros(2, np.float32)})[4]
    if momentum:
        assert _attacked([naive]) == 1  # attacking now would hit the villager
        assert not label["attack"]
    else:
        assert _attacked([naive]) == 0
        assert label["attack"]


def test_same_seed_same_actions_other_seed_other_exploration():
    def actions(env_seed: int, expert_seed: int, **settings) -> list[tuple]:
        env = _env(**settings)
        _, info = env.reset(seed=env_seed)
        return [
            (tuple(a["camera"]), tuple(v for k, v in a.items() if k != "camera"))
            for a in _run(env, ChopperExpert(expert_seed), info, 150)[0]
        ]

    assert actions(5, 0) == actions(5, 0)
    # a treeless flat world: the expert explores, and its seed decides the heading's drift and the glances
    assert actions(0, 0, terrain="flat") == actions(0, 0, terrain="flat")
    assert actions(0, 0, terrain="flat") != actions(0, 1, terrain="flat")


def test_exploring_keeps_out_of_water():
    lake = {"op": "fill", "from": ["~-12", "~-1", "~2"], "to": ["~12", "~-1", "~12"], "block": "water"}
    env = _env(terrain="flat", spawn_mobs=False)
    _, info = env.reset(seed=0, options={"scene": _scene(lake)})
    start = env.world.player.pos.copy()
    expert = ChopperExpert(0)
    for _ in range(300):
        info = env.step(expert.act(env, info))[4]
        x, y, z = (math.floor(v) for v in env.world.player.pos)
        assert BLOCK_ID["water"] not in env.world.blocks[x, y - 1 : y + 1, z]  # neither in it nor on it
    assert expert.target is None  # no tree in the flat world: it explored all along
    assert np.hypot(*(env.world.player.pos - start)[[0, 2]]) > 5.0  # and walked, around the lake


def test_a_visible_sight_expert_explores_along_its_view_not_a_remembered_heading():
    """A learner turned the view a quarter turn while the expert explored: the oracle turns back to its heading, the
    visible-sight expert (whose labels must follow from the frames) walks on where it looks."""
    turns = {}
    for sight in ("oracle", "visible"):
        env = _env(terrain="flat", spawn_mobs=False)
        _, info = env.reset(seed=0)
        expert = ChopperExpert(0, explore_noise=0.0, sight=sight)
        for _ in range(20):
            info = env.step(expert.act(env, info))[4]
        env.world.player.yaw += 90.0  # the learner's doing
        action = expert.act(env, info)
        assert expert.target is None  # exploring
        turns[sight] = float(action["camera"][1])
    assert turns["oracle"] == pytest.approx(-10.0, abs=0.5)  # back towards the heading, a whole bin a step
    assert abs(turns["visible"]) < 10.0  # drift only: a small turn from where it looks now


def _bearing(env: BlockWorldEnv, pos: tuple[int, int, int]) -> float:
    """Degrees the view must turn (positive: right) to face a block's centre."""
    p = env.world.player
    dx, dz = pos[0] + 0.5 - p.pos[0], pos[2] + 0.5 - p.pos[2]
    return (math.degrees(math.atan2(-dx, dz)) - p.yaw + 180.0) % 360.0 - 180.0


def test_labels_states_a_random_policy_drove_the_env_into():
    """DAgger: the learner drives, the expert labels every state; its labels must follow the world as it is."""
    n_checked = 0
    for seed in range(6):
        env = _env()
        _, info = env.reset(seed=seed)
        labeller, rng = ChopperExpert(seed), np.random.default_rng(seed)
        for _ in range(80):
            labeller.act(env, info)  # a label, not followed
            action = {k: int(rng.random() < p) for k, p in (("forward", 0.6), ("jump", 0.2), ("attack", 0.3))}
            action["camera"] = rng.uniform(-10, 10, 2).astype(np.float32)
            info = env.step(action)[4]
        # one that labelled every state, and one that joins now, knowing nothing of the episode
        newcomer = ChopperExpert(seed)
        for expert in (labeller, newcomer):
            label = expert.act(env, info)
            assert expert.target is not None and env.world.blocks[expert.target] in LOG_IDS  # a log, still there
            bearing = _bearing(env, expert.target)
            if abs(bearing) > 15.0 and not label["attack"]:
                assert np.sign(label["camera"][1]) == np.sign(bearing)
                n_checked += 1
        crosshair = info["crosshair"]
        if not (crosshair.get("block", "").endswith("_log") and crosshair["distance"] <= BLOCK_REACH):
            assert list(newcomer.target) == info["nearest_log"]["pos"]  # else it takes the log in its crosshair
    assert n_checked >= 6

    # and from where the learner left it, the expert gets to a log and breaks it
    assert _run(env, labeller, info, 500, until_logs=1)[2]


def test_rejects_a_noise_that_is_no_probability_and_an_unknown_way_to_explore():
    with pytest.raises(ValueError, match="explore_noise"):
        ChopperExpert(explore_noise=1.5)
    with pytest.raises(ValueError, match="explore 'run' is not one of walk, look"):
        ChopperExpert(explore="run")


def test_a_looking_expert_turns_to_a_trunk_behind_it_where_a_walking_one_walks_off():
    """explore="look" (sight="visible", nothing in view): it turns on the spot, SCAN_DEGREES a step, until the trunk
    behind the player comes into view, then chops it; explore="walk" walks off along its heading at once."""
    from vptlens.training.expert import SCAN_DEGREES

    def reset():
        env = _env(terrain="flat", spawn_mobs=False)
        behind = {"op": "fill", "from": ["~", "~", "~-4"], "to": ["~", "~2", "~-4"], "block": "oak_log"}
        _, info = env.reset(seed=0, options={"scene": _scene(behind)})
        return env, info

    env, info = reset()
    walker = ChopperExpert(0, explore_noise=0.0, sight="visible")
    action = walker.act(env, info)
    assert walker.target is None and action["forward"] == 1 and abs(action["camera"][1]) < SCAN_DEGREES / 2

    env, info = reset()
    looker = ChopperExpert(0, explore_noise=0.0, sight="visible", explore="look")
    turns = 0
    while (action := looker.act(env, info)) is not None and looker.target is None:
        assert action["forward"] == 0 and action["attack"] == 0 and action["camera"][1] == SCAN_DEGREES
        info = env.step(action)[4]
        turns += 1
        assert turns <= 360 / SCAN_DEGREES, "a whole circle and the trunk behind the player never came into view"
    assert 180 - 30 <= turns * SCAN_DEGREES <= 180 + 30  # found as it came within the 30-degree sight cone
    assert _run(env, looker, info, 300, until_logs=1)[2], "it found the trunk but did not chop it"


def test_a_target_broken_by_someone_else_is_dropped():
    env = _env()
    _, info = env.reset(seed=0)
    expert = ChopperExpert(0)
    expert.act(env, info)
    first = expert.target
    assert first is not None
    env.world.set_block(*first, "air")  # someone else broke it
    info = env.step({"camera": np.zeros(2, np.float32)})[4]
    expert.act(env, info)
    assert expert.target is not None and expert.target != first
    assert env.world.blocks[expert.target] in LOG_IDS


def test_a_visible_sight_expert_adopts_only_logs_it_can_see_and_lets_lost_ones_go():
    """sight="visible": a trunk behind the player is no target (the oracle turns to it at once); one ahead is, and is
    chopped; one ahead but behind a dirt wall is not; a target out of view for more than LOST_STEPS is let go."""
    from vptlens.training.expert import LOST_STEPS

    def reset(*edits):
        env = _env(terrain="flat", spawn_mobs=False)
        _, info = env.reset(seed=0, options={"scene": _scene(*edits)})
        return env, info

    def trunk(dz: int) -> dict:
        return {"op": "fill", "from": ["~", "~", f"~{dz}"], "to": ["~", "~2", f"~{dz}"], "block": "oak_log"}

    env, info = reset(trunk(-4))  # behind (the player faces +z)
    oracle, seeing = ChopperExpert(0), ChopperExpert(0, sight="visible")
    oracle.act(env, info)
    seeing.act(env, info)
    assert oracle.target is not None and oracle.target[2] < env.world.player.pos[2]
    assert seeing.target is None

    env, info = reset(trunk(4))  # ahead: seen, adopted and chopped
    expert = ChopperExpert(0, sight="visible")
    expert.act(env, info)
    assert expert.target is not None
    _, _, logs = _run(env, expert, info, 300, until_logs=1)
    assert logs, "the visible-sight expert did not chop the trunk in front of it"

    wall = {"op": "fill", "from": ["~-1", "~", "~2"], "to": ["~1", "~3", "~2"], "block": "dirt"}
    env, info = reset(trunk(4), wall)  # ahead, behind a dirt wall taller than the trunk
    seeing = ChopperExpert(0, sight="visible")
    seeing.act(env, info)
    assert seeing.target is None

    env, info = reset(trunk(4))  # adopted, then the player looks away: kept LOST_STEPS steps, then let go
    expert = ChopperExpert(0, sight="visible")
    expert.act(env, info)
    target = expert.target
    env.world.player.yaw += 180.0
    for _ in range(LOST_STEPS):
        expert.act(env, info)
    assert expert.target == target
    expert.act(env, info)
    assert expert.target is None
