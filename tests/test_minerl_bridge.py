"""The MineRL bridge: the real server script in a subprocess, a test double of the game behind it."""

import io
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

from vptlens.envs.minerl_env import MineRLBridge, MineRLConfig, MineRLEnv, MineRLServerError, check_vpt_settings, doctor
from vptlens.envs.minerl_server import ProtocolError, read_message, write_message
from vptlens.envs.scenes import load_builtin_scene

TESTS_DIR = str(Path(__file__).parent)


def _config(**kw):
    server_env = {"PYTHONPATH": TESTS_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""), **kw.pop("server_env", {})}
    settings = {"start_timeout_s": 60.0, "call_timeout_s": 20.0, **kw}
    return MineRLConfig(
        python=sys.executable, game_factory="minerl_fake_game:make_fake_game", server_env=server_env, **settings
    )


@pytest.fixture
def env():
    e = MineRLEnv(_config())
    yield e
    e.close()


def test_frames_round_trip_in_memory():
    stream = io.BytesIO()
    write_message(stream, {"op": "step", "action": {"forward": 1}}, b"\x00\x01\x02")
    write_message(stream, {"ok": True})
    stream.seek(0)
    assert read_message(stream) == ({"op": "step", "action": {"forward": 1}}, b"\x00\x01\x02")
    assert read_message(stream) == ({"ok": True}, b"")
    assert read_message(stream) is None
    with pytest.raises(ProtocolError, match="magic"):
        read_message(io.BytesIO(b"HTTP/1.1 200 OK\r\n"))


def test_handshake_reports_versions():
    bridge = MineRLBridge(_config())
    try:
        info = bridge.server_info
        assert info["protocol"] == 1 and info["python"].count(".") == 2 and info["numpy"] == np.__version__
    finally:
        bridge.close()
    assert bridge.process.returncode is not None


def test_protocol_version_mismatch_is_refused():
    bridge = MineRLBridge(_config())
    try:
        with pytest.raises(MineRLServerError, match="protocol version 99 requested"):
            bridge.call({"op": "hello", "protocol": 99})
    finally:
        bridge.kill()


def test_observations_and_actions_round_trip(env):
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    pov = obs["pov"]
    assert pov.shape == (360, 640, 3) and pov[0, 0, 0] == info["game_seed"] % 256
    np.testing.assert_array_equal(pov[0, :, 2], np.arange(640) % 256)  # bytes arrive in order
    action = {"forward": 1, "attack": 1, "hotbar.3": 1, "camera": np.array([1.5, -2.25], np.float32)}
    obs, reward, terminated, truncated, info = env.step(action)
    assert info["minerl_info"]["log"][-1] == ["step", ["attack", "forward", "hotbar.3"], [1.5, -2.25]]
    assert obs["inventory"]["oak_log"] == 1 and obs["location_stats"]["yaw"] == 90.0 and reward == 0.5
    assert env.observation_space.contains(obs) and not terminated and not truncated


def test_seed_reaches_the_game_before_every_reset(env):
    _, first = env.reset(seed=1)
    _, second = env.reset(seed=2)
    log = env.step({"camera": np.zeros(2)})[4]["minerl_info"]["log"]
    resets = [i for i, entry in enumerate(log) if entry[0] == "reset"]
    assert len(resets) == 2
    for i, game_seed in zip(resets, (first["game_seed"], second["game_seed"])):
        assert log[i - 1] == ["seed", game_seed] and log[i] == ["reset", game_seed]
    other = MineRLEnv(_config())
    try:
        _, again = other.reset(seed=1)
    finally:
        other.close()
    assert again["game_seed"] == first["game_seed"]  # the same reset seed, the same game seed


def test_scene_commands_arrive_in_order_after_reset(env):
    scene = load_builtin_scene("villager_under_leaves")
    _, info = env.reset(seed=0, options={"scene": scene})
    log = info["minerl_info"]["log"]
    chats = [entry[1] for entry in log if entry[0] == "chat"]
    assert chats == scene.to_commands()
    first_chat = next(i for i, e in enumerate(log) if e[0] == "chat")
    assert log[first_chat - 1][0] == "reset"
    assert len(log) - (first_chat + len(chats)) == env.config.scene_wait_ticks  # no-op ticks to settle


def test_timeout_gives_a_clear_error_and_stops_the_server(env):
    env.reset(seed=0)
    env.bridge.config = _config(call_timeout_s=1.0)
    process = env.bridge.process
    with pytest.raises(MineRLServerError, match="no reply to 'chat' within 1 s"):
        env.chat("/fake sleep 30")
    assert process.poll() is not None


def test_killed_server_gives_stderr_tail_and_restarts_clean(env):
    env.reset(seed=0)
    process = env.bridge.process
    os.kill(process.pid, signal.SIGKILL)
    with pytest.raises(MineRLServerError, match=r"died during 'step' \(exit code -9") as err:
        env.step({"forward": 1})
    assert "fake MineRL game started" in str(err.value)
    assert process.poll() is not None
    with pytest.raises(ChildProcessError):
        os.waitpid(process.pid, os.WNOHANG)  # reaped: no zombie left
    obs, info = env.reset(seed=0)  # a fresh server
    assert env.bridge.process.pid != process.pid and obs["pov"].shape == (360, 640, 3)


def test_game_crash_carries_the_java_message(env):
    env.reset(seed=0)
    with pytest.raises(MineRLServerError, match="exit code 134") as err:
        env.chat("/fake crash")
    assert "fatal error has been detected by the Java Runtime" in str(err.value)


def test_settings_check_names_what_differs():
    assert check_vpt_settings(
        {"resolution": [640, 360], "fov_range": [70, 70], "gamma_range": [2, 2], "guiscale_range": [1, 1],
         "cursor_size_range": [16.0, 16.0]},
        ["camera", "forward", "back", "left", "right", "jump", "sneak", "sprint", "attack", "use", "drop", "inventory",
         "ESC", *(f"hotbar.{i}" for i in range(1, 10)), "pickItem", "swapHands"],
    ) == []  # fmt: skip
    with pytest.raises(ValueError, match=r"fov_range: \[90.0, 90.0\] \(VPT expects \[70, 70\]\)"):
        MineRLEnv(_config(server_env={"FAKE_MINERL_FOV": "90"})).reset(seed=0)
    lenient = MineRLEnv(_config(server_env={"FAKE_MINERL_FOV": "90"}, strict_settings=False))
    try:
        obs, _ = lenient.reset(seed=0)
        assert obs["pov"].shape == (360, 640, 3)
    finally:
        lenient.close()


def test_missing_interpreter_is_explained(monkeypatch):
    monkeypatch.delenv("VPTLENS_MINERL_PYTHON", raising=False)
    with pytest.raises(ValueError, match="VPTLENS_MINERL_PYTHON"):
        MineRLEnv().reset(seed=0)
    ok, report = doctor(python=None)
    assert not ok and "VPTLENS_MINERL_PYTHON" in report


def test_doctor_reports_what_is_missing():
    ok, report = doctor(python=sys.executable)  # this interpreter has numpy 2 and no minerl
    assert not ok
    assert "[MISSING] minerl not importable" in report and "pip install git+https://github.com/minerllabs" in report
    assert "(needs < 1.24)" in report and "Java 8" in report


@pytest.mark.minerl
def test_real_minecraft_resets_and_steps():
    env = MineRLEnv(MineRLConfig())
    try:
        obs, info = env.reset(seed=0, options={"scene": "villager_under_leaves"})
        assert obs["pov"].shape == (360, 640, 3)
        env.step({"forward": 1, "camera": np.zeros(2)})
    finally:
        env.close()
