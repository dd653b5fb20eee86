"""Running an experiment: every cell a normal recording, edits that provably act, the same outcomes whatever the
number of workers, and a killed experiment that resumes to the same outcomes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import fixture_paths

from vptlens.interventions.runner import run_experiment
from vptlens.interventions.spec import SpecError, spec_from_dict
from vptlens.recordings.store import Run

MODEL, WEIGHTS = fixture_paths("vpt_tiny")


def _raw(**changes) -> dict:
    raw = {
        "name": "tiny",
        "agents": [{"name": "tiny", "model": str(MODEL), "weights": str(WEIGHTS)}],
        "env": {"kind": "blockworld", "height": 32, "width": 32},
        "scenes": ["villager_in_open", "villager_under_leaves"],
        "edits": [
            {"name": "none", "kind": "none"},
            {"name": "ablate_all", "kind": "head_ablation", "heads": ["0.*", "1.*"], "mode": "zero"},
        ],
        "control": {"scene": "villager_in_open", "edit": "none"},
        "seeds": {"start": 7, "count": 2},
        "n_steps": 24,
        "n_envs": 2,
        "metrics": ["target_hit", "hits", "steps_to_first_hit"],
    }
    return {**raw, **changes}


def _actions(out: Path) -> dict[tuple[int, int], np.ndarray]:
    """Each cell's episodes' button classes, by (cell, seed)."""
    actions = {}
    for cell in sorted((out / "cells").iterdir()):
        for episode in Run.open(cell).episodes():
            actions[(int(cell.name[-3:]), episode.meta.seed)] = np.asarray(episode.action("buttons")[:])
    return actions


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "tiny"
    runs = run_experiment(spec_from_dict(_raw()), out)
    return out, runs


def test_every_cell_is_a_normal_recording_with_the_same_seeds(experiment):
    out, runs = experiment
    assert [r.index for r in runs] == [0, 1, 2, 3] and all(r.complete == 2 for r in runs)
    for cell in range(4):
        episodes = Run.open(out / "cells" / f"cell_{cell:03d}").episodes()
        assert [e.meta.seed for e in episodes] == [7, 8]
        intervention = episodes[0].meta.intervention
        assert (intervention is None) == (cell % 2 == 0)
        if intervention is not None:
            assert intervention["kind"] == "head_ablation"
    assert (out / "experiment.json").is_file() and (out / "scenes" / "villager_under_leaves.yaml").is_file()


def test_ablating_every_head_changes_the_actions(experiment):
    out, _ = experiment
    actions = _actions(out)
    changed = [not np.array_equal(actions[(0, s)], actions[(1, s)]) for s in (7, 8)]
    assert all(changed)  # the same seeds, the same scene: only the edit differs


def test_two_workers_give_the_outcomes_of_one(experiment, tmp_path):
    out, _ = experiment
    two = tmp_path / "two"
    run_experiment(spec_from_dict(_raw()), two, workers=2)
    one_actions, two_actions = _actions(out), _actions(two)
    assert one_actions.keys() == two_actions.keys()
    for key in one_actions:
        np.testing.assert_array_equal(one_actions[key], two_actions[key])


def test_an_edit_the_agent_cannot_take_is_refused_before_anything_is_written(tmp_path):
    raw = _raw(edits=[{"name": "bad", "kind": "head_ablation", "heads": ["9.1", "0.7"]}], control={})
    with pytest.raises(SpecError, match="edit bad on agent tiny") as err:
        run_experiment(spec_from_dict(raw), tmp_path / "never")
    assert not (tmp_path / "never").exists()
    assert "9" in str(err.value) and "7" in str(err.value)  # both problems, at once


def test_a_killed_experiment_resumes_to_the_same_outcomes(experiment, tmp_path):
    out, _ = experiment
    killed = tmp_path / "killed"
    script = (
        "import json, sys; from pathlib import Path; "
        "from vptlens.interventions.runner import run_experiment; "
        "from vptlens.interventions.spec import spec_from_dict; "
        f"run_experiment(spec_from_dict(json.loads(sys.argv[1])), Path({str(killed)!r}))"
    )
    import json

    proc = subprocess.Popen([sys.executable, "-c", script, json.dumps(_raw())], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 300
    while not (killed / "cells" / "cell_001" / "run.json").exists():  # the second cell has started
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    run_experiment(spec_from_dict(_raw()), killed)
    expected, resumed = _actions(out), _actions(killed)
    assert expected.keys() == resumed.keys()
    for key in expected:
        np.testing.assert_array_equal(expected[key], resumed[key])


def test_the_analysis_writes_tidy_results_statistics_and_a_report(experiment):
    import csv
    import json

    from vptlens.interventions import analyse

    out, _ = experiment
    result = analyse(out)
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 4 * 2 * 3  # cells x seeds x metrics, one row each
    assert {r["metric"] for r in rows} == {"target_hit", "hits", "steps_to_first_hit"}
    assert {r["seed"] for r in rows} == {"7", "8"}
    text = (out / "results.json").read_text()
    saved = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in strict JSON"))
    # every cell against its control: scene (2 cells differ) and edit (2 cells differ), 3 metrics each
    assert len(saved["comparisons"]) == (2 + 2) * 3
    comparison = next(c for c in result.comparisons if c["metric"] == "target_hit" and c["factor"] == "edit")
    assert comparison["n_pairs"] == 2 and comparison["control"] == "none" and comparison["treatment"] == "ablate_all"
    assert "p_holm" in comparison
    html = (out / "report.html").read_text()
    assert "Against the control" in html and "vptlens replay cells/cell_000/episode_000000.zarr" in html
    assert (out / "img" / "forest.png").is_file() and (out / "img" / "km_steps_to_first_hit.png").is_file()


def test_a_ray_run_gives_the_outcomes_of_a_local_one(experiment, tmp_path):
    """Cells as Ray tasks on a local 2-CPU cluster (skipped where Ray is not installed: pip install 'vpt-lens[ray]')."""
    ray = pytest.importorskip("ray")
    out, _ = experiment
    try:
        run_experiment(spec_from_dict(_raw()), tmp_path / "ray", workers=2, use_ray=True)
    finally:
        ray.shutdown()
    local, remote = _actions(out), _actions(tmp_path / "ray")
    assert local.keys() == remote.keys()
    for key in local:
        np.testing.assert_array_equal(local[key], remote[key])


def test_a_strength_sweep_gives_a_dose_response(tmp_path):
    from vptlens.interventions import analyse

    np.save(tmp_path / "v.npy", np.random.default_rng(0).standard_normal(64).astype(np.float32))
    steer = {"name": "steer", "kind": "steering", "hook": "blocks.1.hook_resid_post", "vector_path": "v.npy",
             "strength": 0.0, "sweep": {"strength": [0, 5, 50]}}  # fmt: skip
    raw = _raw(scenes=["villager_under_leaves"], edits=[steer], control={}, n_steps=12, seeds={"start": 0, "count": 3},
               metrics=["hits", "crosshair_on_target_steps"])  # fmt: skip
    run_experiment(spec_from_dict(raw, tmp_path), tmp_path / "sweep")
    result = analyse(tmp_path / "sweep")
    (entry, _) = result.dose_responses
    assert entry["sweep"] == "steer" and entry["param"] == "strength" and entry["metric"] == "hits"
    assert [level.strength for level in entry["result"]["levels"]] == [0.0, 5.0, 50.0]
    assert all(level.n == 3 for level in entry["result"]["levels"])
    assert (tmp_path / "sweep" / "img" / "dose_000.png").is_file()
    assert "Dose-response" in (tmp_path / "sweep" / "report.html").read_text()


def test_open_loop_effects_replay_the_control_episodes_with_each_edit(tmp_path):
    from vptlens.interventions import analyse

    raw = _raw(scenes=["villager_under_leaves"], n_steps=12, open_loop=True, control={"edit": "none"})
    run_experiment(spec_from_dict(raw), tmp_path / "ol")
    result = analyse(tmp_path / "ol")
    (row,) = result.open_loop  # the ablation, replayed on the no-edit cell's episodes
    assert row["edit"] == "ablate_all" and row["replayed_cell"] == 0 and row["n_episodes"] == 2
    assert row["kl_buttons"]["mean"] > 0 and row["abs_d_p_attack"]["mean"] > 0
    assert "Open loop" in (tmp_path / "ol" / "report.html").read_text()
