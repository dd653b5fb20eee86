"""The episode store's schema, typed once: the names of its arrays, the run manifest, the episode metadata.

`PROTOCOL.md` describes the same layout in prose for readers without vpt-lens; a test checks
that every field and array named here is documented there and nothing else is. Store array
names are built only in this module: everything else asks an `Episode` for
`attention(layer)`, `activation(hook)`, `action(head)`, `ground_truth(name)` and so on.

Provenance of every artifact (a run, an SAE, a report) comes from `provenance()`, so they all
carry the same keys.
"""

import dataclasses
import datetime as dt
import functools
import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import vptlens

SCHEMA_VERSION = 1
"""Bumped on any change a reader of the previous version would misread."""
EPISODE_SCHEMA = "vptlens.episode"
RUN_SCHEMA = "vptlens.run"
MANIFEST_FILE = "run.json"

# ------------------------------------------------------------------------------------------- array names

FRAMES = "frames"
FRAMES_FULL = "frames_full"
LOG_PROB = "log_prob"
VALUE = "value"
REWARD = "reward"
TERMINATED = "terminated"
TRUNCATED = "truncated"

HEADS = ("buttons", "camera")
"""The policy's two action heads: the joint button class and the camera class."""
_ATTENTION, _ACTIVATIONS, _ACTION, _MINERL, _ENTROPY, _GT = (
    "attention/L",
    "activations/",
    "action/",
    "action/minerl/",
    "entropy/",
    "gt/",
)

GROUND_TRUTH: Mapping[str, str] = {
    "pose": "numeric",
    "nearest_log": "numeric",
    "crosshair": "json",
    "visible_entities": "json",
    "events": "json",
}
"""The env's ground truth per step, by name: numeric arrays, or one JSON document per step."""


def attention_array(layer: int) -> str:
    """Block `layer`'s attention pattern, (N, heads, M+1), lag-indexed (last column = now)."""
    return f"{_ATTENTION}{int(layer)}"


def activation_array(hook: str) -> str:
    """A stored hook activation, (N, ...) as `vptlens info` prints the hook's step shape."""
    return f"{_ACTIVATIONS}{hook}"


def _head(head: str) -> str:
    if head not in HEADS:
        raise KeyError(f"action head {head!r} unknown; use one of {HEADS}")
    return head


def action_array(head: str) -> str:
    """The class taken by one action head ("buttons" or "camera")."""
    return f"{_ACTION}{_head(head)}"


def entropy_array(head: str) -> str:
    """The entropy of one action head, nats."""
    return f"{_ENTROPY}{_head(head)}"


def minerl_action_array(key: str) -> str:
    """The MineRL action sent to the env: one array per binary key, and "camera" (N, 2) degrees."""
    return f"{_MINERL}{key}"


def ground_truth_array(name: str) -> str:
    if name not in GROUND_TRUTH:
        raise KeyError(f"ground truth {name!r} unknown; the store records {sorted(GROUND_TRUTH)}")
    return f"{_GT}{name}"


def attention_layers(names: list[str]) -> list[int]:
    """The layers whose attention is among the store arrays `names`, ascending."""
    return sorted(int(n.removeprefix(_ATTENTION)) for n in names if n.startswith(_ATTENTION))


def activation_hooks(names: list[str]) -> list[str]:
    """The hooks whose activations are among the store arrays `names`, in the store's order."""
    return [n.removeprefix(_ACTIVATIONS) for n in names if n.startswith(_ACTIVATIONS)]


def minerl_action_keys(names: list[str]) -> list[str]:
    """The MineRL binary keys stored among `names` (camera excluded)."""
    keys = [n.removeprefix(_MINERL) for n in names if n.startswith(_MINERL)]
    return [k for k in keys if k != "camera"]


def array_pattern(name: str) -> str:
    """The documented pattern an array name belongs to (PROTOCOL.md's table): `attention/L{l}`, `activations/<hook>`,
    `action/minerl/<key>` for the binary keys; the name itself for the rest."""
    if name.startswith(_ATTENTION):
        return _ATTENTION + "{l}"
    if name.startswith(_ACTIVATIONS):
        return _ACTIVATIONS + "<hook>"
    if name.startswith(_MINERL) and name != minerl_action_array("camera"):
        return _MINERL + "<key>"
    return name


# ------------------------------------------------------------------------------------------- metadata


def _from_dict(cls, d: Mapping, where: str):
    """Build a dataclass from a JSON mapping: unknown keys are ignored (newer writers), missing required ones named."""
    if not isinstance(d, Mapping):
        raise ValueError(f"{where}: expected a JSON object for {cls.__name__}, got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    missing = [
        n
        for n, f in fields.items()
        if n not in d and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ValueError(f"{where}: {cls.__name__} lacks {missing}; the file was not written by `vptlens record`")
    return {n: d[n] for n in fields if n in d}


AGENT_DIR = "agent"
"""The run's own copy (hard link) of the agent's files, `RUN/agent/<file name>`; `AgentRecord` paths point there."""


@dataclass(frozen=True)
class AgentRecord:
    """The agent that acted: its files and their sha256 (None for a policy built in memory), its architecture."""

    model_path: str | None = None
    weights_path: str | None = None
    model_sha256: str | None = None
    weights_sha256: str | None = None
    config: dict = field(default_factory=dict)
    """The policy's architecture (`PolicyConfig.to_dict()`)."""
    random_init_seed: int | None = None
    """Set instead of the files for a policy with random weights built in memory (tests, benchmarks)."""
    scripted: str | None = None
    """Set instead of the files for a scripted agent (`vptlens train expert-demos`: "chopper")."""

    @classmethod
    def from_dict(cls, d: Mapping, where: str = "agent") -> "AgentRecord":
        return cls(**_from_dict(cls, d, where))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class EnvRecord:
    """Which env the episode ran in and its settings (the env config as a dict)."""

    id: str
    settings: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping, where: str = "env") -> "EnvRecord":
        return cls(**_from_dict(cls, d, where))


@dataclass(frozen=True)
class EpisodeMeta:
    """What the recorder writes into an episode group's attributes besides the store's own bookkeeping
    (`schema`, `schema_version`, `committed_length`, `status`, `start_time`, `end_time`, `n_steps`,
    `interrupted_by`: see `Episode`)."""

    episode_index: int
    seed: int
    """Run seed + index: the env's reset seed and the agent's sampling seed."""
    agent: AgentRecord
    policy_config: dict
    env: EnvRecord
    env_reset_info: dict
    scene: dict | None
    """The scene applied at reset, as in a scene file."""
    record_config: dict
    hooks: tuple[str, ...]
    """The hooks stored under `activations/`."""
    package_version: str
    git_commit: str | None
    sampling: str
    goal: tuple[float, ...] | None = None
    """STEVE-1: the goal embedding the agent was conditioned on (None for VPT, and in episodes recorded before it
    was stored: then `record_config.goal` names the .npy file)."""
    goal_source: dict | None = None
    """STEVE-1: where the goal came from (`vptlens.agents.goals.Goal.provenance`): `source` ('prompt', 'video' or
    'embedding'), the prompt and the prior's seed, or the clip and its frames, and the files with their sha256.
    None for VPT and in episodes recorded before it was stored."""
    cond_scale: float | None = None
    """STEVE-1: the classifier-free guidance scale (None: no guidance)."""
    intervention: dict | None = None
    """The activation edit applied at every step while recording (`vptlens.interventions`), or None."""

    @classmethod
    def from_dict(cls, d: Mapping, where: str = "episode") -> "EpisodeMeta":
        kw = _from_dict(cls, d, where)
        kw["agent"] = AgentRecord.from_dict(kw["agent"], f"{where}: agent")
        kw["env"] = EnvRecord.from_dict(kw["env"], f"{where}: env")
        kw["hooks"] = tuple(kw["hooks"])
        if kw.get("goal") is not None:
            kw["goal"] = tuple(float(x) for x in kw["goal"])
        if "cond_scale" not in kw:  # episodes recorded before it was its own attribute
            kw["cond_scale"] = (kw["record_config"] or {}).get("cond_scale")
        return cls(**kw)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["hooks"] = list(self.hooks)
        d["goal"] = None if self.goal is None else list(self.goal)
        return d


EPISODE_STATUSES = ("recording", "partial", "complete")
STORE_ATTRIBUTES = (
    "schema",
    "schema_version",
    "committed_length",
    "status",
    "start_time",
    "end_time",
    "n_steps",
    "interrupted_by",
)
"""Episode attributes the store itself keeps (besides `EpisodeMeta`'s): see `EpisodeWriter` and PROTOCOL.md."""


@dataclass(frozen=True)
class EpisodeEntry:
    """One episode as the run manifest lists it."""

    path: str
    """The episode's directory name inside the run."""
    seed: int
    status: str
    """recording, partial or complete (as the episode's own `status` when the manifest was written)."""
    length: int | None = None

    @classmethod
    def from_dict(cls, d: Mapping, where: str = "episode entry") -> "EpisodeEntry":
        return cls(**_from_dict(cls, d, where))


@dataclass(frozen=True)
class RunManifest:
    """`run.json`: the run's configuration, its agent, and its episodes. Rewritten atomically."""

    config: dict
    """The `RecordConfig` as JSON."""
    agent: AgentRecord
    package_version: str
    git_commit: str | None
    created: str
    """UTC ISO 8601."""
    episodes: Mapping[int, EpisodeEntry] = field(default_factory=dict)
    schema: str = RUN_SCHEMA
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def from_dict(cls, d: Mapping, where: str = MANIFEST_FILE) -> "RunManifest":
        kw = _from_dict(cls, d, where)
        if kw.get("schema") != RUN_SCHEMA:
            raise ValueError(f"{where}: not a vpt-lens run manifest (schema {kw.get('schema')!r})")
        if kw.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(
                f"{where}: run schema version {kw.get('schema_version')!r}, this vpt-lens reads version "
                f"{SCHEMA_VERSION}; use the vpt-lens version that wrote it (see recordings/PROTOCOL.md)"
            )
        kw["agent"] = AgentRecord.from_dict(kw["agent"], f"{where}: agent")
        kw["episodes"] = {
            int(i): EpisodeEntry.from_dict(e, f"{where}: episode {i}") for i, e in (kw.get("episodes") or {}).items()
        }
        return cls(**kw)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["episodes"] = {str(i): dataclasses.asdict(e) for i, e in sorted(self.episodes.items())}
        return d

    @classmethod
    def load(cls, run_dir: str | Path) -> "RunManifest":
        path = Path(run_dir) / MANIFEST_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{run_dir}: not a run directory (no {MANIFEST_FILE}); pass the --out of `vptlens record`"
            )
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e}); the run manifest is damaged") from e
        return cls.from_dict(d, str(path))

    def dump(self, run_dir: str | Path) -> None:
        write_json_atomic(Path(run_dir) / MANIFEST_FILE, self.to_dict())

    def with_episode(self, index: int, **changes) -> "RunManifest":
        """A copy with episode `index`'s entry created (path, seed, status) or updated."""
        old = self.episodes.get(index)
        entry = EpisodeEntry(**changes) if old is None else dataclasses.replace(old, **changes)
        return dataclasses.replace(self, episodes={**self.episodes, index: entry})


# ------------------------------------------------------------------------------------------- provenance


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@functools.cache
def git_commit() -> str | None:
    """The vpt-lens source's git commit (None outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(vptlens.__file__).parent, capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, paths, tuples and numpy scalars as plain JSON values (for configs in provenance)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    return json.loads(json.dumps(obj, default=_default))


def _default(obj):
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def provenance(config: Any = None, *, run: "Any | None" = None, **inputs: Any) -> dict:
    """What every artifact records about how it was made: package version, git commit, time, its config, and
    where its data came from (`run`: a `store.Run`, summarised by path, agent and episodes; further `inputs` as
    given, e.g. `sae_dir=...`).
    """
    out = {
        "package_version": vptlens.__version__,
        "git_commit": git_commit(),
        "created": now_iso(),
        "config": to_jsonable(config),
    }
    if run is not None:
        out["run"] = run.summary()
    out.update({k: to_jsonable(v) for k, v in inputs.items()})
    return out


def write_json_atomic(path: Path, obj) -> None:
    """Write JSON to a temporary file beside `path`, then rename it over `path` (readers see old or new, whole)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(obj, indent=2, default=_default))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
