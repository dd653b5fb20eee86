"""The input-blind control: an agent's recorded actions replayed whatever the env shows, and the agent's change
between scenes beyond it."""

import numpy as np
import pytest
from conftest import fixture_paths

from vptlens.interventions.analysis import analyse
from vptlens.interventions.runner import run_experiment
from vptlens.interventions.spec import SpecError, spec_from_dict
from vptlens.recordings.store import Run

MODEL, WEIGHTS = fixture_paths("vpt_tiny")
RAW = {
    "name": "blind",
    "agents": [{"name": "tiny", "model": str(MODEL), "weights": str(WEIGHTS)}, {"name": "blind", "blind": "tiny"}],
    "env": {"kind": "blockworld", "height": 32, "width": 32},
    "scenes": ["villager_in_open", "villager_under_leaves"],
    "edits": [{"name": "none", "kind": "none"}],
    "control": {"scene": "villager_in_open", "agent": "tiny"},
    "seeds": {"start": 3, "count": 2},
    "n_steps": 40,
    "n_envs": 2,
    "metrics": ["hits", "leaves_punched"],
}


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    out = tmp_path_factory.mktemp("blind") / "exp"
    spec = spec_from_dict(RAW)
    run_experiment(spec, out)
    return spec, out


def _episodes(out, spec, agent: str, scene: str) -> dict:
    (cell,) = [c for c in spec.cells() if c.levels["agent"] == agent and c.levels["scene"] == scene]
    return {e.meta.seed: e for e in Run.open(out / "cells" / cell.dir_name).episodes()}


def test_the_blind_control_replays_the_agents_actions_in_every_scene(experiment):
    spec, out = experiment
    source = _episodes(out, spec, "tiny", "villager_in_open")
    for scene in ("villager_in_open", "villager_under_leaves"):
        blind = _episodes(out, spec, "blind", scene)
        for seed, episode in blind.items():
            assert episode.meta.agent.scripted == "blind replay of tiny in villager_in_open"
            for key in ("attack", "forward", "camera"):
                assert np.array_equal(episode.minerl_action(key)[:], source[seed].minerl_action(key)[:])
            if scene == "villager_in_open":  # the same world, seed and actions: the same trajectory
                assert np.array_equal(episode.ground_truth("pose")[:], source[seed].ground_truth("pose")[:])
                assert np.array_equal(episode.frames[:], source[seed].frames[:])


def test_the_agents_change_beyond_the_blind_control_is_a_difference_of_differences(experiment):
    spec, out = experiment
    result = analyse(out)
    (row,) = [r for r in result.beyond_blind if r["metric"] == "leaves_punched"]
    assert (row["agent"], row["blind"], row["scene"], row["versus_scene"], row["n_pairs"]) == (
        "tiny", "blind", "villager_under_leaves", "villager_in_open", 2)  # fmt: skip
    values = {(c.cell.agent.name, c.cell.scene.name): c.values["leaves_punched"] for c in result.cells}
    per_seed = [
        (values["tiny", "villager_under_leaves"][s] - values["tiny", "villager_in_open"][s])
        - (values["blind", "villager_under_leaves"][s] - values["blind", "villager_in_open"][s])
        for s in (3, 4)
    ]
    assert row["effect"] == pytest.approx(np.mean(per_seed))
    assert row["agent_change"] - row["blind_change"] == pytest.approx(np.mean(per_seed))
    assert "Beyond the input-blind control" in (out / "report.html").read_text()


def test_a_blind_control_must_name_a_policy_of_the_spec():
    with pytest.raises(SpecError, match="'nobody' is not a policy agent"):
        spec_from_dict({**RAW, "agents": [RAW["agents"][0], {"name": "blind", "blind": "nobody"}]})
    with pytest.raises(SpecError, match="blind_scene 'forest' is not a scene level"):
        spec_from_dict({**RAW, "agents": [RAW["agents"][0], {"name": "b", "blind": "tiny", "blind_scene": "forest"}]})
    with pytest.raises(SpecError, match="one of them"):
        spec_from_dict({**RAW, "agents": [RAW["agents"][0], {"name": "b", "blind": "tiny", "zoo": "steve1"}]})
