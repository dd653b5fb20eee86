"""Real Minecraft through MineRL 1.0, run by its own interpreter behind `minerl_server.py`.

`MineRLEnv` is a Gymnasium 1.x env with BlockWorld's observation and action spaces. It
starts the server as a subprocess of the interpreter named by `MineRLConfig.python` (or
the `VPTLENS_MINERL_PYTHON` environment variable), checks the protocol version, makes
the game, and on `reset(seed=..., options={"scene": ...})` seeds it, sends the scene's
Minecraft commands as chat and waits the ticks the game needs. Every call has a timeout.
If the server or the game dies, the env raises `MineRLServerError` carrying the tail of
the server's stderr, reaps the process (no zombies), and the next `reset()` starts a fresh
server.
"""

import contextlib
import json
import logging
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import gymnasium as gym
import numpy as np
import tyro

from vptlens.envs.blockworld.env import BlockWorldEnv
from vptlens.envs.minerl_server import PROTOCOL_VERSION, ProtocolError, decode_prefix, write_message
from vptlens.minerl_spec import CAMERA_KEY, MINERL_BUTTONS

logger = logging.getLogger(__name__)

SERVER_SCRIPT = Path(__file__).with_name("minerl_server.py")
PYTHON_ENV_VAR = "VPTLENS_MINERL_PYTHON"

VPT_SETTINGS = {
    "resolution": [640, 360],
    "fov_range": [70, 70],
    "gamma_range": [2, 2],
    "guiscale_range": [1, 1],
    "cursor_size_range": [16.0, 16.0],
}
"""The game settings VPT was trained with (OpenAI's `ENV_KWARGS`, as its `validate_env` checks them)."""


class MineRLServerError(RuntimeError):
    """The MineRL server or the game failed; the message carries the tail of its stderr."""


def check_vpt_settings(settings: dict, action_keys: list[str]) -> list[str]:
    """Differences from VPT's settings and action space, one line each (empty when the env matches)."""
    problems = []
    for key, expected in VPT_SETTINGS.items():
        got = settings.get(key)
        if got is None:
            problems.append(f"{key}: not reported by the env (expected {expected})")
        elif [float(v) for v in np.ravel(got)] != [float(v) for v in expected]:
            problems.append(f"{key}: {got} (VPT expects {expected})")
    missing = sorted((set(MINERL_BUTTONS) | {CAMERA_KEY}) - set(action_keys))
    if missing:
        problems.append(f"action space lacks {', '.join(missing)}")
    return problems


@dataclass(frozen=True)
class MineRLConfig:
    """Where MineRL lives and how to talk to it."""

    python: str = field(default_factory=lambda: os.environ.get(PYTHON_ENV_VAR, ""))
    """The interpreter with minerl installed (default: $VPTLENS_MINERL_PYTHON)."""
    env_id: str = "HumanSurvival"
    """HumanSurvival (VPT's setting, with a chat action added for scenes) or a MineRL id (e.g. a BASALT task)."""
    chat: bool = True
    """Add MineRL's chat action (needed for scene commands)."""
    scene_wait_ticks: int = 20
    """No-op ticks after a scene's commands before the first observation."""
    start_timeout_s: float = 600.0
    """Building and launching Minecraft can take minutes the first time."""
    call_timeout_s: float = 120.0
    """Any other call (a reset takes the longest)."""
    strict_settings: bool = True
    """Refuse an env whose settings differ from VPT's (else warn)."""
    max_steps: int = 36000
    """Ticks before the episode is truncated (30 minutes)."""
    game_factory: str | None = None
    """What makes the game inside the server: None or 'minerl' (MineRL 1.0), 'minestudio' (MineStudio's
    simulator, in an interpreter that has it), or module:function (tests put a test double here)."""
    server_env: dict = field(default_factory=dict)
    """Extra environment variables for the server process (e.g. DISPLAY)."""

    @property
    def height(self) -> int:
        """Frame height: VPT's 360 (the env refuses other resolutions unless strict_settings is off)."""
        return VPT_SETTINGS["resolution"][1]

    @property
    def width(self) -> int:
        """Frame width: VPT's 640."""
        return VPT_SETTINGS["resolution"][0]

    def command(self) -> list[str]:
        if not self.python:
            raise ValueError(
                "no MineRL interpreter configured: set MineRLConfig(python=...) or the environment variable "
                f"{PYTHON_ENV_VAR} to the python of a MineRL 1.0 environment (see README, 'Real Minecraft'; "
                "`vptlens doctor minerl` checks it)"
            )
        cmd = [self.python, "-u", str(SERVER_SCRIPT)]
        return cmd + (["--game-factory", self.game_factory] if self.game_factory else [])


class MineRLBridge:
    """One server process and the framed request/reply conversation with it."""

    def __init__(self, config: MineRLConfig):
        self.config = config
        command = config.command()
        fd, stderr_path = tempfile.mkstemp(prefix="vptlens-minerl-", suffix=".log")
        self.stderr_path = Path(stderr_path)
        try:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=fd,
                env={**os.environ, **config.server_env},
                start_new_session=True,  # a Ctrl-C in the harness does not kill the game mid-write
            )
        finally:
            os.close(fd)
        self.server_info, _ = self.call({"op": "hello", "protocol": PROTOCOL_VERSION}, timeout=config.start_timeout_s)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def stderr_tail(self, n_chars: int = 4000) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-n_chars:]
        except OSError:
            return ""

    def _read_exact(self, n: int, deadline: float) -> bytes:
        fd = self.process.stdout.fileno()
        chunks, got = [], 0
        while got < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                raise TimeoutError
            chunk = os.read(fd, min(n - got, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def call(self, request: dict, timeout: float | None = None) -> tuple[dict, bytes]:
        """Send a request and wait for its reply; any failure kills the server and raises MineRLServerError."""
        timeout = self.config.call_timeout_s if timeout is None else timeout
        op = request.get("op")
        try:
            write_message(self.process.stdin, request)
            deadline = time.monotonic() + timeout
            n_header, n_payload = decode_prefix(self._read_exact(12, deadline))
            header = json.loads(self._read_exact(n_header, deadline).decode("utf-8"))
            payload = self._read_exact(n_payload, deadline) if n_payload else b""
        except TimeoutError:
            self.kill()
            raise MineRLServerError(
                f"MineRL server gave no reply to '{op}' within {timeout:.0f} s; it was stopped. "
                f"Its stderr ends with:\n{self.stderr_tail()}"
            ) from None
        except (EOFError, BrokenPipeError, ConnectionError, ProtocolError, OSError, ValueError) as e:
            self.kill()
            code = self.process.returncode
            raise MineRLServerError(
                f"MineRL server died during '{op}' (exit code {code}, {type(e).__name__}). "
                f"Its stderr ends with:\n{self.stderr_tail()}"
            ) from None
        if not header.get("ok", False):
            if op == "hello":
                self.kill()
            raise MineRLServerError(
                f"MineRL server refused '{op}': {header.get('error')}\n{header.get('traceback', '')}"
            )
        return header, payload

    def kill(self) -> None:
        """Stop the server and its game, and reap them (no zombies)."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, 9)  # the game's java processes are in the same session
            except (ProcessLookupError, PermissionError):
                self.process.kill()
        self.process.wait(timeout=30)
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                stream.close()

    def close(self) -> None:
        if self.alive:
            try:
                self.call({"op": "close"}, timeout=60.0)
                self.process.wait(timeout=30)
            except (MineRLServerError, subprocess.TimeoutExpired):
                pass
            else:
                self.stderr_path.unlink(missing_ok=True)  # kept only when something went wrong
        self.kill()


class MineRLEnv(gym.Env):
    """Real Minecraft with BlockWorld's spaces: `reset(seed=..., options={"scene": ...})`, `step(action)`."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, config: MineRLConfig | None = None, render_mode: str | None = "rgb_array", **overrides):
        self.config = MineRLConfig(**overrides) if config is None else config
        self.render_mode = render_mode
        reference = BlockWorldEnv(height=360, width=640)
        self.observation_space = reference.observation_space
        self.action_space = reference.action_space
        self.bridge: MineRLBridge | None = None
        self.settings: dict = {}
        self._steps = 0
        self._pov = None

    def _start(self) -> None:
        if self.bridge is not None:
            self.bridge.kill()
        self.bridge = MineRLBridge(self.config)
        header, _ = self.bridge.call(
            {"op": "make", "env_id": self.config.env_id, "chat": self.config.chat}, timeout=self.config.start_timeout_s
        )
        self.settings = header["settings"]
        problems = check_vpt_settings(self.settings, header["action_keys"])
        if problems:
            message = "the MineRL env differs from VPT's settings:\n  " + "\n  ".join(problems)
            if self.config.strict_settings:
                self.bridge.close()
                raise ValueError(message + "\nUse HumanSurvival, or pass strict_settings=False to run anyway.")
            logger.warning(message)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if self.bridge is None or not self.bridge.alive:
            self._start()
        commands = []
        scene = (options or {}).get("scene")
        if scene is not None:
            from vptlens.envs.scenes import as_scene

            scene = as_scene(scene)
            commands = scene.to_commands()
        game_seed = int(self.np_random.integers(0, 2**31 - 1))
        header, payload = self.bridge.call(
            {
                "op": "reset",
                "seed": game_seed,
                "commands": commands,
                "wait_ticks": self.config.scene_wait_ticks if commands else 0,
            }
        )
        self._steps = 0
        obs, info = self._convert(header, payload)
        info["game_seed"] = game_seed
        if scene is not None:
            info["scene"] = {"name": scene.name, "commands": commands}
        return obs, info

    def step(self, action: dict):
        if self.bridge is None:
            raise RuntimeError("call reset() before step()")
        wire = {k: int(action[k]) for k in MINERL_BUTTONS if k in action}
        wire[CAMERA_KEY] = [float(v) for v in np.asarray(action.get(CAMERA_KEY, (0.0, 0.0))).reshape(2)]
        header, payload = self.bridge.call({"op": "step", "action": wire})
        self._steps += 1
        obs, info = self._convert(header, payload)
        truncated = self._steps >= self.config.max_steps
        return obs, float(header["reward"]), bool(header["done"]), truncated, info

    def chat(self, command: str) -> dict:
        """Send one chat message or command (one game tick); returns the info of that tick."""
        header, payload = self.bridge.call({"op": "chat", "command": command})
        return self._convert(header, payload)[1]

    def render(self):
        return self._pov

    def close(self) -> None:
        if self.bridge is not None:
            self.bridge.close()
            self.bridge = None

    def _convert(self, header: dict, payload: bytes) -> tuple[dict, dict]:
        shape = tuple(header["pov"]["shape"])
        pov = np.frombuffer(payload, np.uint8).reshape(shape).copy()
        self._pov = pov
        raw = header["obs"]
        inventory = raw.get("inventory", {})
        location = raw.get("location_stats", {})
        life = raw.get("life_stats", {})
        f = lambda d, k: np.array(float(np.ravel(d.get(k, 0.0))[0]) if k in d else 0.0, np.float64)
        obs = {
            "pov": pov,
            "inventory": {
                item: np.array(int(np.ravel(inventory.get(item, 0))[0]), np.int64)
                for item in self.observation_space["inventory"].spaces
            },
            "location_stats": {k: f(location, k) for k in ("xpos", "ypos", "zpos", "pitch", "yaw")},
            "life_stats": {k: f(life, k) for k in ("life", "food")},
        }
        info = {"minerl_info": header.get("info", {}), "minerl_obs": raw, "step": self._steps}
        return obs, info


_PROBE = """\
import importlib, json, platform
out = {"python": platform.python_version()}
for name in ("minerl", "numpy", "gym"):
    try:
        module = importlib.import_module(name)
    except Exception as e:
        out[name] = None
        out[name + "_error"] = repr(e)[:300]
        continue
    version = getattr(module, "__version__", None)
    if version is None:
        try:
            from importlib.metadata import version as metadata_version
            version = metadata_version(name)
        except Exception:
            version = "unknown version"
    out[name] = str(version)
print(json.dumps(out))
"""
"""Run by the MineRL interpreter (Python 3.8+): its version and those of minerl, numpy and gym, as one JSON line."""


def _version_tuple(text: str | None) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text or "")[:2])


def doctor(python: str | None = None) -> tuple[bool, str]:
    """Check a MineRL installation: interpreter, its Python, minerl, numpy, gym, Java 8, a display or xvfb.

    Every item is checked even when another is missing (the import checks need the interpreter: without
    it they read "not checked"). Returns (ok, report); the report ends with everything missing at once.
    """
    python = python or os.environ.get(PYTHON_ENV_VAR, "")
    lines: list[str] = []
    missing: list[str] = []

    def check(good: bool, what: str, fix: str) -> None:
        lines.append(f"[{'ok' if good else 'MISSING'}] {what}" + ("" if good else f"\n      fix: {fix}"))
        if not good:
            missing.append(what)

    # the interpreter, and what it can import
    versions, why_not = None, "no interpreter"
    if not python:
        check(
            False, "MineRL interpreter", f"set {PYTHON_ENV_VAR}=/path/to/minerl-env/bin/python (README: Real Minecraft)"
        )
    else:
        try:
            done = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=120)
            versions = json.loads(done.stdout.strip().splitlines()[-1])
        except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError, IndexError) as e:
            why_not = f"no interpreter ({python} does not run)"
            detail = type(e).__name__ if isinstance(e, OSError | subprocess.TimeoutExpired) else "no version report"
            check(False, f"interpreter {python} runs ({detail})", f"point {PYTHON_ENV_VAR} at a working python")
        else:
            check(True, f"interpreter {python} runs", "")
    if versions is None:
        for what in ("Python 3.8-3.11", "minerl 1.x importable", "numpy < 1.24 importable", "gym importable"):
            lines.append(f"[not checked] {what}: {why_not}")
    else:
        py = versions["python"]
        check((3, 8) <= _version_tuple(py) <= (3, 11), f"Python {py} (MineRL 1.0 needs 3.8-3.11)",
              "make the MineRL env with python 3.10")  # fmt: skip
        minerl = versions.get("minerl")
        check(minerl is not None and minerl.startswith("1."), f"minerl {minerl or 'not importable'} (needs 1.x)",
              "pip install git+https://github.com/minerllabs/minerl (needs JDK 8)")  # fmt: skip
        numpy = versions.get("numpy")
        numpy_ok = numpy is not None and _version_tuple(numpy) < (1, 24)
        check(
            numpy_ok, f"numpy {numpy or 'not importable'} (needs < 1.24)", "pip install 'numpy<1.24' in the MineRL env"
        )
        gym_version = versions.get("gym")
        check(gym_version is not None, f"gym {gym_version or 'not importable'}",
              "pip install gym in the MineRL env (minerl installs it)")  # fmt: skip

    # the machine
    java, java_version = shutil.which("java"), ""
    if java:
        try:
            done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
            java_version = next(iter((done.stderr or done.stdout).splitlines()), "")
        except (OSError, subprocess.TimeoutExpired) as e:
            java_version = f"{java} does not run ({type(e).__name__})"
    check('"1.8' in java_version, f"Java 8 on PATH ({java_version or 'no java on PATH'})",
          "install OpenJDK 8 (e.g. apt install openjdk-8-jdk) and put it first on PATH")  # fmt: skip
    display = os.environ.get("DISPLAY")
    xvfb = shutil.which("xvfb-run") or shutil.which("Xvfb")
    check(bool(display or xvfb), f"a display or xvfb ({f'DISPLAY={display}' if display else xvfb or 'neither found'})",
          "apt install xvfb, then run vptlens under xvfb-run")  # fmt: skip

    lines.append(f"python used: {sys.executable} (vpt-lens); MineRL server: {python or '?'} {SERVER_SCRIPT}")
    if missing:
        lines.append(f"{len(missing)} missing: " + "; ".join(missing))
    return not missing, "\n".join(lines)


@dataclass(frozen=True)
class DoctorConfig:
    """Check what real Minecraft needs (`vptlens doctor minerl`): each item ok or MISSING with its fix; exit 1 if any
    is missing."""

    target: tyro.conf.Positional[Literal["minerl"]] = "minerl"
    """What to check: minerl (the default, and the only target for now)."""
    python: str | None = None
    """The MineRL interpreter (default: $VPTLENS_MINERL_PYTHON)."""


def doctor_main(cfg: DoctorConfig) -> bool:
    ok, report = doctor(cfg.python)
    print(report)
    if not ok:
        print("Fix the MISSING items above, then run this again.")
        raise SystemExit(1)
    print("MineRL looks ready.")
    return ok
