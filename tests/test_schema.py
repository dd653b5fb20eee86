"""The store's typed schema: PROTOCOL.md and the types agree, manifests round-trip, runs open one way,
and no consumer outside recordings/ builds a store array name."""

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import given
from hypothesis import strategies as st

from vptlens.recordings import schema
from vptlens.recordings.schema import AgentRecord, EpisodeEntry, EpisodeMeta, RunManifest, provenance
from vptlens.recordings.store import Run

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = (ROOT / "recordings" / "PROTOCOL.md").read_text()


def _section(title: str) -> str:
    start = PROTOCOL.index(f"## {title}")
    end = PROTOCOL.find("\n## ", start + 3)
    return PROTOCOL[start : end if end > 0 else None]


def _table_names(section: str) -> set[str]:
    """Every `name` in the first column of a section's table rows."""
    names = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names |= set(re.findall(r"`([^`]+)`", line.split("|")[1]))
    return names


def test_protocol_documents_exactly_the_episode_attributes():
    documented = _table_names(_section("Episode group attributes"))
    typed = {f.name for f in dataclasses.fields(EpisodeMeta)} | set(schema.STORE_ATTRIBUTES)
    assert documented == typed


def test_protocol_documents_exactly_the_manifest_keys():
    documented = _table_names(_section("Run directory"))
    assert documented == {f.name for f in dataclasses.fields(RunManifest)}
    agent_row = next(line for line in _section("Run directory").splitlines() if line.startswith("| `agent`"))
    assert set(re.findall(r"`([^`]+)`", agent_row.split("|")[2])) == {f.name for f in dataclasses.fields(AgentRecord)}


def test_protocol_documents_exactly_the_arrays_the_recorder_writes(vpt_tiny):
    from vptlens.recordings.recorder import RecordConfig, episode_specs

    model, weights = (ROOT / "tests" / "fixtures" / "vpt_tiny" / f"agent.{ext}" for ext in ("model", "weights"))
    cfg = RecordConfig(model=model, weights=weights, full_frames=True)
    hooks = vpt_tiny.select_hooks(list(cfg.hooks))
    written = {schema.array_pattern(name) for name in episode_specs(vpt_tiny, cfg, hooks)}
    assert written == _table_names(_section("Arrays"))


def test_array_names_and_their_inverses():
    names = [
        schema.attention_array(0),
        schema.attention_array(11),
        schema.activation_array("blocks.3.hook_resid_post"),
        schema.minerl_action_array("attack"),
        schema.minerl_action_array("camera"),
        schema.FRAMES,
    ]
    assert schema.attention_layers(names) == [0, 11]
    assert schema.activation_hooks(names) == ["blocks.3.hook_resid_post"]
    assert schema.minerl_action_keys(names) == ["attack"]
    with pytest.raises(KeyError, match="use one of"):
        schema.action_array("jump")
    with pytest.raises(KeyError, match="records"):
        schema.ground_truth_array("weather")


def _agent() -> AgentRecord:
    return AgentRecord("a.model", "a.weights", "ab" * 32, "cd" * 32, {"hidsize": 64})


@given(
    st.dictionaries(
        st.integers(0, 10**6),
        st.builds(
            EpisodeEntry,
            path=st.text(min_size=1, max_size=12),
            seed=st.integers(0, 2**31),
            status=st.sampled_from(schema.EPISODE_STATUSES),
            length=st.none() | st.integers(0, 10**6),
        ),
        max_size=5,
    )
)
def test_run_manifest_round_trips_through_json(episodes):
    manifest = RunManifest({"n_steps": 3, "seed": 1}, _agent(), "0.1.0", None, "2026-01-01T00:00:00+00:00", episodes)
    assert RunManifest.from_dict(json.loads(json.dumps(manifest.to_dict()))) == manifest


def test_run_manifest_dump_load_and_with_episode(tmp_path):
    manifest = RunManifest({"n_steps": 3}, _agent(), "0.1.0", "abc", "now")
    manifest = manifest.with_episode(2, path="episode_000002.zarr", seed=7, status="recording")
    manifest = manifest.with_episode(2, status="complete", length=40)
    manifest.dump(tmp_path)
    loaded = RunManifest.load(tmp_path)
    assert loaded == manifest and loaded.episodes[2] == EpisodeEntry("episode_000002.zarr", 7, "complete", 40)
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


def test_manifest_errors_name_what_is_wrong(tmp_path):
    good = RunManifest({}, _agent(), "0.1.0", None, "now").to_dict()
    with pytest.raises(ValueError, match=r"lacks \['created'\]"):
        RunManifest.from_dict({k: v for k, v in good.items() if k != "created"})
    with pytest.raises(ValueError, match="schema version 2"):
        RunManifest.from_dict({**good, "schema_version": 2})
    with pytest.raises(ValueError, match="not a vpt-lens run"):
        RunManifest.from_dict({**good, "schema": "something"})
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        RunManifest.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        RunManifest.load(tmp_path / "nowhere")


def test_a_recorded_episode_has_typed_metadata_and_accessors(tiny_run):
    run = Run.open(tiny_run)
    episode = run.episodes()[0]
    meta = episode.meta
    assert isinstance(meta, EpisodeMeta) and meta.seed == 11 and meta.episode_index == 0
    assert meta.agent == run.manifest.agent and meta.agent.weights_sha256
    assert meta.scene["name"] == "villager_under_leaves" and meta.cond_scale is None and meta.goal is None
    assert EpisodeMeta.from_dict(meta.to_dict()) == meta
    # the accessors read the arrays PROTOCOL.md names, cut to the committed length
    g = zarr.open_group(str(episode.path), mode="r")
    n = g.attrs["committed_length"]
    np.testing.assert_array_equal(episode.attention(1)[:], g["attention/L1"][:n])
    np.testing.assert_array_equal(episode.attention(-1)[:], g["attention/L1"][:n])
    np.testing.assert_array_equal(episode.activation("img.hook_out")[5:9], g["activations/img.hook_out"][5:9])
    np.testing.assert_array_equal(episode.minerl_action("attack")[:], g["action/minerl/attack"][:n])
    np.testing.assert_array_equal(episode.action("camera")[:], g["action/camera"][:n])
    assert episode.ground_truth("crosshair")[3] == json.loads(str(g["gt/crosshair"][3]))
    assert episode.ground_truth("events")[0:2] == [json.loads(str(s)) for s in g["gt/events"][0:2]]
    assert episode.layers == [0, 1] and set(episode.hooks) == set(meta.hooks)
    assert "attack" in episode.minerl_keys and "camera" not in episode.minerl_keys
    with pytest.raises(KeyError, match="not 5"):
        episode.attention(5)
    with pytest.raises(KeyError, match="did not record the hook"):
        episode.activation("blocks.0.attn.hook_q")
    assert episode.frames_full is None


def test_run_open_takes_a_run_or_an_episode(tiny_run, tmp_path):
    whole = Run.open(tiny_run)
    assert len(whole.episodes()) == 4 and whole.manifest is not None
    one = Run.open(tiny_run / "episode_000002.zarr")
    assert [e.path.name for e in one.episodes()] == ["episode_000002.zarr"]
    assert one.manifest == whole.manifest and one.path == tiny_run
    with pytest.raises(FileNotFoundError, match="neither a run directory"):
        Run.open(tmp_path)


def test_provenance_has_the_same_keys_everywhere(tiny_run):
    p = provenance({"k": Path("x"), "t": (1, 2)}, run=Run.open(tiny_run), sae_dir=Path("s"))
    assert {"package_version", "git_commit", "created", "config", "run", "sae_dir"} <= p.keys()
    assert p["config"] == {"k": "x", "t": [1, 2]} and p["sae_dir"] == "s"
    assert p["run"]["agent"]["weights_sha256"] and len(p["run"]["episodes"]) == 4
    json.dumps(p, allow_nan=False)


STORE_NAME = re.compile(r"""["'](attention/L|activations/|action/|gt/|entropy/)|\bepisode\[|\.names\(\)|\.attrs\[""")


def test_no_consumer_outside_recordings_builds_a_store_array_name():
    """Only recordings/ knows the store's array names; everything else asks the Episode."""
    offenders = []
    for package in ("probes", "interventions", "viewer", "training"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for i, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#", 1)[0]
                if STORE_NAME.search(code):
                    offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
