"""Linear probes: episode splits, metrics against hand-computed values, labels from JSON rows, synthetic runs."""

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from vptlens.probes import labels as L
from vptlens.probes import linear, linear_stats
from vptlens.probes.linear import ProbeConfig
from vptlens.probes.report import dumps as strict_dumps
from vptlens.recordings.schema import AgentRecord, EnvRecord, EpisodeMeta, RunManifest
from vptlens.recordings.store import Run
from vptlens.recordings.writer import TEXT, ArraySpec, EpisodeWriter

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- splits


@pytest.mark.parametrize(
    "n_steps,n_folds", [([128] * 4, 5), ([50, 10, 300, 7, 90, 90, 64, 1, 200], 3), ([5, 5], 2), ([0, 3, 0, 4, 2], 2)]
)
def test_folds_never_share_an_episode(n_steps, n_folds):
    fold_of_episode = linear_stats.episode_folds(n_steps, n_folds, seed=3)
    assert fold_of_episode.shape == (len(n_steps),)
    k = min(n_folds, len(n_steps))
    assert set(fold_of_episode.tolist()) == set(range(k))  # every fold holds at least one episode
    if len(n_steps) <= n_folds:
        assert fold_of_episode.tolist() == list(range(len(n_steps)))  # leave-one-episode-out
    episode_of_step = np.repeat(np.arange(len(n_steps)), n_steps)
    splits = linear_stats.fold_indices(fold_of_episode[episode_of_step])
    tested = np.concatenate([test for _, test in splits])
    assert np.array_equal(np.sort(tested), np.arange(len(episode_of_step)))  # each step tested exactly once
    for train, test in splits:
        assert not set(episode_of_step[train]) & set(episode_of_step[test])
        assert len(train) + len(test) == len(episode_of_step)
    # greedy placement keeps the folds' step counts within one episode of each other
    totals = np.bincount(fold_of_episode, weights=n_steps, minlength=k)
    assert totals.max() - totals.min() <= max(n_steps)
    assert np.array_equal(fold_of_episode, linear_stats.episode_folds(n_steps, n_folds, seed=3))  # seeded


def test_folds_need_two_episodes():
    with pytest.raises(ValueError, match="at least 2 episodes"):
        linear_stats.episode_folds([100], 5)


# ---------------------------------------------------------------- metrics


def _auroc_pairs(y, s):
    pos, neg = s[y == 1], s[y == 0]
    return np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg)])


def test_auroc_hand_computed_with_ties():
    assert linear_stats.auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    # pairs (pos, neg): (0.5, 0.5) tie = 1/2, (0.5, 0.2) = 1, (0.9, 0.5) = 1, (0.9, 0.2) = 1 -> 3.5 / 4
    assert linear_stats.auroc(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.2, 0.9])) == 0.875
    assert linear_stats.auroc(np.array([1, 0, 1, 0, 0]), np.full(5, 0.3)) == 0.5  # all tied: chance
    assert linear_stats.auroc(np.array([1, 1, 0]), np.array([0.0, 0.1, 1.0])) == 0.0  # perfectly wrong
    assert math.isnan(linear_stats.auroc(np.array([1, 1, 1]), np.array([0.1, 0.2, 0.3])))  # one class
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.integers(0, 2, 40)
        s = rng.integers(0, 4, 40).astype(float)  # many ties
        a = linear_stats.auroc(y, s)
        assert a == pytest.approx(_auroc_pairs(y, s), abs=1e-12)
        fpr, tpr = linear_stats.roc_curve(y, s)  # the ROC curve's trapezoid area is the same number
        assert float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)) == pytest.approx(a, abs=1e-12)
        assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1


def test_binary_and_regression_metrics():
    m = linear_stats.binary_metrics(np.array([1, 0, 0, 0]), np.array([0.9, 0.6, 0.1, 0.2]))
    assert m["accuracy"] == 0.75 and m["balanced_accuracy"] == pytest.approx((1 + 2 / 3) / 2) and m["auroc"] == 1.0
    y = np.array([1.0, 2.0, 4.0, 5.0])
    assert linear_stats.regression_metrics(y, y) == {"r2": 1.0, "mse": 0.0}
    assert linear_stats.regression_metrics(y, np.full(4, 3.0)) == {"r2": 0.0, "mse": 2.5}  # predicting the mean
    assert linear_stats.regression_metrics(y, np.full(4, 4.0))["r2"] == pytest.approx(1 - 14 / 10)


def test_t_quantile_and_summary():
    for df, t in ((1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (30, 2.0423)):
        assert stats.t.ppf(0.975, df) == pytest.approx(t, abs=2e-4)  # the quantile `summarize` uses
        v = np.arange(df + 1, dtype=float)  # sd and mean known: the interval's half-width is t * sd / sqrt(n)
        half = t * v.std(ddof=1) / math.sqrt(df + 1)
        ci = linear_stats.summarize(v.tolist())["ci95"]
        assert ci == pytest.approx([v.mean() - half, v.mean() + half], abs=2e-4 * half)
    s = linear_stats.summarize([0.5, 0.7, float("nan"), 0.6])  # the NaN fold (one test class) is left out
    half = 4.3027 * 0.1 / math.sqrt(3)
    assert s["n_folds"] == 3 and s["mean"] == pytest.approx(0.6)
    assert s["ci95"] == pytest.approx([0.6 - half, 0.6 + half], abs=1e-4)


# ---------------------------------------------------------------- the probes themselves


def test_logistic_probe_reaches_the_optimum():
    """At the returned weights the gradient of the penalised objective (standardised features) vanishes."""
    rng = np.random.default_rng(1)
    X = rng.normal(2.0, 3.0, (300, 5))
    y = (X @ rng.normal(size=5) + rng.normal(0, 3, 300) > 4).astype(np.float32)
    Xt = torch.from_numpy(X.astype(np.float16))
    coef, b = linear_stats.fit_logistic(Xt, torch.from_numpy(y), 0.1, balance_classes=True)
    Xd = Xt.double()
    mu, sd = Xd.mean(0), Xd.std(0, unbiased=False)
    v = (coef * sd).clone().requires_grad_(True)  # standardised weights
    c = torch.tensor(b + float((mu * coef).sum()), dtype=torch.float64, requires_grad=True)
    yt = torch.from_numpy(y).double()
    w = torch.where(yt > 0.5, 0.5 / yt.sum(), 0.5 / (1 - yt).sum())
    s = ((Xd - mu) / sd) @ v + c
    loss = (w * torch.nn.functional.binary_cross_entropy_with_logits(s, yt, reduction="none")).sum()
    (loss + 0.05 * (v * v).sum()).backward()
    assert float(v.grad.abs().max()) < 1e-5 and abs(float(c.grad)) < 1e-5


def test_ridge_cross_validation_matches_direct_fits():
    """Moments summed over folds minus the test fold give exactly the ridge fitted on the training rows."""
    rng = np.random.default_rng(2)
    X = rng.normal(5.0, 2.0, (240, 6)).astype(np.float16)
    y = X.astype(np.float64) @ rng.normal(size=6) + rng.normal(0, 1, 240)
    folds = np.repeat(np.arange(4), 60)
    l2 = 0.3
    cv = linear_stats.cross_validate(torch.from_numpy(X), y, folds, "regression", l2)
    Xd = X.astype(np.float64)
    for f in range(4):
        tr, te = folds != f, folds == f
        mu, sd = Xd[tr].mean(0), Xd[tr].std(0)
        Z = (Xd[tr] - mu) / sd
        v = np.linalg.solve(Z.T @ Z / tr.sum() + l2 * np.eye(6), Z.T @ (y[tr] - y[tr].mean()) / tr.sum())
        pred = y[tr].mean() + ((Xd[te] - mu) / sd) @ v
        np.testing.assert_allclose(cv["oof"][te], pred, rtol=1e-9, atol=1e-9)
        assert cv["folds"][f]["r2"] == pytest.approx(linear_stats.regression_metrics(y[te], pred)["r2"])
        assert cv["baseline"]["folds"][f]["mse"] == pytest.approx(np.mean((y[te] - y[tr].mean()) ** 2))


def test_l2_is_chosen_by_inner_folds_only():
    """Each test fold's L2 is the best, by inner cross-validation over the OTHER folds, of the grid (checked against
    direct ridge fits); pure-noise features pick the strongest penalty, a clean linear signal a weak one."""
    rng = np.random.default_rng(3)
    n, d, grid = 200, 12, (1e-3, 0.1, 10.0, 1000.0)
    X = rng.normal(0.0, 1.0, (n, d))
    y = X @ rng.normal(size=d) + rng.normal(0, 3.0, n)
    folds = np.repeat(np.arange(5), 40)
    cv = linear_stats.cross_validate(torch.from_numpy(X), y, folds, "regression", grid)

    def ridge(tr, te, lam):
        mu, sd = X[tr].mean(0), X[tr].std(0)
        Z = (X[tr] - mu) / sd
        v = np.linalg.solve(Z.T @ Z / tr.sum() + lam * np.eye(d), Z.T @ (y[tr] - y[tr].mean()) / tr.sum())
        return y[tr].mean() + ((X[te] - mu) / sd) @ v

    for f in range(5):
        inner = {lam: np.mean([linear_stats.regression_metrics(y[folds == j], ridge((folds != f) & (folds != j),
                                                                                  folds == j, lam))["r2"]
                               for j in range(5) if j != f]) for lam in grid}  # fmt: skip
        got = cv["folds"][f]
        assert {float(k): v for k, v in got["inner_scores"].items()} == pytest.approx(inner, rel=1e-9)
        assert got["l2"] == max(inner, key=inner.get)
        np.testing.assert_allclose(cv["oof"][folds == f], ridge(folds != f, folds == f, got["l2"]), rtol=1e-9)
    noise = linear_stats.cross_validate(torch.from_numpy(X), rng.normal(size=n), folds, "regression", grid)
    assert all(r["l2"] >= 10.0 for r in noise["folds"])  # the strongest penalties (R^2 differences are tiny there)
    clean = linear_stats.cross_validate(torch.from_numpy(X), X @ np.arange(1.0, d + 1), folds, "regression", grid)
    assert [r["l2"] for r in clean["folds"]] == [1e-3] * 5
    probs = linear_stats.cross_validate(torch.from_numpy(X), (y > 0).astype(float), folds, "binary", grid, max_iter=50)
    assert all(r["l2"] in grid and set(r["inner_scores"]) == {str(v) for v in grid} for r in probs["folds"])
    two = linear_stats.cross_validate(torch.from_numpy(X), y, folds % 2, "regression", grid)  # no inner split possible
    assert [r["l2"] for r in two["folds"]] == [grid[2]] * 2 and "inner_scores" not in two["folds"][0]


def test_episode_identity_does_not_leak_across_episode_splits():
    """Label = a property constant within each episode, features = episode one-hot + noise.

    Split by frame, the probe memorises episodes and looks perfect; split by episode it must not.
    """
    rng = np.random.default_rng(4)
    n_episodes, n_steps = 20, 30
    episode = np.repeat(np.arange(n_episodes), n_steps)
    y = (rng.permutation(n_episodes) % 2)[episode].astype(np.float64)
    X = np.eye(n_episodes)[episode] + rng.normal(0, 0.1, (len(episode), n_episodes))
    X = torch.from_numpy(np.concatenate([X, rng.normal(size=(len(episode), 4))], 1).astype(np.float16))
    by_frame = linear_stats.cross_validate(X, y, rng.integers(0, 5, len(y)), "binary", 1e-2)
    assert by_frame["summary"]["balanced_accuracy"]["mean"] > 0.95  # the leak is real
    folds = linear_stats.episode_folds([n_steps] * n_episodes, 5, seed=0)[episode]
    by_episode = linear_stats.cross_validate(X, y, folds, "binary", 1e-2)
    assert by_episode["summary"]["balanced_accuracy"]["mean"] < 0.7
    assert by_episode["summary"]["auroc"]["mean"] < 0.75
    assert by_episode["pooled"]["auroc"] < 0.75


# ---------------------------------------------------------------- labels on hand-built rows


def _rows(*objs) -> np.ndarray:
    return np.array([json.dumps(o) for o in objs], dtype=object)


def test_labels_on_hand_built_rows():
    block = lambda name, d: {"kind": "block", "block": name, "pos": [1, 2, 3], "face": "up", "distance": d}
    villager = {"kind": "entity", "entity_id": 3, "entity_type": "villager", "profession": "farmer", "distance": 2.5}
    cow = {"kind": "entity", "entity_id": 4, "entity_type": "cow", "profession": None, "distance": 7.0}
    crosshair = _rows(block("oak_log", 3.0), block("birch_log", 1.5), block("oak_leaves", 2.0), villager, cow,
                      {"kind": "none", "distance": None}, None)  # fmt: skip
    v = lambda t, px, d: {"entity_id": 1, "entity_type": t, "box": [0, 0, 1, 1], "pixels": px, "distance": d}
    visible = _rows([v("villager", 20, 4.0), v("villager", 10, 2.0)], [], [v("cow", 50, 1.0)],
                    [v("villager", 5, 9.0), v("cow", 9, 1.0)], [], [], [])  # fmt: skip
    events = _rows([], [{"type": "entity_attacked", "entity_id": 3}], [], [{"type": "block_broken"}], [], [], [])
    attack = np.array([0, 1, 0, 0, 1, 1, 0], np.uint8)
    pose = np.zeros((7, 5), np.float32)
    pose[:, 3] = [0, 10, -20, 30, 45, np.nan, 5]
    nearest_log = np.full((7, 4), np.nan, np.float32)
    nearest_log[:3] = [[1, 2, 3, 4.5], [1, 2, 3, 0.0], [8, 2, 3, 7.25]]  # rows 3-6: no log in the world (or MineRL)
    src = L.LabelSource.from_arrays(
        ground_truth={"crosshair": crosshair, "visible_entities": visible, "events": events, "pose": pose,
                      "nearest_log": nearest_log},
        minerl={"attack": attack},
        frame_size=(10, 20),
    )  # fmt: skip
    nan = np.nan

    def check(name, values, valid):
        got, mask = L.compute_label(name, src)
        np.testing.assert_array_equal(mask, valid, err_msg=name)
        np.testing.assert_allclose(got, values, err_msg=name)

    check("crosshair_on_log", [1, 1, 0, 0, 0, 0, nan], [1, 1, 1, 1, 1, 1, 0])  # no crosshair row: undefined
    check("crosshair_on_leaves", [0, 0, 1, 0, 0, 0, nan], [1, 1, 1, 1, 1, 1, 0])
    check("crosshair_on_villager", [0, 0, 0, 1, 0, 0, nan], [1, 1, 1, 1, 1, 1, 0])
    check("crosshair_on_entity", [0, 0, 0, 1, 1, 0, nan], [1, 1, 1, 1, 1, 1, 0])
    check("crosshair_distance", [3, 1.5, 2, 2.5, 7, nan, nan], [1, 1, 1, 1, 1, 0, 0])
    check("crosshair_log_distance", [3, 1.5, nan, nan, nan, nan, nan], [1, 1, 0, 0, 0, 0, 0])
    check("villager_visible", [1, 0, 0, 1, 0, 0, 0], [1] * 7)
    check("mob_visible", [1, 0, 1, 1, 0, 0, 0], [1] * 7)
    check("n_visible_mobs", [2, 0, 1, 2, 0, 0, 0], [1] * 7)
    check("villager_screen_area", [30 / 200, 0, 0, 5 / 200, 0, 0, 0], [1] * 7)  # pixels / (10 x 20)
    check("nearest_villager_distance", [2, nan, nan, 9, nan, nan, nan], [1, 0, 0, 1, 0, 0, 0])
    check("nearest_tree_distance", [4.5, 0, 7.25, nan, nan, nan, nan], [1, 1, 1, 0, 0, 0, 0])
    check("entity_attacked", [0, 1, 0, 0, 0, 0, 0], [1] * 7)
    check("block_broken", [0, 0, 0, 1, 0, 0, 0], [1] * 7)
    # attacks at steps 1, 4, 5: steps strictly since the last one; undefined until the first has happened
    check("steps_since_attack", [nan, nan, 1, 2, 3, 1, 1], [0, 0, 1, 1, 1, 1, 1])
    check("log_steps_since_attack", [nan, nan, 0, 1, np.log2(3), 0, 0], [0, 0, 1, 1, 1, 1, 1])
    check("attacking", attack.astype(float), [1] * 7)
    check("pitch", [0, 10, -20, 30, 45, nan, 5], [1, 1, 1, 1, 1, 0, 1])  # a NaN pose is masked


def test_steps_since_caps_and_label_errors():
    flags = np.zeros(300, bool)
    flags[0] = True
    k = L.steps_since(flags)
    assert np.isnan(k[0]) and k[1] == 1 and k[299] == 299
    got, _ = L.compute_label("steps_since_attack", L.LabelSource.from_arrays(minerl={"attack": flags.astype(np.uint8)}))
    assert got[299] == L.ATTACK_CAP_STEPS
    with pytest.raises(KeyError, match="known labels: .*crosshair_on_log"):
        L.get_label("crosshair_on_tree")
    with pytest.raises(KeyError, match="known labels"):
        ProbeConfig(Path("run"), labels=("nope",))
    no_size = L.LabelSource.from_arrays(ground_truth={"visible_entities": _rows([])})
    with pytest.raises(ValueError, match="env.settings.height/width"):
        L.compute_label("villager_screen_area", no_size)
    with pytest.raises(KeyError, match="gt/pose"):
        L.compute_label("pitch", no_size)


# ---------------------------------------------------------------- whole runs


def _fake_run(path: Path, n_episodes: int = 6, n_steps: int = 96, d: int = 16, seed: int = 0) -> np.ndarray:
    """A run in the store's layout whose `value` is linear in `activations/fake.hook_out` and whose `attack`
    is its sign; `forward` and the pitch are independent noise; `img.hook_out` is noise too."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)
    specs = {
        "activations/fake.hook_out": ArraySpec((d,), "float16"),
        "activations/img.hook_out": ArraySpec((8,), "float16"),
        "value": ArraySpec((), "float32"),
        "action/minerl/attack": ArraySpec((), "uint8"),
        "action/minerl/forward": ArraySpec((), "uint8"),
        "gt/pose": ArraySpec((5,), "float32"),
        "gt/crosshair": ArraySpec((), TEXT),
    }
    manifest = RunManifest({}, AgentRecord(), "0.1.0", None, "2026-01-01T00:00:00+00:00")
    path.mkdir(parents=True)
    for e in range(n_episodes):
        env = EnvRecord("handmade", {"height": 64, "width": 64})
        hooks = ("img.hook_out", "fake.hook_out")
        attrs = EpisodeMeta(e, e, AgentRecord(), {}, env, {}, None, {}, hooks, "0.1.0", None, "sample").to_dict()
        with EpisodeWriter(path / f"episode_{e:06d}.zarr", specs, attrs) as writer:
            for _ in range(n_steps):
                x = rng.normal(size=d).astype(np.float16)
                proj = float(x.astype(np.float64) @ w)
                writer.append({
                    "activations/fake.hook_out": x, "activations/img.hook_out": rng.normal(size=8).astype(np.float16),
                    "value": np.float32(proj), "action/minerl/attack": np.uint8(proj > 0.5),
                    "action/minerl/forward": np.uint8(rng.random() < 0.5),
                    "gt/pose": np.array([0, 0, 0, rng.normal(0, 30), 0], np.float32),
                    "gt/crosshair": json.dumps({"kind": "none", "distance": None}),
                })  # fmt: skip
            writer.close("complete")
        manifest = manifest.with_episode(e, path=f"episode_{e:06d}.zarr", seed=e, status="complete", length=n_steps)
    manifest.dump(path)
    return w


def test_probes_recover_linear_labels_and_not_noise(tmp_path):
    _fake_run(tmp_path / "run")
    labels = ("value", "attacking", "moving_forward", "pitch", "crosshair_on_log", "nearest_tree_distance")
    report = linear.main(ProbeConfig(run=tmp_path / "run", out=tmp_path / "out", labels=labels,
                                     hooks=("fake.*",), n_folds=3, l2=(1e-3,)))  # fmt: skip
    res = report["labels"]
    assert report["split"]["scheme"] == "group k-fold by episode" and report["split"]["n_folds"] == 3
    assert report["skipped_labels"] == {
        "crosshair_on_log": "one class only (0) over its 576 steps",
        "nearest_tree_distance": "not recorded in this run (no array gt/nearest_log; record again with a current "
        "vpt-lens)",
    }
    assert report["features"] == ["fake.hook_out", "img.hook_out"]  # the CNN baseline joins the probed hooks
    fake = lambda label, m: res[label]["probes"]["fake.hook_out"]["summary"][m]
    cnn = lambda label, m: res[label]["probes"]["img.hook_out"]["summary"][m]
    assert fake("value", "r2")["mean"] > 0.999  # float16 rounding of x is the only noise
    assert fake("attacking", "accuracy")["mean"] > 0.95 and fake("attacking", "auroc")["mean"] > 0.99
    assert abs(fake("moving_forward", "auroc")["mean"] - 0.5) < 0.1
    assert abs(fake("moving_forward", "balanced_accuracy")["mean"] - 0.5) < 0.1
    assert fake("pitch", "r2")["mean"] < 0.03 and cnn("value", "r2")["mean"] < 0.05
    assert res["attacking"]["baseline"]["summary"]["auroc"]["mean"] == 0.5  # a constant score ties everything
    assert res["value"]["baseline"]["summary"]["r2"]["mean"] <= 0
    assert res["value"]["best_hook"] == "fake.hook_out" and res["value"]["cnn_baseline"] == "img.hook_out"
    for label in labels[:-2]:
        for png in res[label]["plots"]:
            assert (tmp_path / "out" / png).read_bytes()[:8] == PNG_MAGIC
    cfg = ProbeConfig(run=tmp_path / "run", out=tmp_path / "small", labels=("value",), hooks=("fake.hook_out",),
                      n_folds=3, max_steps=300, baseline_hook=None)  # fmt: skip
    small = linear.main(cfg)
    assert small["n_steps_used"] == 300 == sum(e["n_used"] for e in small["split"]["episodes"])
    assert small["features"] == ["fake.hook_out"] and small["labels"]["value"]["cnn_baseline"] is None
    assert sum(f["n_test"] for f in small["labels"]["value"]["probes"]["fake.hook_out"]["folds"]) == 300


def test_main_on_tiny_run(tiny_run, tmp_path):
    out = tmp_path / "probe"
    labels = ("villager_visible", "pitch", "crosshair_on_log", "nearest_tree_distance")
    cfg = ProbeConfig(run=tiny_run, out=out, labels=labels, hooks=("blocks.*.hook_resid_post", "attention/L1"))
    report = linear.main(cfg)
    on_disk = json.loads((out / "probe.json").read_text())
    on_log = np.concatenate([L.compute_label("crosshair_on_log", ep)[0] for ep in Run(tiny_run).episodes()])
    one_class = len(np.unique(on_log[np.isfinite(on_log)])) == 1  # whether the agent ever looked at a trunk
    expected = {"villager_visible", "pitch", "nearest_tree_distance"} | (set() if one_class else {"crosshair_on_log"})
    assert on_disk["labels"].keys() == report["labels"].keys() == expected
    assert ("one class" in on_disk["skipped_labels"].get("crosshair_on_log", "")) == one_class
    assert on_disk["run_path"] == str(Path(tiny_run).resolve()) and on_disk["package_version"]
    assert on_disk["config"]["hooks"] == ["blocks.*.hook_resid_post", "attention/L1"]
    split = on_disk["split"]
    assert split["scheme"] == "leave-one-episode-out" and [e["fold"] for e in split["episodes"]] == [0, 1, 2, 3]
    for res in on_disk["labels"].values():
        assert res["hooks"] == ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post", "attention/L1"]
        assert res["cnn_baseline"] == "img.hook_out" and "img.hook_out" in res["probes"]
        assert res["probes"]["attention/L1"]["n_features"] == 4 * 33
        for probe in res["probes"].values():
            # each test fold is exactly one episode's labelled steps: the split is by episode
            assert [f["n_test"] for f in probe["folds"]] == [128] * 4
            assert all(f["n_train"] == 3 * 128 for f in probe["folds"])
        for png in res["plots"]:
            assert (out / png).read_bytes()[:8] == PNG_MAGIC
    plots = {"villager_visible_metrics.png", "villager_visible_roc.png", "pitch_metrics.png", "pitch_scatter.png",
             "nearest_tree_distance_metrics.png", "nearest_tree_distance_scatter.png"}  # fmt: skip
    if not one_class:
        plots |= {"crosshair_on_log_metrics.png", "crosshair_on_log_roc.png"}
    assert {p for r in on_disk["labels"].values() for p in r["plots"]} == plots
    # each (label, activation hook) leaves a unit steering direction that an intervention can use
    from vptlens.agents import load_policy
    from vptlens.interventions.edits import Steering

    for label in expected:
        probes = on_disk["labels"][label]["probes"]
        assert "direction_file" not in probes["attention/L1"]
        for hook in ("blocks.0.hook_resid_post", "blocks.1.hook_resid_post"):
            v = np.load(out / probes[hook]["direction_file"])
            assert v.shape == (64,) and abs(float(np.linalg.norm(v)) - 1) < 1e-5
    pitch = out / on_disk["labels"]["pitch"]["probes"]["blocks.1.hook_resid_post"]["direction_file"]
    policy = load_policy(*(Path(tiny_run) / on_disk["run"]["agent"][k] for k in ("model_path", "weights_path")))
    assert Steering("blocks.1.hook_resid_post", 2.0, vector_path=pitch).validate(policy) == []
    one_episode = linear._check_label(L.get_label("attacking"), np.array([0, 1, 0, 0, 0.0]), np.ones(5, bool),
                                      np.array([0, 0, 0, 1, 1]))  # fmt: skip
    assert one_episode.startswith("class 1 occurs in 1 episode only")
    with pytest.raises(KeyError, match="matches nothing"):
        linear.main(ProbeConfig(run=tiny_run, out=tmp_path / "x", labels=("pitch",), hooks=("blocks.7.*",)))
    with pytest.raises(ValueError, match="at least 2"):
        linear.main(ProbeConfig(run=sorted(Path(tiny_run).glob("episode_*.zarr"))[0], out=tmp_path / "y"))


# ---------------------------------------------------------------- statistics by library, strict JSON, bad input


def no_nan(name: str):
    raise AssertionError(f"{name} in a strict JSON document")


def test_sklearn_auroc_equals_the_hand_value_and_one_class_is_null():
    # pairs (pos, neg): (0.35, 0.1) 1, (0.35, 0.4) 0, (0.8, 0.1) 1, (0.8, 0.4) 1 -> 3 / 4
    assert linear_stats.auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert math.isnan(linear_stats.auroc(np.array([0, 0]), np.array([0.1, 0.4])))
    rows = linear._one_class_nulls([{"fold": 0, "auroc": float("nan")}, {"fold": 1, "auroc": 0.5}])
    doc = json.loads(strict_dumps({"folds": rows}), parse_constant=no_nan)
    assert doc["folds"][0]["auroc"] is None and doc["folds"][1]["auroc"] == 0.5
    assert doc["null_reasons"] == {"/folds/0/auroc": "only one class in the fold"}


def test_list_labels_prints_every_label(capsys):
    from vptlens.cli import entrypoint

    entrypoint(["probe", "--list-labels"])  # no run needed, exits normally
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(L.LABELS)
    for name, label in L.LABELS.items():
        assert any(line.split()[:2] == [name, label.kind] and label.description in line for line in lines), name
    with pytest.raises(ValueError, match="--list-labels"):
        ProbeConfig()  # neither a run nor --list-labels


def test_bad_input_fails_before_anything_is_written(tmp_path, capsys):
    from vptlens.cli import entrypoint

    _fake_run(tmp_path / "run", n_episodes=3, n_steps=16)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:  # unknown label: one line, exit 2, nothing written
        entrypoint(["probe", str(tmp_path / "run"), "--out", str(out), "--labels", "value", "nope"])
    assert exit_info.value.code == 2 and not out.exists()
    assert "unknown label 'nope'; known labels: " in capsys.readouterr().err
    with pytest.raises(KeyError, match=r"'nothing\.\*' matches nothing recorded .*fake\.hook_out"):
        linear.main(ProbeConfig(run=tmp_path / "run", out=out, labels=("value",), hooks=("nothing.*",)))
    assert not out.exists()
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="--overwrite"):
        linear.main(ProbeConfig(run=tmp_path / "run", out=out, labels=("value",), hooks=("fake.*",)))
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    cfg = ProbeConfig(run=tmp_path / "run", out=out, labels=("value", "attacking"), hooks=("fake.*",), overwrite=True,
                      l2=(1.0,), max_iter=20)  # fmt: skip
    linear.main(cfg)
    doc = json.loads((out / "probe.json").read_text(), parse_constant=no_nan)  # strict JSON
    assert not (out / "notes.txt").exists() and doc["labels"]["value"]["arrays"] == ["value"]
    assert doc["labels"]["attacking"]["arrays"] == ["action/minerl/attack"]
    assert doc["run"]["path"] == str((tmp_path / "run").resolve()) and doc["run_path"] == doc["run"]["path"]


def test_features_are_parsed_in_one_place():
    assert linear.parse_feature("attention/L12") == ("attention", 12)
    assert linear.parse_feature("blocks.3.hook_resid_post") == ("activation", "blocks.3.hook_resid_post")
    assert linear.parse_feature(linear.attention_feature(3)) == ("attention", 3)
