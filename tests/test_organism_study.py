"""scripts/organism_study.py's glue for studying any shipped organism: the built-in specs run with `--agent` for it,
and its untrained twin (shipped, or made the way the trainer initialises a seed-0 run)."""

import pytest
import torch
from conftest import load_script

from vptlens.agents import load_policy
from vptlens.agents.loading import make_random_policy
from vptlens.agents.zoo import get_zoo_entry, shipped_files
from vptlens.interventions.experiment import RunConfig, resolve_spec

study = load_script("scripts/organism_study.py")


def _same_weights(a, b) -> None:
    for name, tensor in a.state_dict().items():
        torch.testing.assert_close(tensor, b.state_dict()[name], rtol=0, atol=0, msg=name)


def test_the_default_organism_runs_the_built_in_specs_as_they_are(tmp_path):
    assert study.agent_args(study.ORGANISM, tmp_path, "organism", "untrained") == []
    assert study.untrained_twin(study.ORGANISM, tmp_path) == "blockworld-chopper-untrained"
    assert not any(tmp_path.iterdir())  # nothing written for the default


def test_the_seed_0_convention_reproduces_the_shipped_twin():
    """An organism shipped without its twin gets make_random_policy(config, seed=0): for the organism shipped with
    one, that is exactly the shipped twin."""
    files = shipped_files(get_zoo_entry("blockworld-chopper"))
    twin = shipped_files(get_zoo_entry("blockworld-chopper-untrained"))
    made = make_random_policy(load_policy(files["model"], files["weights"]).cfg, seed=study.UNTRAINED_SEED)
    _same_weights(made, load_policy(twin["model"], twin["weights"]))


def test_another_organism_runs_the_competence_spec_beside_a_made_twin(tmp_path):
    args = study.agent_args("blockworld-chopper-64", tmp_path, "organism", "untrained")
    assert args[:2] == ["--agent", "organism=blockworld-chopper-64"]
    spec, _ = resolve_spec(RunConfig("organism_competence_forest", agent=tuple(args[1:])))
    agents = {a.name: a for a in spec.agents}
    assert agents["organism"].zoo == "blockworld-chopper-64" and agents["expert"].scripted == "chopper"
    twin = agents["untrained"]
    assert twin.zoo is None and twin.model.parent == (tmp_path / "untrained").resolve()

    organism = load_policy(*shipped_files(get_zoo_entry("blockworld-chopper-64")).values())
    untrained = load_policy(twin.model, twin.weights)
    assert untrained.cfg == organism.cfg  # the same architecture (64x64 input)
    _same_weights(untrained, make_random_policy(organism.cfg, seed=0))
    assert any(not torch.equal(t, organism.state_dict()[n]) for n, t in untrained.state_dict().items())

    policy, made = study.untrained_policy("blockworld-chopper-64", tmp_path)  # the same files, not made again
    assert made["untrained"] == str(twin.model.with_suffix("")) and len(made["weights_sha256"]) == 64
    _same_weights(policy, untrained)
    assert study.agent_args("blockworld-chopper-64", tmp_path, "organism") == [
        "--agent",
        "organism=blockworld-chopper-64",
    ]


def test_an_unknown_organism_is_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["organism_study.py", "--out", str(tmp_path / "out"), "--organism", "oak"])
    with pytest.raises(SystemExit) as exc:
        study.main()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--organism 'oak' is not a shipped organism" in err and "blockworld-chopper-64" in err
    assert not (tmp_path / "out").exists()
