"""scripts/organism_study.py's glue for studying any shipped organism: the built-in specs rewritten for it and its
untrained twin (shipped, or made the way the trainer initialises a seed-0 run)."""

from pathlib import Path

import pytest
import torch
import yaml
from conftest import load_script

from vptlens.agents import load_policy
from vptlens.agents.loading import make_random_policy
from vptlens.agents.zoo import get_zoo_entry, shipped_files
from vptlens.interventions.spec import load_spec

study = load_script("scripts/organism_study.py")


def test_the_default_organism_runs_the_built_in_specs_by_name(tmp_path):
    assert study.organism_spec("organism_villager_study", study.ORGANISM, tmp_path) == "organism_villager_study"
    assert study.untrained_twin(study.ORGANISM, tmp_path) == {"zoo": "blockworld-chopper-untrained"}
    assert not any(tmp_path.iterdir())  # nothing written for the default


def test_the_seed_0_convention_reproduces_the_shipped_twin():
    """An organism shipped without its twin gets make_random_policy(config, seed=0): for the organism shipped with
    one, that is exactly the shipped twin."""
    files = shipped_files(get_zoo_entry("blockworld-chopper"))
    twin = shipped_files(get_zoo_entry("blockworld-chopper-untrained"))
    made = make_random_policy(load_policy(files["model"], files["weights"]).cfg, seed=study.UNTRAINED_SEED)
    shipped = load_policy(twin["model"], twin["weights"])
    for name, tensor in shipped.state_dict().items():
        torch.testing.assert_close(made.state_dict()[name], tensor, rtol=0, atol=0, msg=name)


def test_another_organism_gets_rewritten_specs_and_a_made_twin(tmp_path):
    path = study.organism_spec("organism_competence", "blockworld-chopper-64", tmp_path)
    spec = load_spec(path)  # validates
    agents = {a.name: a for a in spec.agents}
    assert agents["organism"].zoo == "blockworld-chopper-64"
    assert agents["expert"].scripted == "chopper"
    twin = agents["untrained"]
    assert twin.zoo is None and twin.model.is_file() and twin.weights.is_file()
    assert "blockworld-chopper-64" in spec.raw["description"]

    organism = load_policy(*shipped_files(get_zoo_entry("blockworld-chopper-64")).values())
    untrained = load_policy(twin.model, twin.weights)
    assert untrained.cfg == organism.cfg  # the same architecture (64x64 input)
    expected = make_random_policy(organism.cfg, seed=0)
    for name, tensor in untrained.state_dict().items():
        torch.testing.assert_close(tensor, expected.state_dict()[name], rtol=0, atol=0, msg=name)
    assert any(not torch.equal(t, organism.state_dict()[n]) for n, t in untrained.state_dict().items())

    villagers = yaml.safe_load(
        Path(study.organism_spec("organism_villager_study", "blockworld-chopper-64", tmp_path)).read_text()
    )
    assert villagers["agents"] == [
        {"name": "organism", "zoo": "blockworld-chopper-64"},
        {"name": "blind", "blind": "organism"},
    ]
    policy, twin_info = study.untrained_policy("blockworld-chopper-64", tmp_path)
    assert twin_info["model"] == str(twin.model) and len(twin_info["weights_sha256"]) == 64


def test_an_unknown_organism_is_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["organism_study.py", "--out", str(tmp_path / "out"), "--organism", "oak"])
    with pytest.raises(SystemExit) as exc:
        study.main()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--organism 'oak' is not a shipped organism" in err and "blockworld-chopper-64" in err
    assert not (tmp_path / "out").exists()
