"""The viewer's HTTP API as a client sees it: what it serves (and nothing else), access, the runs list, the player's
data against the store, broken episodes."""

import json
import os
import shutil
import threading
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from test_viewer_helpers import served, start

from vptlens.interventions.metrics import compute_metrics
from vptlens.recordings.store import Episode, Run
from vptlens.viewer import serve
from vptlens.viewer.app import make_app
from vptlens.viewer.episodes import EpisodeData
from vptlens.viewer.registry import Registry


@pytest.fixture(scope="module")
def data(tiny_run, tmp_path_factory):
    return served(tiny_run, tmp_path_factory.getbasetemp() / "viewer")


@pytest.fixture(scope="module")
def client(data, tmp_path_factory):
    registry = Registry.from_paths([data.run, data.sae, data.broken, data.experiment, data.full])
    url, stop = start(make_app(registry, tmp_path_factory.mktemp("work")))
    with httpx.Client(base_url=url, timeout=60) as c:
        yield c
    stop()


def run_ids(client) -> dict[str, dict]:
    return {Path(r["name"]).name: r for r in client.get("/api/runs").json()["runs"]}


# ------------------------------------------------------------------------------------------------ what is served


def test_registry_finds_items_below_the_given_paths_and_names_them_by_id(data, tmp_path):
    registry = Registry.from_paths([data.root])  # discovered from the folder holding them
    assert data.broken.resolve() in {r.path for r in registry.runs.values()}
    assert [s.path for s in registry.saes.values()] == [data.sae.resolve()]
    (experiment,) = registry.experiments.values()
    assert sorted(experiment.cells) == ["cell_000", "cell_001"]
    assert all(registry.runs[r].experiment == experiment.id for r in experiment.cells.values())
    ids = [*registry.runs, *registry.saes, *registry.experiments]
    assert all(len(i) <= 4 and "/" not in i for i in ids)  # ids, never paths
    # a lone episode is a run of one; the run's own episodes are not registered twice
    lone = Registry.from_paths([sorted(data.run.glob("episode_*.zarr"))[2]])
    (run,) = lone.runs.values()
    assert len(run.episode_paths()) == 1 and lone.episode_path("r0e0").name == "episode_000002.zarr"
    with pytest.raises(FileNotFoundError, match="no such file"):
        Registry.from_paths([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="nothing to serve"):
        Registry.from_paths([tmp_path / "empty"])


def test_discovery_does_not_follow_links_out_of_a_given_path(data, tmp_path):
    (tmp_path / "inside").mkdir()
    os.symlink(data.run, tmp_path / "inside" / "escape")
    os.symlink(data.sae, tmp_path / "inside" / "sae_link")
    shutil.copytree(data.sae, tmp_path / "inside" / "own_sae")
    registry = Registry.from_paths([tmp_path / "inside"])
    assert not registry.runs and [s.path.name for s in registry.saes.values()] == ["own_sae"]


@pytest.mark.parametrize(
    "path",
    [
        "/static/..%2F..%2Fapp.py",
        "/static/%2e%2e/app.py",
        "/api/experiments/x0/files/..%2Fexperiment.json",
        "/api/experiments/x0/files/img/..%2F..%2Fcells%2Fcell_000%2Frun.json",
        "/api/experiments/x0/files/%2Fetc%2Fpasswd",
        "/api/experiments/x0/files/scenes/villager_under_leaves.yaml",
        "/api/episodes/r0e99",
        "/api/episodes/r0e-1",
        "/api/episodes/..%2F..%2Fetc",
        "/api/episodes/r9e0/sprite/0",
        "/api/saes/..%2Fsae/latents",
        "/api/jobs/j99",
    ],
)
def test_nothing_outside_the_served_items_is_reachable(client, path):
    response = client.get(path)
    assert response.status_code == 404, (path, response.status_code, response.text[:200])
    assert "root:" not in response.text and "schema" not in response.text


def test_the_experiment_serves_its_report_files_by_name_only(client):
    x = client.get("/api/experiments/x0").json()
    assert set(x["files"]) >= {"report.html", "results.csv", "results.json", "img/forest.png"}
    report = client.get("/api/experiments/x0/files/report.html")
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert client.get("/api/experiments/x0/files/img/forest.png").content[:4] == b"\x89PNG"


def test_serve_config_refuses_unsafe_or_impossible_settings(tmp_path):
    with pytest.raises(ValueError, match="--token"):
        serve.ServeConfig(paths=(tmp_path,), host="0.0.0.0")
    with pytest.raises(ValueError, match="at least 16"):
        serve.ServeConfig(paths=(tmp_path,), host="0.0.0.0", token="short")
    with pytest.raises(ValueError, match="at least one path"):
        serve.ServeConfig(paths=())
    with pytest.raises(ValueError, match="together"):
        serve.ServeConfig(paths=(tmp_path,), model=tmp_path / "a.model")
    assert serve.ServeConfig(paths=(tmp_path,), host="0.0.0.0", token="x" * 16).loopback is False
    assert serve.ServeConfig(paths=(tmp_path,), host="::1").loopback


def test_main_serves_until_stopped(data, tmp_path, monkeypatch, capsys):
    """`main(cfg)` prints the URL and serves it (stopped after one request here)."""
    answers = []
    real_run = serve.uvicorn.Server.run

    def run_then_stop(self, sockets=None):
        thread = threading.Thread(target=real_run, args=(self,), kwargs={"sockets": sockets}, daemon=True)
        thread.start()
        while not self.started:
            thread.join(0.05)
        url = capsys.readouterr().out.split("open ")[1].split()[0]
        answers.append(httpx.get(url + "api/runs", timeout=30).json())
        self.should_exit = True
        thread.join(10)

    monkeypatch.setattr(serve.uvicorn.Server, "run", run_then_stop)
    serve.main(serve.ServeConfig(paths=(data.run,), port=0, work_dir=tmp_path))
    assert [len(r["episodes"]) for r in answers[0]["runs"]] == [4]


# ------------------------------------------------------------------------------------------------ access


def test_loopback_server_answers_loopback_host_names_only(client):
    assert client.get("/api/runs", headers={"host": "localhost:1234"}).status_code == 200
    assert client.get("/api/runs", headers={"host": "[::1]:1234"}).status_code == 200
    refused = client.get("/api/runs", headers={"host": "attacker.example:80"})
    assert refused.status_code == 403 and "localhost" in refused.text
    assert refused.headers["x-content-type-options"] == "nosniff"


def test_a_token_guards_every_request(data, tmp_path):
    token = "t0ken-for-the-test-0123456789"
    registry = Registry.from_paths([data.run])
    url, stop = start(make_app(registry, tmp_path, token=token, loopback=False))
    try:
        with httpx.Client(base_url=url, headers={"host": "lab-machine:8765"}) as c:
            for path in ("/", "/api/runs", "/static/app.js", "/api/episodes/r0e0/sprite/0"):
                assert c.get(path).status_code == 401, path
            assert c.get("/api/runs", headers={"authorization": "Bearer wrong-token-0123456789"}).status_code == 401
            assert c.get("/api/runs", headers={"authorization": f"Bearer {token}"}).status_code == 200
            login = c.get(f"/?token={token}")  # the printed URL: sets the cookie, drops the token from the address
            assert login.status_code == 303 and login.headers["location"] == "/"
            assert "httponly" in login.headers["set-cookie"].lower()
            assert c.get("/api/runs").status_code == 200  # the cookie now
        with httpx.Client(base_url=url) as fresh:
            assert fresh.get("/?token=wrong-token-0123456789").status_code == 401
    finally:
        stop()


def test_state_changing_requests_must_be_json(client):
    form = client.post("/api/episodes/r0e0/steer", data={"edit": "x"})
    assert form.status_code == 415 and "JSON" in form.json()["error"]
    bad = client.post("/api/episodes/r0e0/steer", content=b"{", headers={"content-type": "application/json"})
    assert bad.status_code == 422


# ------------------------------------------------------------------------------------------------ runs and the player


def test_runs_list_summarises_behaviour_from_the_ground_truth(client, data):
    run = run_ids(client)["run"]
    episodes = Run.open(data.run).episodes(status=None)
    assert [e["name"] for e in run["episodes"]] == [e.path.name for e in episodes]
    for row, episode in zip(run["episodes"], episodes):
        metrics = compute_metrics(episode, ["hits", "target_killed", "logs_broken"])
        events = [e["type"] for step in episode.ground_truth("events")[:] for e in step]
        assert row["length"] == len(episode) == 128 and row["status"] == "complete"
        assert row["scene"] == "villager_under_leaves" and row["seed"] == episode.meta.seed
        assert row["target_hits"] == metrics["hits"] and row["target_killed"] == metrics["target_killed"]
        assert row["logs"] == metrics["logs_broken"]
        assert row["hits"] == events.count("entity_attacked") and row["kills"] == events.count("entity_killed")


def test_episode_meta_and_traces_carry_the_stored_values(client, data):
    view = client.get("/api/episodes/r0e1").json()
    view |= client.get("/api/episodes/r0e1/traces").json()
    episode = Episode(sorted(data.run.glob("episode_*.zarr"))[1])
    assert (view["length"], view["layers"], view["heads"], view["memory"]) == (128, [0, 1], 4, 32)
    assert view["attention_chunk"] == 64
    np.testing.assert_allclose(view["traces"]["value"], episode.value[:], atol=1e-4)
    np.testing.assert_allclose(view["traces"]["entropy_camera"], episode.entropy("camera")[:], atol=1e-4)
    np.testing.assert_allclose(view["traces"]["camera"][1], episode.minerl_action("camera")[:, 1], atol=0.01)
    assert view["traces"]["keys"]  # keys pressed: from the button class taken, the same as the MineRL keys sent
    for key in ("attack", "forward", "jump", "hotbar.3"):
        sent = np.asarray(episode.minerl_action(key)[:]) > 0
        assert view["traces"]["keys"].get(key, "0" * 128) == "".join("1" if x else "0" for x in sent)
    stored = [(t, e["type"]) for t, step in enumerate(episode.ground_truth("events")[:]) for e in step]
    assert [(e["step"], e["type"]) for e in view["events"]] == stored


def test_frames_come_as_sprites_that_hold_the_stored_frames(client, data):
    episode = Episode(sorted(data.run.glob("episode_*.zarr"))[0])
    view = client.get("/api/episodes/r0e0").json()
    assert (view["sprite_steps"], view["sprite_columns"], view["frame_size"]) == (16, 4, [128, 128])
    response = client.get("/api/episodes/r0e0/sprite/5")  # steps 80..95
    assert response.headers["content-type"] == "image/jpeg"
    sprite = cv2.cvtColor(cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert sprite.shape == (4 * 128, 4 * 128, 3)
    for i in (0, 6, 15):  # step 80 + i sits at row i // 4, column i % 4
        cell = sprite[(i // 4) * 128 : (i // 4 + 1) * 128, (i % 4) * 128 : (i % 4 + 1) * 128].astype(float)
        assert np.abs(cell - episode.frames[80 + i]).mean() < 6  # JPEG
    assert client.get("/api/episodes/r0e0/sprite/8").status_code == 422  # past the end: says so


def decode_jpeg(content: bytes) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(content, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_full_resolution_frames_come_as_sprites_of_their_own(client, data):
    eid = run_ids(client)["full"]["episodes"][0]["id"]
    episode = Episode(next(data.full.glob("episode_*.zarr")))
    view = client.get(f"/api/episodes/{eid}").json()
    assert view["full_frame_size"] == [72, 128] and view["frame_size"] == [128, 128]
    response = client.get(f"/api/episodes/{eid}/frames_full/1")  # steps 16..31
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["cache-control"] == client.get(f"/api/episodes/{eid}/sprite/1").headers["cache-control"]
    sprite = decode_jpeg(response.content)
    assert sprite.shape == (4 * 72, 4 * 128, 3)
    stored = np.asarray(episode.frames_full[:], float)
    for i in (0, 5, 15):
        cell = sprite[(i // 4) * 72 : (i // 4 + 1) * 72, (i % 4) * 128 : (i % 4 + 1) * 128].astype(float)
        error = np.abs(cell - stored).mean((1, 2, 3))  # against every stored frame: JPEG blurs small sharp frames
        assert error[16 + i] < 12 and error[16 + i] == error.min()
    assert decode_jpeg(client.get(f"/api/episodes/{eid}/frames_full/2").content).shape == (2 * 72, 4 * 128, 3)
    assert client.get(f"/api/episodes/{eid}/frames_full/3").status_code == 422  # past the end (40 steps)
    assert client.get("/api/episodes/r0e0").json()["full_frame_size"] is None
    none = client.get("/api/episodes/r0e0/frames_full/0")
    assert none.status_code == 404 and "--full-frames" in none.json()["error"]
    cache = EpisodeData()  # cached like the agent's sprites, apart from them
    assert cache.sprite(episode, 1, full=True) == cache.sprite(episode, 1, full=True) != cache.sprite(episode, 1)
    assert (cache.sprites.hits, cache.sprites.misses) == (1, 2)


def test_attention_chunks_are_the_stored_weights(client, data):
    episode = Episode(sorted(data.run.glob("episode_*.zarr"))[0])
    stored = np.asarray(episode.attention(1)[64:128], np.float32)  # (64, heads, M+1)
    head = np.frombuffer(client.get("/api/episodes/r0e0/attention?layer=1&head=2&chunk=1").content, "<f4")
    np.testing.assert_array_equal(head.reshape(64, 33), stored[:, 2])
    mean = np.frombuffer(client.get("/api/episodes/r0e0/attention?layer=1&head=mean&chunk=1").content, "<f4")
    np.testing.assert_allclose(mean.reshape(64, 33), stored.mean(1), rtol=1e-6)
    first = np.frombuffer(client.get("/api/episodes/r0e0/attention?layer=0&head=0&chunk=0").content, "<f4")
    assert first.reshape(64, 33)[0, :-1].max() == 0  # step 0 sees only itself: every other lag masked (exact 0)
    for bad, words in (
        ("layer=7&head=0&chunk=0", "layers"),
        ("layer=1&head=9&chunk=0", "head"),
        ("layer=1&head=x&chunk=0", "head"),
        ("head=0&chunk=0", "layer"),
    ):
        answer = client.get(f"/api/episodes/r0e0/attention?{bad}")
        assert answer.status_code == 422 and words in answer.json()["error"], bad


def test_key_frames_and_context_strips(client):
    key_frames = client.get("/api/episodes/r0e0/keyframes?layer=1").json()["key_frames"]
    assert all(0 <= k["step"] < 128 and k["detections"] >= 1 for k in key_frames)
    strip = client.get("/api/episodes/r0e0/strip?steps=0,5,127&size=32")
    image = cv2.imdecode(np.frombuffer(strip.content, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (32, 96, 3)
    assert client.get("/api/episodes/r0e0/strip?steps=0,500").status_code == 422
    assert client.get("/api/episodes/r0e0/strip?steps=a,b").status_code == 422


# ------------------------------------------------------------------------------------------------ broken episodes


def test_broken_episodes_show_their_error_and_the_server_goes_on(client):
    broken = run_ids(client)["broken"]
    half, holed, garbage = broken["episodes"]
    assert half["status"] == "recording" and half["length"] == 64
    assert holed["status"] == "complete"
    assert garbage["status"] == "damaged" and "zarr.json" in garbage["error"]

    view = client.get(f"/api/episodes/{garbage['id']}")
    assert view.status_code == 422 and view.json()["damaged"] and "damaged" in view.json()["error"]
    assert client.get(f"/api/episodes/{half['id']}").json()["length"] == 64  # what is committed plays
    missing = client.get(f"/api/episodes/{holed['id']}/sprite/4")  # steps 64..79
    assert missing.status_code == 422 and "chunk 1 (steps 64..127) is missing" in missing.json()["error"]
    assert client.get(f"/api/episodes/{holed['id']}/sprite/0").status_code == 200  # the rest still plays
    assert client.get("/api/runs").status_code == 200


def test_an_episode_changing_on_disk_is_reread(client, data, tmp_path):
    """A run being recorded commits more steps: the server shows the new length, not a stale cache."""
    live = tmp_path / "live"
    (live / "episode_000000.zarr").parent.mkdir()
    shutil.copytree(sorted(data.run.glob("episode_*.zarr"))[3], live / "episode_000000.zarr")
    zarr_json = live / "episode_000000.zarr" / "zarr.json"
    meta = json.loads(zarr_json.read_text())
    meta["attributes"].update(status="recording", committed_length=64)
    zarr_json.write_text(json.dumps(meta))
    registry = Registry.from_paths([live / "episode_000000.zarr"])
    url, stop = start(make_app(registry, tmp_path / "work"))
    try:
        with httpx.Client(base_url=url) as c:
            assert c.get("/api/episodes/r0e0").json()["length"] == 64
            meta["attributes"].update(status="complete", committed_length=128)
            zarr_json.write_text(json.dumps(meta))
            os.utime(zarr_json, ns=(1, 10**18))  # a later mtime, whatever the file system's resolution
            assert c.get("/api/episodes/r0e0").json()["length"] == 128
    finally:
        stop()
