"""Attention around events: key frames near events against circular shifts, and the event-triggered ratio curve,
on attention and events built by hand."""

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from vptlens.probes import attention as att
from vptlens.probes import attention_events as ev
from vptlens.recordings.schema import AgentRecord, EnvRecord, EpisodeMeta, RunManifest
from vptlens.recordings.writer import ArraySpec, EpisodeWriter

M = 16  # memory length: rows have M + 1 columns, column M is the current frame
LENGTH = 60
LOG_STEPS = (5, 35, 55)  # oak logs broken here; 35 - 5 > M, so a query sees at most one of them
OTHER = {12: {"type": "entity_attacked", "entity_type": "villager"}, 30: {"type": "block_broken", "block": "dirt"}}


def events_at(t: int) -> list[dict]:
    return ([{"type": "block_broken", "block": "oak_log"}] if t in LOG_STEPS else []) + (
        [OTHER[t]] if t in OTHER else []
    )


def attention_row(t: int) -> np.ndarray:
    """(2 heads, M + 1) in the stored order (column M - k = k frames back).

    Head 0 splits its mass between the current and the previous frame. Head 1 puts 0.5 on the last log frame while
    it is 1..M-1 frames back and the rest on the current frame.
    """
    lag_nk = np.zeros((2, M + 1))
    lag_nk[0, 0] = 1.0 if t == 0 else 0.5
    lag_nk[0, 1] = 0.0 if t == 0 else 0.5
    back = [t - e for e in LOG_STEPS if 1 <= t - e <= M - 1]
    lag_nk[1, 0] = 0.5 if back else 1.0
    if back:
        lag_nk[1, back[0]] = 0.5
    return lag_nk[:, ::-1]


def write_run(path: Path, n_episodes: int = 2, with_events: bool = True) -> Path:
    """A run in the PROTOCOL.md layout with attention/L0 and (optionally) gt/events only."""
    specs = {"attention/L0": ArraySpec((2, M + 1), "float16")}
    if with_events:
        specs["gt/events"] = ArraySpec((), "str")
    path.mkdir(parents=True)
    agent = AgentRecord(config={"attention_heads": 2})
    manifest = RunManifest({}, agent, "0.1.0", None, "2026-01-01T00:00:00+00:00")
    env = EnvRecord("handmade", {"height": 16, "width": 16})
    for i in range(n_episodes):
        name = f"episode_{i:06d}.zarr"
        meta = EpisodeMeta(i, i, agent, {"attention_heads": 2, "memory": M}, env, {}, None, {}, (), "0.1.0", None, "x")
        with EpisodeWriter(path / name, specs, attrs=meta.to_dict()) as writer:
            for t in range(LENGTH):
                step = {"attention/L0": attention_row(t).astype(np.float16)}
                if with_events:
                    step["gt/events"] = json.dumps(events_at(t))
                writer.append(step)
            writer.close("complete")
        manifest = manifest.with_episode(i, path=name, seed=i, status="complete", length=LENGTH)
    manifest.dump(path)
    return path


@pytest.fixture(scope="module")
def run_path(tmp_path_factory) -> Path:
    return write_run(tmp_path_factory.mktemp("attention_events") / "run")


def analyse(run: Path, out: Path, **kwargs) -> dict:
    cfg = att.AttentionConfig(run=run, out=out, n_bootstrap=50, n_gallery=0, **kwargs)
    att.main(cfg)
    return json.loads((out / "attention.json").read_text())


# ---------------------------------------------------------------------------------------------- the event spec


def test_event_spec_parses_and_matches():
    assert ev.parse_event("") is None
    assert ev.parse_event("player_hurt") == ev.EventSpec("player_hurt", None)
    logs = ev.parse_event("block_broken:*_log")
    assert logs.matches({"type": "block_broken", "block": "oak_log"})
    assert logs.matches({"type": "block_broken", "block": "minecraft:birch_log"})  # namespace optional
    assert not logs.matches({"type": "block_broken", "block": "oak_leaves"})
    assert not logs.matches({"type": "block_placed", "block": "oak_log"})
    assert not logs.matches({"type": "block_broken"})  # no name to match
    assert ev.parse_event("entity_attacked:villager").matches({"type": "entity_attacked", "entity_type": "villager"})
    steps = ev.event_steps([events_at(t) for t in range(LENGTH)], logs)
    np.testing.assert_array_equal(steps, LOG_STEPS)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("block_brokn:*_log", r"unknown event type 'block_brokn'.*block_broken.*--event block_broken:\*_log"),
        ("block_broken:", r"nothing after ':'.*block_broken:PATTERN"),
        ("*_log", "unknown event type"),
    ],
)
def test_malformed_event_is_refused_with_the_fix(text, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        ev.parse_event(text)
    with pytest.raises(ValueError, match=message):
        att.AttentionConfig(run=tmp_path, event=text)  # before any work


# ---------------------------------------------------------------------------------------------- enrichment


def test_shifted_counts_match_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        length, window = int(rng.integers(5, 40)), int(rng.integers(0, 4))
        steps = np.sort(rng.choice(length, int(rng.integers(1, 6)), replace=False))
        events = np.sort(rng.choice(length, int(rng.integers(1, 4)), replace=False))
        offsets = np.arange(length)
        want = [sum(np.abs(s - (events + o) % length).min() <= window for s in steps) for o in offsets]
        np.testing.assert_array_equal(ev.n_near_shifted(steps, events, length, window, offsets), want)


def test_key_frames_at_events_are_enriched():
    """Key frames exactly at the 3 event steps of 100, window 0: fraction 1; by chance each key frame meets a shifted
    event at 3 offsets of 100 (expected fraction 0.03); all 3 meet only at offset 0, so p is about 1/100."""
    events = np.array([10, 40, 70])
    stats, null = ev.enrichment_test([(events, events, 100)], 0, 2000, np.random.default_rng(0))
    assert (stats["n_key_frames"], stats["n_near"], stats["observed_fraction"]) == (3, 3, 1.0)
    assert stats["expected_fraction"] == pytest.approx(0.03, abs=0.005)
    assert stats["enrichment"] == pytest.approx(1 / 0.03, rel=0.2)
    assert stats["p_value"] == pytest.approx(0.01, abs=0.006)
    assert stats["window_coverage"] == pytest.approx(0.03)
    assert stats["null_distribution"]["count"].sum() == 2000 and len(null) == 2000


def test_key_frames_far_from_events_are_not():
    events, far = np.array([10, 40]), np.array([25, 55, 90])  # >= 15 steps from any event
    stats, _ = ev.enrichment_test([(far, events, 100)], 2, 500, np.random.default_rng(0))
    assert stats["observed_fraction"] == 0.0
    assert stats["p_value"] == 1.0  # every shift has at least as many (>= 0) near
    assert stats["expected_fraction"] == pytest.approx(2 * 5 / 100, abs=0.02)  # 2 events x 5 steps each of 100


# ---------------------------------------------------------------------------------------------- event-triggered


def test_event_weights_by_hand():
    """Frame 3 of 8 steps draws 0.5 from every later query of head 1; lags 1..M-1 = 1..3 (M = 4)."""
    a_tnk = np.zeros((8, 2, 5))
    a_tnk[:, :, 0] = 1.0
    for t in range(4, 8):
        a_tnk[t, 1, [0, t - 3]] = 0.5
    w, ok = ev.event_weights(a_tnk[3:], 3, np.array([3, 6]), 8)
    np.testing.assert_array_equal(ok, [[1, 1, 1], [1, 0, 0]])  # 6 + 2 is past the end
    np.testing.assert_array_equal(w[0], [[0, 0, 0], [0.5, 0.5, 0.5]])
    np.testing.assert_array_equal(w[1], [[0, 0, 0], [0, 0, 0]])  # nobody looks back at step 6
    profile = np.full((2, 5), 0.25)
    curves = ev.triggered_curves(w, ok, profile, 100, 0.95, np.random.default_rng(0))
    np.testing.assert_allclose(curves["weight"][1], [0.25, 0.5, 0.5])  # lag 1: (0.5 + 0) / 2 events
    np.testing.assert_allclose(curves["ratio"][1], [1.0, 2.0, 2.0])
    np.testing.assert_allclose(curves["mean_ratio"], [0.5, 1.0, 1.0])  # head mean: 0.25 / 0.25 ...
    np.testing.assert_array_equal(curves["n_events_per_lag"], [2, 1, 1])


def test_run_events_section(run_path, tmp_path):
    """Head 1 puts 0.5 on the log frame at every later query: its profile at lag d is 0.5 n_d / N_d (n_d log steps
    with a query d later, N_d queries with a frame d back), so its ratio is N_d / n_d; head 0 draws 0.5 at lag 1
    from every query, the event's included: ratio 1 at d = 1."""
    doc = analyse(run_path, tmp_path / "out", event_window=0, n_permutations=2000)
    sec = doc["events"]
    assert (sec["event"], sec["n_episodes"], sec["n_events"], sec["n_event_records"]) == ("block_broken:*_log", 2, 6, 6)
    assert sec["episodes_without_ground_truth"] == []
    tr = sec["triggered"]
    lags = np.array(tr["lags"])
    np.testing.assert_array_equal(lags, np.arange(1, M))
    n_d = 2 * np.array([sum(e + d < LENGTH for e in LOG_STEPS) for d in lags])  # 2 episodes
    big_n = 2 * (LENGTH - lags)
    np.testing.assert_array_equal(tr["L0"]["n_events_per_lag"], n_d)
    per_head = tr["L0"]["per_head"]
    np.testing.assert_allclose(per_head["weight"][1], 0.5, rtol=1e-6)
    np.testing.assert_allclose(per_head["ratio"][1], big_n / n_d, rtol=1e-6)
    assert per_head["ratio"][0][0] == pytest.approx(1.0) and per_head["ratio"][0][1] is None  # 0 / 0
    head_mean = tr["L0"]["head_mean"]
    want = np.r_[(0.5 + 0.5) / 2 / ((0.5 + 0.5 * n_d[0] / big_n[0]) / 2), big_n[1:] / n_d[1:]]
    np.testing.assert_allclose(head_mean["ratio"], want, rtol=1e-6)
    # identical events at each lag: the bootstrap band has no width
    np.testing.assert_allclose(head_mean["ratio_ci_low"], want, rtol=1e-6)
    np.testing.assert_allclose(head_mean["ratio_ci_high"], want, rtol=1e-6)

    en = sec["enrichment"]  # the key frames are exactly the log steps (head 1's far looks)
    assert sorted(kf["step"] for kf in doc["key_frames"]["items"]) == sorted(LOG_STEPS * 2)
    assert (en["n_key_frames"], en["n_near"], en["observed_fraction"]) == (6, 6, 1.0)
    assert en["expected_fraction"] < 0.1 and en["p_value"] < 0.01 and en["enrichment"] > 10
    png = tmp_path / "out" / "attention_events.png"
    assert doc["figures"]["attention around events"] == png.name and imread(png).shape[1] > 600
    assert "key frames near block_broken:*_log" in (tmp_path / "out" / "index.html").read_text()


def test_off_no_events_and_no_ground_truth(run_path, tmp_path):
    off = analyse(run_path, tmp_path / "off", event="")
    assert off["events"] is None and "off" in off["null_reasons"]["/events"]
    assert not (tmp_path / "off" / "attention_events.png").exists()

    none = analyse(run_path, tmp_path / "none", event="entity_killed")
    assert none["events"]["n_events"] == 0 and none["events"]["enrichment"] is None
    assert "no entity_killed events" in none["events"]["reason"]
    assert (tmp_path / "none" / "attention_events.png").is_file()

    bare = write_run(tmp_path / "bare", n_episodes=1, with_events=False)
    doc = analyse(bare, tmp_path / "bare_out")
    assert doc["events"]["n_episodes"] == 0 and doc["events"]["n_events"] == 0
    assert doc["events"]["episodes_without_ground_truth"] == ["episode_000000.zarr"]
    assert "no episode has ground-truth events" in doc["events"]["reason"]
