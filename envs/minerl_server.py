"""The MineRL side of vpt-lens's bridge: a single-file server run by MineRL's own interpreter.

MineRL 1.0 pins numpy<1.24 and gym<=0.23, so it cannot share an interpreter with vpt-lens
(numpy 2, gymnasium 1). vpt-lens starts this script as a subprocess of the interpreter the
user names and talks to it over the subprocess's stdin and stdout. The script needs only the
standard library, numpy and minerl, and runs on Python 3.8 to 3.11.

Protocol (version 1). Every message, both ways, is one frame:

    b"VPTL" | header length (uint32, big-endian) | payload length (uint32, big-endian)
           | header: UTF-8 JSON object | payload: raw bytes (an observation's pov, or empty)

Requests carry `op`; replies carry `ok` (true, or false with `error` and `traceback`).

    hello  {protocol}                        -> {protocol, server_version, python, minerl, numpy}
    make   {env_id, chat}                    -> {settings: {resolution, fov_range, ...}, action_keys}
    reset  {seed, commands, wait_ticks}      -> observation (the seed reaches env.seed() first)
    step   {action}                          -> observation, reward, done, info
    chat   {command}                         -> observation (one game tick with the chat action)
    close  {}                                -> {} and the server exits

An observation reply: {obs: {every non-pov field, JSON}, pov: {shape, dtype}, reward, done,
info} with the pov's bytes as payload. Anything the game prints goes to stderr, so stdout
carries only frames; vpt-lens keeps the tail of stderr for error messages.

    python minerl_server.py [--game-factory minerl | minestudio | module:function]

`--game-factory` says what makes the game: `minerl` (default: MineRL 1.0, HumanSurvival with
a chat action added, or any registered MineRL id), `minestudio` (MineStudio's simulator, in
an interpreter where MineStudio is installed), or a function returning an old-gym (4-tuple
step) env. Tests use the last to put a test double behind the real server.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import struct
import sys
import time
import traceback

PROTOCOL_VERSION = 1
SERVER_VERSION = "1.0"
MAGIC = b"VPTL"
_PREFIX = struct.Struct(">4sII")
MAX_HEADER_BYTES = 64 * 1024 * 1024
MAX_PAYLOAD_BYTES = 1024 * 1024 * 1024


class ProtocolError(RuntimeError):
    """A frame that does not follow the protocol."""


def write_message(stream, header, payload=b""):
    """Write one frame and flush."""
    data = json.dumps(header, separators=(",", ":")).encode("utf-8")
    stream.write(_PREFIX.pack(MAGIC, len(data), len(payload)) + data + bytes(payload))
    stream.flush()


def decode_prefix(prefix):
    """(header length, payload length) of a frame's 12-byte prefix."""
    magic, n_header, n_payload = _PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise ProtocolError("bad frame magic %r: the other side is not a vpt-lens bridge" % (magic,))
    if n_header > MAX_HEADER_BYTES or n_payload > MAX_PAYLOAD_BYTES:
        raise ProtocolError("frame too large (header %d, payload %d bytes)" % (n_header, n_payload))
    return n_header, n_payload


def read_message(stream):
    """Read one frame: (header dict, payload bytes); None at end of stream."""
    prefix = stream.read(_PREFIX.size)
    if not prefix:
        return None
    if len(prefix) < _PREFIX.size:
        raise ProtocolError("stream ended inside a frame prefix")
    n_header, n_payload = decode_prefix(prefix)
    header = stream.read(n_header)
    payload = stream.read(n_payload) if n_payload else b""
    if len(header) < n_header or len(payload) < n_payload:
        raise ProtocolError("stream ended inside a frame")
    return json.loads(header.decode("utf-8")), payload


def _jsonable(value):
    """numpy values and nested dicts of them -> JSON-able Python values."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def make_minerl_env(env_id="HumanSurvival", chat=True):
    """A MineRL 1.0 env; HumanSurvival gets MineRL's ChatAction so scene commands can be sent."""
    import gym
    import minerl  # noqa: F401  (registers the MineRL envs)

    if env_id == "HumanSurvival" and chat:
        from minerl.herobraine.env_specs.human_survival_specs import HumanSurvival
        from minerl.herobraine.hero import handlers

        class HumanSurvivalWithChat(HumanSurvival):
            """VPT's env (640x360, fov 70, gamma 2, gui scale 1) plus the chat action for commands."""

            def __init__(self):
                super().__init__(name="HumanSurvivalWithChat-v0", max_episode_steps=None)

            def create_actionables(self):
                return super().create_actionables() + [handlers.ChatAction()]

        return HumanSurvivalWithChat().make()
    return gym.make(env_id)


class MineStudioGame(object):
    """MineStudio's simulator (gymnasium, its own MineRL fork) behind the same old-gym interface.

    MineStudio's `MinecraftSim` makes HumanSurvival with VPT's settings, and its MineRL fork
    runs commands with `execute_cmd`; observations come back in `info` (pov at 640x360).
    """

    def __init__(self, chat=True):
        from minestudio.simulator import MinecraftSim

        self.sim = MinecraftSim(action_type="env", obs_size=(640, 360), render_size=(640, 360), num_empty_frames=20)
        self.task = getattr(self.sim.env, "task", None)
        self.action_space = self.sim.env.action_space
        self.chat = chat

    def seed(self, seed):
        self.sim.env.seed(seed)

    @staticmethod
    def _obs(info):
        return {k: v for k, v in info.items() if k in ("pov", "inventory", "location_stats", "life_stats")}

    def reset(self):
        _, info = self.sim.reset()
        return self._obs(info)

    def step(self, action):
        action = dict(action)
        command = action.pop("chat", "")
        if command:
            self.sim.env.execute_cmd(command)
        _, reward, terminated, truncated, info = self.sim.step(action)
        return self._obs(info), reward, bool(terminated or truncated), {k: v for k, v in info.items() if k != "pov"}

    def close(self):
        self.sim.close()


def make_minestudio_env(env_id="HumanSurvival", chat=True):
    if env_id != "HumanSurvival":
        raise ValueError("the MineStudio backend runs HumanSurvival only, not %r" % (env_id,))
    return MineStudioGame(chat=chat)


def _settings(env):
    task = getattr(env, "task", None) or getattr(getattr(env, "unwrapped", None), "task", None)
    settings = {}
    for key in ("resolution", "fov_range", "gamma_range", "guiscale_range", "cursor_size_range"):
        if task is not None and hasattr(task, key):
            settings[key] = _jsonable(getattr(task, key))
    return settings


def _action_keys(env):
    spaces = getattr(env.action_space, "spaces", {})
    return sorted(str(k) for k in spaces)


class Server:
    def __init__(self, factory):
        self.factory = factory
        self.env = None
        self.chat = False

    def obs_reply(self, obs, reward=0.0, done=False, info=None):
        obs = dict(obs)
        pov = obs.pop("pov")
        import numpy as np

        pov = np.ascontiguousarray(pov, dtype=np.uint8)
        header = {
            "ok": True,
            "obs": _jsonable(obs),
            "pov": {"shape": list(pov.shape), "dtype": "uint8"},
            "reward": float(reward),
            "done": bool(done),
            "info": _jsonable(info or {}),
        }
        return header, pov.tobytes()

    def noop(self):
        space = self.env.action_space
        for name in ("noop", "no_op"):  # MineRL 1.0 and MineStudio's fork name it differently
            if hasattr(space, name):
                return dict(getattr(space, name)())
        raise RuntimeError("the env's action space has no noop(); cannot make a no-op action")

    def send_chat(self, command):
        if not self.chat:
            raise RuntimeError("this env has no chat action; make it with chat=true (HumanSurvival) to send commands")
        action = self.noop()
        action["chat"] = command
        return self.env.step(action)

    def handle(self, request):
        op = request.get("op")
        if op == "hello":
            if request.get("protocol") != PROTOCOL_VERSION:
                raise ProtocolError(
                    "protocol version %r requested, this server speaks %d; install the same vpt-lens version "
                    "on both sides" % (request.get("protocol"), PROTOCOL_VERSION)
                )
            versions = {"python": platform.python_version()}
            for name in ("minerl", "numpy"):
                try:
                    versions[name] = importlib.import_module(name).__version__
                except Exception as e:  # report, do not fail: doctor and tests use this too
                    versions[name] = "unavailable (%s)" % type(e).__name__
            return dict(ok=True, protocol=PROTOCOL_VERSION, server_version=SERVER_VERSION, **versions), b""
        if op == "make":
            self.chat = bool(request.get("chat", True))
            self.env = self.factory(request.get("env_id", "HumanSurvival"), self.chat)
            return {"ok": True, "settings": _settings(self.env), "action_keys": _action_keys(self.env)}, b""
        if self.env is None:
            raise RuntimeError("send 'make' before %r" % (op,))
        if op == "reset":
            self.env.seed(int(request["seed"]))  # MineRL needs the seed before every reset
            obs = self.env.reset()
            reward, done, info = 0.0, False, {}
            for command in request.get("commands", []):
                obs, reward, done, info = self.send_chat(command)
            for _ in range(int(request.get("wait_ticks", 0))):  # let the game apply the commands
                obs, reward, done, info = self.env.step(self.noop())
            return self.obs_reply(obs, reward, done, info)
        if op == "step":
            action = self.noop()
            action.update(request["action"])
            if "camera" in action:
                import numpy as np

                action["camera"] = np.asarray(action["camera"], dtype=np.float32)
            return self.obs_reply(*self.env.step(action))
        if op == "chat":
            return self.obs_reply(*self.send_chat(request["command"]))
        if op == "close":
            if self.env is not None:
                self.env.close()
                self.env = None
            return {"ok": True}, b""
        raise ProtocolError("unknown op %r" % (op,))


def _load_factory(spec):
    if not spec or spec == "minerl":
        return make_minerl_env
    if spec == "minestudio":
        return make_minestudio_env
    module_name, _, function = spec.partition(":")
    return getattr(importlib.import_module(module_name), function)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    factory_spec = None
    if "--game-factory" in argv:
        factory_spec = argv[argv.index("--game-factory") + 1]
    # Frames go to the real stdout; anything else printed (by the game, by Malmo) goes to stderr.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    stdin = sys.stdin.buffer
    server = Server(_load_factory(factory_spec))
    sys.stderr.write(
        "vptlens minerl server %s (protocol %d) ready, pid %d\n" % (SERVER_VERSION, PROTOCOL_VERSION, os.getpid())
    )
    sys.stderr.flush()
    while True:
        try:
            message = read_message(stdin)
        except ProtocolError as e:
            write_message(out, {"ok": False, "error": str(e), "traceback": ""})
            return 2
        if message is None:
            return 0
        request, _ = message
        started = time.time()
        try:
            header, payload = server.handle(request)
        except Exception as e:
            header, payload = (
                {"ok": False, "error": "%s: %s" % (type(e).__name__, e), "traceback": traceback.format_exc()},
                b"",
            )
        header["elapsed_s"] = time.time() - started
        write_message(out, header, payload)
        if request.get("op") == "close":
            return 0


if __name__ == "__main__":
    sys.exit(main())
