"""Recording BlockWorld episodes, killing the recorder, resuming, replaying and summarising."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import zarr
from conftest import fixture_paths, record_guided_steve1

from vptlens.agents.actions import factored_to_minerl
from vptlens.cli import entrypoint
from vptlens.envs.blockworld import BlockWorldConfig
from vptlens.recordings import recorder, replay
from vptlens.recordings.store import Episode, Run
from vptlens.recordings.writer import EpisodeWriter, WriterError

MODEL, WEIGHTS = fixture_paths("vpt_tiny")


def _cfg(out: Path, **kw) -> recorder.RecordConfig:
    settings = {"n_episodes": 2, "n_steps": 70, "n_envs": 2, "env": BlockWorldConfig(64, 64), "seed": 5, **kw}
    return recorder.RecordConfig(model=MODEL, weights=WEIGHTS, out=out, **settings)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    recorder.main(_cfg(out, full_frames=True))
    return out


def test_run_manifest_and_episodes(recorded):
    run = Run(recorded)
    assert run.manifest.agent.weights_sha256 and len(run.episodes()) == 2
    assert {e.status for e in run.manifest.episodes.values()} == {"complete"}
    ep = run.episodes()[1]
    assert len(ep) == 70 and ep.attrs["seed"] == 6 and ep.attrs["status"] == "complete"
    assert ep["frames_full"].shape == (70, 64, 64, 3)
    assert ep["activations/blocks.1.hook_resid_post"].shape == (70, 64)


def test_plain_zarr_reads_what_the_recorder_wrote(recorded):
    g = zarr.open_group(str(recorded / "episode_000000.zarr"), mode="r")
    n = g.attrs["committed_length"]
    attention = np.asarray(g["attention/L1"][:n], np.float32)
    assert attention.shape == (70, 4, 33)
    np.testing.assert_allclose(attention.sum(-1), 1.0, atol=3e-3)  # float16 storage
    assert np.all(attention[0, :, :-1] == 0) and np.all(attention[:, :, 0] == 0)  # lag convention
    crosshair = json.loads(str(g["gt/crosshair"][3]))
    assert crosshair["kind"] in ("block", "entity", "none")
    # the MineRL actions stored are the factored actions, converted
    buttons, camera = g["action/buttons"][:n], g["action/camera"][:n]
    dicts = factored_to_minerl(buttons, camera)
    for key in ("forward", "attack", "hotbar.3"):
        np.testing.assert_array_equal(g[f"action/minerl/{key}"][:n], [d[key] for d in dicts])


def test_existing_run_needs_resume(recorded):
    with pytest.raises(FileExistsError, match="--resume"):
        recorder.main(_cfg(recorded))


def _wait_for_commit(path: Path, at_least: int, timeout_s: float = 120.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (path / "zarr.json").exists():
            n = zarr.open_group(str(path), mode="r").attrs.get("committed_length", 0)
            if n >= at_least:
                return n
        time.sleep(0.05)
    raise TimeoutError(f"{path} never committed {at_least} steps")


def _record_in_subprocess(out: Path, n_steps: int, env_workers: int = 0) -> subprocess.Popen:
    script = (  # Ctrl-C as in a terminal, even where pytest runs in the background (`cmd &` ignores SIGINT)
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from pathlib import Path; from vptlens.recordings import recorder; "
        "from vptlens.envs.blockworld import BlockWorldConfig; "
        f"recorder.main(recorder.RecordConfig(model=Path({str(MODEL)!r}), weights=Path({str(WEIGHTS)!r}), "
        f"out=Path({str(out)!r}), n_steps={n_steps}, n_episodes=1, n_envs=1, env=BlockWorldConfig(64, 64), seed=5, "
        f"env_workers={env_workers}))"
    )
    return subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


def test_sigkill_loses_only_the_tail_and_resume_completes(tmp_path):
    kwargs = {"n_episodes": 1, "n_envs": 1, "n_steps": 400}
    clean_dir, killed_dir = tmp_path / "clean", tmp_path / "killed"
    recorder.main(_cfg(clean_dir, **kwargs))
    process = _record_in_subprocess(killed_dir, 400)
    try:
        _wait_for_commit(killed_dir / "episode_000000.zarr", 128)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    killed = Episode(killed_dir / "episode_000000.zarr")
    clean = Episode(clean_dir / "episode_000000.zarr")
    n = len(killed)
    assert killed.status == "recording" and n % 64 == 0 and 128 <= n < 400
    for name in ("frames", "action/buttons", "action/camera", "attention/L0", "activations/img.hook_out", "gt/pose"):
        np.testing.assert_array_equal(killed[name][:n], clean[name][:n])
    summary = recorder.main(_cfg(killed_dir, resume=True, **kwargs))
    assert summary["complete"] == 1
    resumed = Episode(killed_dir / "episode_000000.zarr")
    assert resumed.status == "complete" and len(resumed) == 400
    np.testing.assert_array_equal(resumed["action/buttons"][:], clean["action/buttons"][:])


def _assert_same_episodes(a: Path, b: Path, n_episodes: int) -> None:
    """Every array of every episode equal, bit for bit (NaN where NaN)."""
    for i in range(n_episodes):
        ea, eb = Episode(a / f"episode_{i:06d}.zarr"), Episode(b / f"episode_{i:06d}.zarr")
        assert ea.names() == eb.names() and len(ea) == len(eb) > 0
        for name in ea.names():
            np.testing.assert_array_equal(ea[name][:], eb[name][:], err_msg=f"episode {i}: {name}")


def test_env_workers_record_the_same_data_per_seed(tmp_path):
    """3 episodes in waves of 2 and 1, envs in this process or in 2 workers: the same actions, frames (full and
    agent's), activations and ground truth."""
    kwargs = {"n_episodes": 3, "n_steps": 70, "full_frames": True, "scene": "villager_under_leaves"}
    recorder.main(_cfg(tmp_path / "in_process", **kwargs))
    recorder.main(_cfg(tmp_path / "workers", env_workers=2, **kwargs))
    _assert_same_episodes(tmp_path / "in_process", tmp_path / "workers", 3)


def test_a_pipelined_recording_is_the_unpipelined_one_with_half_the_batch(tmp_path):
    """--pipeline steps half the envs while the policy acts for the other half: 4 envs in 2 workers, two policy
    batches of 2 (envs 0 and 1, 2 and 3; each worker holds one of each) record what 2 envs in 2 workers record
    unpipelined (itself the in-process recording: above), bit for bit; one pool serves every wave (episodes 2 and 4
    run on reused envs in one run, fresh in the other)."""
    kwargs = {"n_episodes": 5, "n_steps": 70, "full_frames": True, "scene": "villager_under_leaves", "env_workers": 2}
    threads = torch.get_num_threads()
    # a row's last bits depend on torch's thread count too, which pipelining sets to the cores the workers leave
    # (1 here); in process numba's OpenMP runtime can raise it, so the reference steps its envs in workers as well
    torch.set_num_threads(1)
    try:
        recorder.main(_cfg(tmp_path / "unpipelined", n_envs=2, **kwargs))
        recorder.main(_cfg(tmp_path / "pipelined", n_envs=4, pipeline=True, **kwargs))
        assert torch.get_num_threads() == 1  # restored after the run
    finally:
        torch.set_num_threads(threads)
    _assert_same_episodes(tmp_path / "unpipelined", tmp_path / "pipelined", 5)


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def test_sigkill_with_env_workers_leaves_no_workers_and_resume_completes(tmp_path):
    kwargs = {"n_episodes": 1, "n_envs": 1, "n_steps": 200}
    clean_dir, killed_dir = tmp_path / "clean", tmp_path / "killed"
    recorder.main(_cfg(clean_dir, **kwargs))
    process = _record_in_subprocess(killed_dir, 200, env_workers=1)
    try:
        _wait_for_commit(killed_dir / "episode_000000.zarr", 64)
        workers = _children(process.pid)  # the env worker and multiprocessing's resource tracker
        assert workers
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers), "processes outlived the killed recorder"
    summary = recorder.main(_cfg(killed_dir, resume=True, env_workers=1, **kwargs))
    assert summary["complete"] == 1
    _assert_same_episodes(clean_dir, killed_dir, 1)


def test_env_workers_are_checked_before_recording(tmp_path):
    with pytest.raises(ValueError, match="--env-workers -1"):
        _cfg(tmp_path / "x", env_workers=-1)
    with pytest.raises(ValueError, match="--env-workers 0"):
        recorder.RecordConfig(scripted="chopper", env_workers=2, out=tmp_path / "x")


def _decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def test_replay_video_frames_and_the_attention_strip(recorded, tmp_path):
    episode_dir = recorded / "episode_000000.zarr"
    out = replay.main(replay.ReplayConfig(episode_dir, out=tmp_path / "replay.mp4", layer=1, head="0"))
    frames = _decode(out)
    episode = Episode(episode_dir)
    game_w = 360 * 64 // 64  # the full 64x64 frames are drawn 360 high
    assert len(frames) == len(episode) and frames[0].shape == (360, game_w + replay.PANEL_W, 3)
    attention = replay.attention_of(episode, 1, "0")
    checked = 0
    for t in (20, 40, 60):
        strip = frames[t][24:40, game_w + 10 : game_w + replay.PANEL_W - 10].astype(np.float32)
        luminance = (strip @ np.array([0.299, 0.587, 0.114], np.float32)).mean(0)
        cells = np.array_split(luminance, attention.shape[1])
        brightest = int(np.argmax([c.mean() for c in cells]))
        top = attention[t].max()
        assert attention[t, brightest] >= top - 0.1 * top, (t, brightest, int(attention[t].argmax()))
        checked += 1
    assert checked == 3


def test_replay_with_saliency_and_sha_check(recorded, tmp_path):
    episode_dir = recorded / "episode_000001.zarr"
    maps = replay.saliency_maps(Episode(episode_dir))
    assert maps.shape == (70, 128, 128) and maps.max() == pytest.approx(1.0) and maps.min() >= 0
    other_model, other_weights = fixture_paths("steve1_tiny")
    with pytest.raises(ValueError, match="sha256 differs"):
        replay.saliency_maps(Episode(episode_dir), other_model, other_weights)


def test_cli_record_replay_summary(tmp_path):
    out = tmp_path / "cli_run"
    entrypoint(["record", "--model", str(MODEL), "--weights", str(WEIGHTS), "--out", str(out), "--n-episodes", "1",
                "--n-steps", "20", "--n-envs", "1", "env:blockworld", "--env.height", "64", "--env.width", "64",
                "--scene", "villager_under_leaves"])  # fmt: skip
    episode = out / "episode_000000.zarr"
    assert Episode(episode).attrs["scene"]["name"] == "villager_under_leaves"
    entrypoint(["replay", str(episode), "--out", str(tmp_path / "r.mp4")])
    assert len(_decode(tmp_path / "r.mp4")) == 20
    entrypoint(["summary", str(episode), "--out", str(tmp_path / "s.png")])
    assert (tmp_path / "s.png").stat().st_size > 10_000


def test_agent_from_the_zoo_or_files(tmp_path):
    with pytest.raises(ValueError, match="--zoo"):
        recorder.RecordConfig(out=tmp_path / "x")
    with pytest.raises(FileNotFoundError, match="vptlens download foundation-model-2x"):
        recorder.Recorder(recorder.RecordConfig(zoo="foundation-model-2x", checkpoint_dir=tmp_path, out=tmp_path / "x"))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_flushes_and_marks_partial(tmp_path, signum):
    out = tmp_path / "interrupted"
    process = _record_in_subprocess(out, 5000)
    try:
        _wait_for_commit(out / "episode_000000.zarr", 64)
        process.send_signal(signum)
        assert process.wait(timeout=60) == 130
    finally:
        if process.poll() is None:
            process.kill()
    episode = Episode(out / "episode_000000.zarr")
    assert episode.status == "partial" and len(episode) >= 64  # the buffered tail was flushed too
    assert episode.attrs["interrupted_by"] == "interrupted"
    assert Run(out).manifest.episodes[0].status == "partial"
    assert episode.attrs["n_steps"] == len(episode)  # everything handed over was written before exit


def test_a_failed_write_stops_the_recording_with_a_clear_error(tmp_path, monkeypatch):
    original, calls = EpisodeWriter._write_block, []

    async def failing(self, start, stop, block):
        calls.append(start)
        if start >= 64:
            raise OSError(28, "No space left on device")
        await original(self, start, stop, block)

    monkeypatch.setattr(EpisodeWriter, "_write_block", failing)
    out = tmp_path / "full_disk"
    with pytest.raises(WriterError, match="No space left on device"):
        recorder.Recorder(_cfg(out, n_episodes=1, n_envs=1, n_steps=300)).run()
    episode = Episode(out / "episode_000000.zarr")
    assert len(episode) == 64 and episode.status == "partial"  # the failed block was never committed
    assert episode.attrs["n_steps"] == 64 and "writer failed" in episode.attrs["interrupted_by"]
    entry = Run(out).manifest.episodes[0]
    assert entry.status == "partial" and entry.length == 64
    assert calls[:2] == [0, 64]
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]  # no temporary files left


def test_a_full_disk_is_one_line_from_the_command(tmp_path, monkeypatch, capsys):
    async def failing(self, start, stop, block):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(EpisodeWriter, "_write_block", failing)
    out = tmp_path / "full_disk"
    args = ["record", "--model", str(MODEL), "--weights", str(WEIGHTS), "--out", str(out), "--n-episodes", "1"]
    with pytest.raises(SystemExit) as exit_info:
        entrypoint(
            [*args, "--n-envs", "1", "--n-steps", "80", "env:blockworld", "--env.height", "32", "--env.width", "32"]
        )
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 1 and "Traceback" not in "\n".join(err)
    assert err[-1].startswith("vptlens: error: writing episodes failed") and "No space left on device" in err[-1]
    assert Episode(out / "episode_000000.zarr").status == "partial"


def test_episode_lists_every_array(recorded):
    names = Episode(recorded / "episode_000000.zarr").names()
    assert "action/minerl/hotbar.9" in names and "activations/img.hook_out" in names and "frames_full" in names
    assert len([n for n in names if n.startswith("action/minerl/")]) == 24  # 23 keys and the camera


def test_guided_steve1_recording_stores_the_conditional_stream(tmp_path):
    """With classifier-free guidance the policy caches 2B rows (conditional, unconditional): each env keeps its own
    conditional row, as a guided re-run of that episode alone computes it."""
    out = tmp_path / "guided"
    goal = record_guided_steve1(out, goal_seed=1, cond_scale=3.0, n_episodes=2, n_envs=2, n_steps=12, seed=4,
                                hooks=("blocks.0.hook_resid_post",))  # fmt: skip
    from vptlens.agents import load_policy
    from vptlens.agents.distributions import log_prob

    policy = load_policy(*fixture_paths("steve1_tiny"))
    episode = Episode(out / "episode_000001.zarr")  # the second row of the batch
    frames = torch.from_numpy(np.asarray(episode["frames"][:]))
    state = policy.initial_state(1, guided=True)
    for t in range(len(episode)):
        result, state, cache = policy.run_with_cache(
            frames[t : t + 1],
            torch.tensor([t == 0]),
            state,
            names="blocks.0.hook_resid_post",
            goal=torch.from_numpy(goal)[None],
            cond_scale=3.0,
        )
        two = cache["blocks.0.hook_resid_post"]
        assert two.shape[0] == 2 and not torch.allclose(two[0], two[1])  # the streams differ after the goal
        np.testing.assert_allclose(
            episode["activations/blocks.0.hook_resid_post"][t].astype(np.float32),
            cache["blocks.0.hook_resid_post"][0].numpy(),
            atol=2e-3,
            rtol=2e-3,
        )
        buttons = torch.from_numpy(np.asarray(episode["action/buttons"][t : t + 1])).long()
        camera = torch.from_numpy(np.asarray(episode["action/camera"][t : t + 1])).long()
        assert abs(float(log_prob(result, buttons, camera)[0]) - float(episode["log_prob"][t])) < 1e-4


def test_an_interrupt_inside_compiled_code_counts_as_an_interrupt():
    """numba turns a Ctrl-C during its calls into SystemError("... returned a result with an exception set")."""
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as inner:
            raise SystemError("CPUDispatcher(render) returned a result with an exception set") from inner
    except SystemError as e:
        assert recorder._caused_by_interrupt(e)
    assert not recorder._caused_by_interrupt(ValueError("a real failure"))


def _small(out: Path, **kw) -> recorder.RecordConfig:
    return _cfg(out, **{"n_episodes": 2, "n_steps": 20, "n_envs": 1, "env": BlockWorldConfig(32, 32), **kw})


def test_resume_refuses_to_mix_two_recordings_and_lists_every_difference(tmp_path):
    out = tmp_path / "run"
    recorder.main(_small(out, n_episodes=1))
    before = sorted(p.name for p in out.iterdir())
    other_weights = tmp_path / "other.weights"
    state = torch.load(WEIGHTS, weights_only=True)
    state = {k: (v + 0.01 if v.is_floating_point() else v) for k, v in state.items()}
    torch.save(state, other_weights)
    cfg = recorder.RecordConfig(
        model=MODEL, weights=other_weights, out=out, n_episodes=2, n_steps=20, n_envs=1,
        env=BlockWorldConfig(32, 32), seed=5, scene="tree_at_spot", resume=True,
    )  # fmt: skip
    with pytest.raises(ValueError, match="mix two different recordings") as err:
        recorder.main(cfg)
    message = str(err.value)
    assert "n_episodes" in message and "scene" in message and "weights file differs" in message
    assert "n_steps" not in message
    assert sorted(p.name for p in out.iterdir()) == before  # nothing written or removed


def test_resume_never_deletes_what_it_cannot_read(tmp_path, caplog):
    out = tmp_path / "run"
    recorder.main(_small(out))
    alien = out / "episode_000001.zarr"
    group = zarr.open_group(str(alien), mode="r+")
    group.attrs["schema_version"] = 2  # written by a newer vpt-lens
    summary = recorder.main(_small(out, resume=True))
    moved = out / "quarantine" / "episode_000001.zarr"
    assert zarr.open_group(str(moved), mode="r").attrs["schema_version"] == 2  # kept, untouched
    assert "schema version 2" in (out / "quarantine" / "episode_000001.zarr.why.txt").read_text()
    assert "moved to" in caplog.text and str(moved) in caplog.text
    assert summary["complete"] == 2 and Episode(alien).status == "complete"  # recorded again from its seed
    assert len(Run.open(out).episodes()) == 2  # the quarantine is not part of the run


def test_resume_repairs_a_manifest_that_fell_behind_and_redoes_a_half_created_episode(tmp_path):
    out = tmp_path / "run"
    recorder.main(_small(out))
    manifest = json.loads((out / "run.json").read_text())
    manifest["episodes"]["0"].update(status="recording", length=None)  # killed before run.json was rewritten
    del manifest["episodes"]["1"]
    (out / "run.json").write_text(json.dumps(manifest))
    length = len(Episode(out / "episode_000000.zarr"))
    summary = recorder.main(_small(out, resume=True))
    assert summary["complete"] == 2 and summary["steps"] == 2 * length
    entries = Run.open(out).manifest.episodes
    assert entries[0].status == entries[1].status == "complete" and entries[1].length == length
    # a writer killed while creating episode 1 leaves a group without its schema attributes: recorded again
    half = out / "episode_000001.zarr"
    zarr.open_group(str(half), mode="w", zarr_format=3)
    summary = recorder.main(_small(out, resume=True))
    assert summary["complete"] == 2 and Episode(half).status == "complete" and len(Episode(half)) == length
