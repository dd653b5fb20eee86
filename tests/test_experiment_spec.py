"""Experiment specs: parsed, validated with every problem at once, the grid of cells and their controls."""

import json
from pathlib import Path

import pytest
from conftest import fixture_paths

from vptlens.cli import entrypoint
from vptlens.interventions.experiment import RunConfig, resolve_spec
from vptlens.interventions.spec import SpecError, list_builtin_specs, load_spec, spec_from_dict

MODEL, WEIGHTS = fixture_paths("vpt_tiny")
ROOT = Path(__file__).resolve().parents[1]


def _spec(**changes) -> dict:
    spec = {
        "name": "tiny",
        "agents": [{"name": "tiny", "model": str(MODEL), "weights": str(WEIGHTS)}],
        "env": {"kind": "blockworld", "height": 32, "width": 32},
        "scenes": ["villager_in_open", "villager_under_leaves"],
        "edits": [{"name": "none", "kind": "none"}, {"name": "ablate", "kind": "head_ablation", "heads": ["1.*"]}],
        "control": {"scene": "villager_in_open"},
        "seeds": {"start": 3, "count": 2},
        "n_steps": 10,
        "metrics": ["target_hit", "hits"],
    }
    return {**spec, **changes}


def test_a_spec_gives_the_factorial_grid_and_each_cells_control():
    spec = spec_from_dict(_spec())
    cells = spec.cells()
    assert [c.levels for c in cells] == [
        {"agent": "tiny", "scene": s, "edit": e}
        for s in ("villager_in_open", "villager_under_leaves")
        for e in ("none", "ablate")
    ]
    assert spec.seeds == [3, 4] and spec.env.height == 32 and spec.n_steps == 10
    under_ablated = cells[3]
    assert spec.control_of(under_ablated, "scene").levels == {**under_ablated.levels, "scene": "villager_in_open"}
    assert spec.control_of(under_ablated, "edit").levels == {**under_ablated.levels, "edit": "none"}
    assert spec.control_of(cells[0], "scene") is None  # it is the control


def test_every_problem_is_reported_at_once_with_its_fix(tmp_path):
    bad = _spec(
        agents=[{"name": "a", "model": str(tmp_path / "missing.model"), "weights": str(WEIGHTS), "colour": "red"}],
        env={"kind": "blockworld", "heigth": 32},
        scenes=["villager_in_open", "villager_under_leave"],
        edits=[{"kind": "head_ablaton"}],
        seeds={"start": 0, "count": 0},
        metrics=["target_hits"],
        control={"scene": "nowhere"},
        n_step=5,
    )
    with pytest.raises(SpecError) as err:
        spec_from_dict(bad)
    message, problems = str(err.value), err.value.problems
    assert len(problems) >= 8 and "\n" not in message
    for expected in (
        "unknown key 'n_step'; did you mean 'n_steps'",
        "agents[0]: unknown key 'colour'",
        "missing.model",
        "env.heigth: unknown blockworld setting; did you mean 'height'",
        "did you mean 'villager_under_leaves'",
        "head_ablaton",
        "seeds.count: 0",
        "unknown metric 'target_hits'; did you mean 'target_hit'",
        "control.scene: 'nowhere' is not a level",
    ):
        assert expected in message, expected


def test_scene_templates_fill_their_variables_and_name_undefined_ones(tmp_path):
    probe = (ROOT / "envs" / "scene_library" / "villager_under_leaves.yaml").read_text()
    (tmp_path / "probe.yaml.tmpl").write_text(probe.replace("profession: farmer", "profession: ${profession}"))
    librarian = {"template": "probe.yaml.tmpl", "vars": {"profession": "librarian"}}
    level = spec_from_dict(_spec(scenes=["villager_in_open", librarian]), tmp_path).scenes[1]
    assert level.name == "profession-librarian" and level.resolve().edits[-1].profession == "librarian"
    with pytest.raises(SpecError, match=r"undefined variable\(s\) \['profession'\]"):
        spec_from_dict(_spec(scenes=[{"template": "probe.yaml.tmpl", "vars": {"colour": "x"}}], control={}), tmp_path)
    wizard = {"template": "probe.yaml.tmpl", "vars": {"profession": "wizard"}}
    with pytest.raises(SpecError, match="unknown profession 'wizard'"):
        spec_from_dict(_spec(scenes=[wizard], control={}), tmp_path)


def test_spec_files_and_the_builtin_study(tmp_path):
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(_spec()))
    assert load_spec(path).name == "tiny"
    assert "villager_study" in list_builtin_specs()
    study = load_spec("villager_study")
    assert [s.name for s in study.scenes][:2] == ["villager_in_open", "villager_under_leaves"]
    assert study.control_level("scene") == "villager_in_open" and len(study.scenes) == 6
    with pytest.raises(FileNotFoundError, match="built-in specs load by name: .*villager_study"):
        load_spec(tmp_path / "nope.yaml")
    for name in list_builtin_specs():  # each built-in spec is valid as shipped
        assert load_spec(name).name == name
    assert load_spec("organism_competence_forest").env.terrain == "forest"


def test_a_sweep_expands_into_one_level_per_strength(tmp_path):
    import numpy as np

    np.save(tmp_path / "v.npy", np.ones(64, np.float32))
    steer = {"name": "steer", "kind": "steering", "hook": "blocks.1.hook_resid_post", "vector_path": "v.npy",
             "strength": 1.0, "sweep": {"strength": [0, 0.5, 2]}}  # fmt: skip
    spec = spec_from_dict(_spec(edits=[steer], control={}), tmp_path)
    assert [e.name for e in spec.edits] == ["steer@strength=0", "steer@strength=0.5", "steer@strength=2"]
    assert [e.make().strength for e in spec.edits] == [0, 0.5, 2]
    assert {e.sweep for e in spec.edits} == {"steer"} and spec.edits[1].sweep_value == 0.5
    assert spec.edits[0].make().vector_path == tmp_path / "v.npy"  # relative to the spec file
    with pytest.raises(SpecError, match="sweep: give one field and its numbers"):
        spec_from_dict(_spec(edits=[{**steer, "sweep": {"strength": "big"}}], control={}), tmp_path)


def test_agents_networks_are_replaced_by_name_and_their_blind_control_stays(tmp_path):
    cfg = RunConfig("organism_villager_study", agent=("organism=blockworld-chopper-64",))
    spec, _ = resolve_spec(cfg)
    agents = {a.name: a for a in spec.agents}
    assert agents["organism"].zoo == "blockworld-chopper-64" and agents["organism"].model is None
    assert agents["blind"].blind == "organism"
    assert spec.raw["scenes"] == load_spec("organism_villager_study").raw["scenes"]

    stem = MODEL.with_suffix("")  # a checkpoint's STEM.model + STEM.weights
    spec, _ = resolve_spec(RunConfig("organism_competence", agent=(f"organism={stem}", f"untrained={MODEL}")))
    agents = {a.name: a for a in spec.agents}
    for name in ("organism", "untrained"):
        assert (agents[name].model, agents[name].weights, agents[name].zoo) == (MODEL, WEIGHTS, None)
    assert agents["expert"].scripted == "chopper"


@pytest.mark.parametrize(
    ("agent", "message"),
    [
        (
            "oak=blockworld-chopper-64",
            "--agent oak: no such agent in organism_villager_study (its agents: organism, blind)",
        ),
        ("blind=blockworld-chopper-64", "--agent blind: a scripted agent or a blind control has no network"),
        ("organism=no/such/stem", "--agent organism=no/such/stem: neither a zoo name"),
    ],
)
def test_a_wrong_agent_replacement_is_one_line_before_anything_is_written(tmp_path, capsys, agent, message):
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as exc:
        entrypoint(["experiment", "run", "organism_villager_study", "--agent", agent, "--out", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vptlens: error:") and message in err and "\n" not in err
    assert not out.exists()


def test_an_agent_replacement_needs_a_name_and_a_network():
    with pytest.raises(ValueError, match="give NAME=ZOO or NAME=STEM"):
        RunConfig("organism_villager_study", agent=("organism",))
    with pytest.raises(ValueError, match="not both"):
        RunConfig("organism_villager_study", model=MODEL, weights=WEIGHTS, agent=("organism=blockworld-chopper-64",))
