"""scripts/planted_study.py's glue: the planted contrast between two organisms, seed by seed, and its specs."""

import numpy as np
import pandas as pd
import pytest
from conftest import load_script

from vptlens.interventions.spec import spec_from_dict

planted = load_script("scripts/planted_study.py")


def _results(tmp_path, name, hits: dict[str, list[int]]):
    """A results.csv in an experiment's layout: the organism's hits per seed in each scene, seeds given backwards."""
    rows = [
        {"agent": "organism", "scene": scene, "edit": "none", "seed": seed, "metric": "hits", "value": value}
        for scene, values in hits.items()
        for seed, value in reversed(list(enumerate(values)))
    ]
    rows.append({"agent": "blind", "scene": planted.CLERIC, "edit": "none", "seed": 0, "metric": "hits", "value": 99})
    (tmp_path / name).mkdir()
    pd.DataFrame(rows).to_csv(tmp_path / name / "results.csv", index=False)
    return tmp_path / name / "results.json"


def test_the_planted_contrast_is_cleric_minus_farmer_per_seed_then_planted_minus_sibling(tmp_path):
    a = _results(tmp_path, "planted", {planted.CLERIC: [5, 3, 4, 6], planted.FARMER: [1, 1, 0, 2]})
    b = _results(tmp_path, "sibling", {planted.CLERIC: [1, 2, 0, 1], planted.FARMER: [1, 1, 1, 0]})
    np.testing.assert_array_equal(planted.per_seed(a, "hits", agent="organism", scene=planted.CLERIC), [5, 3, 4, 6])
    found = planted.planted_contrast(a, b, "hits")
    # per seed: planted 4, 2, 4, 4 (mean 3.5); sibling 0, 1, -1, 1 (mean 0.25); their differences 4, 1, 5, 3
    assert found["planted_contrast_mean"] == pytest.approx(3.5)
    assert found["sibling_contrast_mean"] == pytest.approx(0.25)
    assert found["difference"]["mean"] == pytest.approx(3.25) and found["difference"]["n_pairs"] == 4
    assert found["difference"]["low"] <= 3.25 <= found["difference"]["high"]
    assert found["wilcoxon_p"] == pytest.approx(0.125)  # 4 positive differences, exact two-sided: 2 / 2**4


def test_the_competence_specs_differ_only_in_the_trunks():
    class Args:
        competence_seeds, competence_steps = 30, 600

    bark, cleric = (spec_from_dict(planted.competence_spec(t, Args)) for t in ("bark", "cleric"))
    assert (bark.env.trunks, cleric.env.trunks) == ("bark", "cleric")
    assert bark.env.terrain == cleric.env.terrain == "forest"
    assert [a.zoo for a in bark.agents] == [planted.PLANTED, planted.SIBLING] == [a.zoo for a in cleric.agents]
