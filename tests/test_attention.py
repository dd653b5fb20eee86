"""Attention over time: lag profiles, bands over episodes, head kinds and key frames on attention built by hand."""

import json
from pathlib import Path

import numpy as np
import pytest
import tyro
from matplotlib.image import imread

from vptlens.probes import attention as att
from vptlens.probes import attention_stats as stats
from vptlens.probes import report
from vptlens.recordings.schema import AgentRecord, EnvRecord, EpisodeMeta, RunManifest
from vptlens.recordings.writer import ArraySpec, EpisodeWriter

M = 32  # memory length: attention rows have M + 1 columns, column M is the current frame
KEY_STEP, KEY_FROM, KEY_TO = 5, 11, 25  # head 2 attends to absolute step 5 from step 11 to step 25


def stored(lag_masses: dict[int, float]) -> np.ndarray:
    """One head's attention row in the stored order (column M - k = k frames back)."""
    row = np.zeros(M + 1)
    for lag, mass in lag_masses.items():
        row[M - lag] += mass
    return row


def uniform(t: int) -> dict[int, float]:
    n = min(t, M - 1) + 1  # lag M is masked, as in VPT
    return {k: 1.0 / n for k in range(n)}


def synthetic_step(t: int) -> np.ndarray:
    """(3 heads, M + 1): a recent head, a period-4 head, a head that locks onto step KEY_STEP for a while."""
    recent = {0: 1.0}
    comb = [k for k in range(0, min(t, M - 1) + 1, 4)]
    periodic = {k: 1.0 / len(comb) for k in comb}
    if KEY_FROM <= t <= KEY_TO:
        rest = uniform(t)
        rest.pop(t - KEY_STEP)
        key = {k: 0.4 / len(rest) for k in rest} | {t - KEY_STEP: 0.6}
    else:
        key = uniform(t)
    return np.stack([stored(recent), stored(periodic), stored(key)])


def write_run(path: Path, episodes: list[np.ndarray]) -> Path:
    """A run in the PROTOCOL.md layout with attention/L0 and the arrays the key-frame context reads."""
    specs = {
        "attention/L0": ArraySpec((3, M + 1), "float16"),
        "frames": ArraySpec((16, 16, 3), "uint8"),
        "gt/events": ArraySpec((), "str"),
        "gt/crosshair": ArraySpec((), "str"),
        "action/minerl/attack": ArraySpec((), "uint8"),
        "action/minerl/forward": ArraySpec((), "uint8"),
        "action/minerl/camera": ArraySpec((2,), "float32"),
    }
    path.mkdir(parents=True)
    agent = AgentRecord(config={"attention_heads": 3})
    manifest = RunManifest({}, agent, "0.1.0", None, "2026-01-01T00:00:00+00:00")
    for i, attention_tnT in enumerate(episodes):
        name = f"episode_{i:06d}.zarr"
        attrs = episode_meta(i, agent, {"attention_heads": 3, "memory": M}).to_dict()
        with EpisodeWriter(path / name, specs, attrs=attrs) as writer:
            for t, row in enumerate(attention_tnT):
                at_key = t == KEY_STEP
                writer.append(
                    {
                        "attention/L0": row.astype(np.float16),
                        "frames": np.full((16, 16, 3), (t * 4) % 256, np.uint8),
                        "gt/events": json.dumps([{"type": "block_broken", "block": "oak_log"}] if at_key else []),
                        "gt/crosshair": json.dumps({"kind": "block", "block": "oak_log", "distance": 2.0}),
                        "action/minerl/attack": np.uint8(at_key),
                        "action/minerl/forward": np.uint8(1),
                        "action/minerl/camera": np.array([0.0, 15.0 if at_key else 0.0], np.float32),
                    }
                )
            writer.close("complete")
        manifest = manifest.with_episode(i, path=name, seed=i, status="complete", length=len(attention_tnT))
    manifest.dump(path)
    return path


def episode_meta(index: int, agent: AgentRecord, policy_config: dict, hooks: tuple[str, ...] = ()) -> EpisodeMeta:
    """The metadata the recorder writes, for a hand-built episode."""
    env = EnvRecord("handmade", {"height": 16, "width": 16})
    return EpisodeMeta(index, index, agent, policy_config, env, {}, None, {}, hooks, "0.1.0", None, "sample")


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory) -> Path:
    episode = np.stack([synthetic_step(t) for t in range(64)])
    return write_run(tmp_path_factory.mktemp("attention") / "run", [episode, episode, episode[:48]])


def test_masked_lags_normalise_by_hand():
    # 3 steps, M = 3, one head; lag 3 never exists
    rows = [{0: 1.0}, {0: 0.5, 1: 0.5}, {0: 0.25, 1: 0.25, 2: 0.5}]
    a = np.zeros((3, 1, 4), np.float16)
    for t, row in enumerate(rows):
        for lag, mass in row.items():
            a[t, 0, 3 - lag] = mass
    sums, counts, recent, n = stats.episode_sums(stats.lag_order(a), recent_lags=1)
    np.testing.assert_array_equal(counts, [3, 2, 1, 0])
    mean, lo, hi = stats.bootstrap_ratio(sums[None], counts[None, None], 100, 0.95, np.random.default_rng(0))
    np.testing.assert_allclose(mean[0, :3], [(1 + 0.5 + 0.25) / 3, (0.5 + 0.25) / 2, 0.5])
    assert np.isnan(mean[0, 3])  # no step ever had a frame 3 back
    np.testing.assert_array_equal(lo[0, :3], mean[0, :3])  # one episode: no spread
    assert n == 2 and recent[0] / n == pytest.approx((0.5 + 0.25) / 2)  # share of lag 0 over steps t >= 1


def test_mass_before_the_episode_start_is_refused():
    a = np.zeros((2, 1, 4), np.float16)
    a[:, 0, 0] = 1.0  # all mass on lag 3 at steps 0 and 1: the columns are the wrong way round
    with pytest.raises(ValueError, match="lag convention"):
        stats.episode_sums(stats.lag_order(a), recent_lags=1)


def test_bootstrap_over_episodes():
    rng = np.random.default_rng(0)
    same = np.tile([[3.0, 1.0]], (5, 1))
    mean, lo, hi = stats.bootstrap_ratio(same, np.full((5, 1), 4.0), 500, 0.95, rng)
    np.testing.assert_allclose(mean, [0.75, 0.25])
    np.testing.assert_allclose(lo, mean)  # identical episodes: a band of zero width
    np.testing.assert_allclose(hi, mean)
    num = rng.uniform(0, 1, size=(12, 3))
    mean, lo, hi = stats.bootstrap_ratio(num, np.ones((12, 1)), 500, 0.95, rng)
    np.testing.assert_allclose(mean, num.mean(0))
    assert np.all(lo < mean) and np.all(mean < hi)
    # the episodes' spread sets the width: about 2 standard errors of the mean either side
    se = num.std(0, ddof=1) / np.sqrt(12)
    assert np.all((hi - lo) > 2.5 * se) and np.all((hi - lo) < 5.5 * se)


def test_expanded_bootstrap_bands_cover_with_few_episodes():
    """Hesterberg's expanded percentiles: alpha' by hand, and the band's coverage of a known mean with 5 episodes."""
    # n = 10, 95%: z = sqrt(10 / 9) * t_9(0.975) = 1.05409 * 2.26216 = 2.38456; alpha' = 2 (1 - Phi(z)) = 0.01710
    assert stats.expanded_alpha(10, 0.95) == pytest.approx(0.01710, abs=2e-5)
    assert stats.expanded_alpha(10_000, 0.95) == pytest.approx(0.05, abs=1e-3)  # tends to the plain band
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(400):
        num = rng.normal(1.0, 1.0, size=(5, 1))  # 5 episodes, true mean 1
        _, lo, hi = stats.bootstrap_ratio(num, np.ones((5, 1)), 400, 0.95, rng)
        covered += bool(lo[0] <= 1.0 <= hi[0])
    assert covered / 400 >= 0.89  # 0.905 with this seed; the plain percentile band covers 0.82 here


def test_periodic_profile_found_and_decay_is_not_periodic():
    comb = np.where(np.arange(M + 1) % 4 == 0, 0.1, 0.0)
    comb[M] = 0.0
    assert stats.profile_period(comb, None)[0] == 4
    assert stats.profile_period(comb, None)[1] > 0.7
    decay = 0.5 ** np.arange(M + 1)
    period, acf = stats.profile_period(decay, None)
    assert period is None or acf < 0.5
    assert stats.profile_period(np.eye(M + 1)[0], None) == (None, 0.0)  # one lag only


def test_expected_mass_respects_existing_keys():
    profile = np.array([[0.4, 0.2, 0.2, 0.2, 0.0]])
    expected = stats.expected_mass(profile, 4)
    np.testing.assert_allclose(expected[0, 0], [1, 0, 0, 0, 0])
    np.testing.assert_allclose(expected[1, 0], [2 / 3, 1 / 3, 0, 0, 0])
    np.testing.assert_allclose(expected[3, 0], [0.4, 0.2, 0.2, 0.2, 0])


def test_synthetic_run_profiles_kinds_and_key_frames(synthetic_run, tmp_path):
    out = tmp_path / "out"
    cfg = att.AttentionConfig(run=synthetic_run, out=out, n_bootstrap=200, n_gallery=4)
    summary = att.main(cfg)
    report = json.loads((out / "attention.json").read_text(), parse_constant=no_nan)  # strict JSON
    profile = report["profiles"]["L0"]
    # recent head: all mass on the current frame
    np.testing.assert_allclose(profile["mean"][0][:M], np.eye(M)[0], atol=1e-6)
    assert report["recent_share"]["L0"]["mean"][0] == pytest.approx(1.0)
    np.testing.assert_allclose(report["rest_share"]["L0"]["mean"][0], 0.0, atol=1e-9)
    # bands contain the mean; lag M (masked) has mean 0
    mean, lo, hi = (np.array(profile[k], dtype=float) for k in ("mean", "ci_low", "ci_high"))
    assert np.all(lo <= mean + 1e-12) and np.all(mean <= hi + 1e-12)
    np.testing.assert_array_equal(mean[:, M], 0.0)
    assert report["n_steps_per_lag"][:2] == [64 + 64 + 48, 63 + 63 + 47]

    kinds = {h["head"]: h for h in report["head_kinds"]}
    assert [kinds[h]["kind"] for h in range(3)] == ["recent", "periodic", "key-frame"]
    assert kinds[1]["features"]["period"] == 4
    assert kinds[2]["features"]["key_frame_rate"] > 0.2 and kinds[2]["features"]["far_peakiness"] > 0.5

    items = report["key_frames"]["items"]
    assert report["key_frames"]["n_key_frames"] == 3  # the one planted key frame, in each episode
    for kf in items:
        assert kf["step"] == KEY_STEP and kf["heads"] == [[0, 2]]
        assert (kf["first_step"], kf["last_step"], kf["n_steps_attended"]) == (KEY_FROM, KEY_TO, KEY_TO - KEY_FROM + 1)
        assert kf["attended_at"] == list(range(KEY_FROM, KEY_TO + 1))
        assert [d[0] for d in kf["detections"]] == kf["attended_at"] and kf["max_ratio"] >= 4.0
        assert kf["events"] == [{"type": "block_broken", "block": "oak_log"}]
        assert kf["keys"] == ["attack", "forward"] and kf["camera"] == [0.0, 15.0]
        assert kf["crosshair"]["block"] == "oak_log"
    assert sorted(kf["episode"] for kf in items) == [0, 1, 2]
    assert summary["head_kinds"] == {"recent": 1, "key-frame": 1, "periodic": 1, "other": 0}
    assert report["provenance"]["policy_config"] == {"attention_heads": 3, "memory": M}


def no_nan(name: str):
    raise AssertionError(f"{name} in a strict JSON document")


def test_bad_input_fails_before_anything_is_written(synthetic_run, tmp_path):
    """Layers not recorded, a raster head out of range, an existing --out: refused before any work or file."""
    out = tmp_path / "out"
    with pytest.raises(KeyError, match=r"--layers \[3\] are not recorded .* layers \[0\]"):
        att.main(att.AttentionConfig(run=synthetic_run, out=out, layers=(0, 3)))
    with pytest.raises(ValueError, match="raster_head 5 out of range"):
        att.main(att.AttentionConfig(run=synthetic_run, out=out, raster_head=5))
    assert not out.exists()
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="--overwrite"):
        att.main(att.AttentionConfig(run=synthetic_run, out=out, n_bootstrap=0))
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    att.main(att.AttentionConfig(run=synthetic_run, out=out, n_bootstrap=0, overwrite=True, n_gallery=0))
    assert not (out / "notes.txt").exists() and (out / "attention.json").is_file()
    page = (out / "index.html").read_text()
    assert "<table>" in page and "L0H2" in page and "key-frame" in page  # a summary table, not a JSON dump


def test_null_reason_for_lags_no_episode_reached(tmp_path):
    """Episodes shorter than the memory: lags never reached are null in the JSON, with the reason beside them."""
    episode = np.stack([synthetic_step(t) for t in range(20)])
    run = write_run(tmp_path / "run", [episode, episode[:16]])
    att.main(att.AttentionConfig(run=run, out=tmp_path / "out", n_bootstrap=50, n_gallery=0))
    doc = json.loads((tmp_path / "out" / "attention.json").read_text(), parse_constant=no_nan)
    assert doc["profiles"]["L0"]["mean"][0][19] is not None and doc["profiles"]["L0"]["mean"][0][20] is None
    assert "every episode is shorter" in doc["null_reasons"]["/profiles/L0/mean/0/20"]
    assert report.strict_json({"x": float("nan")}) == {"x": None, "null_reasons": {"/x": "not a finite number (nan)"}}


def test_config_checks_and_cli_parsing(tmp_path):
    with pytest.raises(ValueError, match="confidence"):
        att.AttentionConfig(run=tmp_path, confidence=1.5)
    with pytest.raises(FileNotFoundError, match="run.json"):
        att.main(att.AttentionConfig(run=tmp_path, out=tmp_path / "out"))
    cfg = tyro.cli(att.AttentionConfig, args=[str(tmp_path), "--out", "x", "--layers", "0", "1"])
    assert cfg.run == tmp_path and cfg.layers == (0, 1)


def test_main_on_tiny_run(tiny_run, tmp_path):
    out = tmp_path / "attention"
    # the tiny random policy attends almost uniformly: a low ratio makes the gallery non-empty
    cfg = att.AttentionConfig(run=tiny_run, out=out, n_bootstrap=100, key_ratio=1.5, key_floor=0.04, n_gallery=6)
    summary = att.main(cfg)
    report = json.loads((out / "attention.json").read_text(), parse_constant=no_nan)
    assert {"provenance", "profiles", "recent_share", "rest_share", "head_kinds", "key_frames", "figures"} <= set(
        report
    )
    assert report["provenance"]["package_version"] and report["provenance"]["policy_config"]["attention_heads"] == 4
    assert report["memory_length"] == M and report["layers"] == [0, 1]
    assert np.array(report["profiles"]["L1"]["mean"]).shape == (4, M + 1)
    assert len(report["head_kinds"]) == 8 and summary["n_episodes"] == 4
    for h in report["head_kinds"]:
        assert h["kind"] in stats.KINDS and {"recent_share", "key_frame_rate", "period"} <= set(h["features"])
    for kf in report["key_frames"]["items"]:
        assert kf["step"] == kf["at_max"]["step"] - kf["at_max"]["lag"] and kf["events"] is not None
    pngs = sorted(out.glob("*.png"))
    assert {p.name for p in pngs} >= {"lag_profiles_L0.png", "lag_heatmap.png", "raster_episode0.png", "key_frames.png",
                                      "head_clusters.png"}  # fmt: skip
    clusters = report["head_clusters"]
    assert len(clusters) == 4 and sorted(h for c in clusters for h in c["heads"]) == sorted(
        f"L{h['layer']}H{h['head']}" for h in report["head_kinds"]
    )
    assert all(sum(c["kinds"].values()) == len(c["heads"]) for c in clusters)
    for png in pngs:
        image = imread(png)
        assert image.shape[0] > 150 and image.shape[1] > 300 and image[..., :3].std() > 0.05, png.name
    assert "key_frames.png" in (out / "index.html").read_text()


def test_heads_cluster_by_profile_shape():
    """Three families of lag profiles with noise (recent decay, flat, period-8 comb) come back as three clusters,
    ordered by mean lag; Hellinger distance is 0 for equal shapes and 1 for disjoint ones."""
    rng = np.random.default_rng(0)
    lags = np.arange(M + 1)
    families = [np.exp(-lags / 2.0), np.ones(M + 1), np.where(lags % 8 == 0, 1.0, 0.02)]
    truth = np.repeat([0, 1, 2], [5, 4, 6])
    shapes = np.stack([families[f] * rng.uniform(0.8, 1.2, M + 1) for f in truth])
    labels = stats.cluster_heads(shapes, 3)
    assert len(set(zip(labels.tolist(), truth.tolist()))) == 3  # the partition is the truth's
    assert labels[truth == 0][0] == 0  # the recent family has the smallest mean lag
    d = stats.hellinger_distances(np.stack([families[0], 2 * families[0], np.eye(M + 1)[0], np.eye(M + 1)[5]]))
    assert d[0, 1] == pytest.approx(0.0, abs=1e-7) and d[2, 3] == pytest.approx(1.0)
    assert list(stats.cluster_heads(shapes, 1)) == [0] * len(truth)
    assert len(set(stats.cluster_heads(shapes[:2], 5))) == 2
