"""The episode store's reader: `Run.open(path)` for a run or one episode, and `Episode` with typed accessors.

Layout and meaning are documented in `recordings/PROTOCOL.md` (the writer is `recordings.writer`).
Arrays are lazy and cut to the episode's committed length; a chunk missing or damaged inside
that length is named, never read as zeros. Everything here is readable with plain `zarr` and numpy.
"""

import json
import logging
from collections.abc import Callable, Iterator, Mapping
from functools import cached_property
from pathlib import Path

import numpy as np
import zarr

from vptlens.recordings import schema
from vptlens.recordings.schema import EPISODE_SCHEMA, SCHEMA_VERSION, EpisodeMeta, RunManifest

logger = logging.getLogger(__name__)


class DamagedEpisodeError(ValueError):
    """Part of an episode that its committed length covers is missing or cannot be decoded."""


class CommittedArray:
    """A zarr array seen only up to the episode's committed length (lazy; slicing reads from disk).

    The writer writes every chunk it commits, so a chunk file missing inside the committed range
    means damage (plain zarr would read it back as its fill value, zeros): reading it raises
    `DamagedEpisodeError` naming the array and the chunk, as does a chunk that cannot be decoded.
    """

    def __init__(self, array: zarr.Array, length: int, array_dir: Path | None = None):
        """`array_dir`: the array's directory on a local store, to check its chunk files (None: not checked)."""
        self.array = array
        self.shape = (length, *array.shape[1:])
        self.dtype = array.dtype
        self.attrs = dict(array.attrs)
        self.array_dir = array_dir
        self._chunks_seen: set[int] = set()

    def _check_chunks(self, first: int | slice) -> None:
        if self.array_dir is None:
            return
        steps = range(first, first + 1) if isinstance(first, int) else range(first.start, first.stop, first.step or 1)
        if not steps:
            return
        lo, hi = min(steps[0], steps[-1]), max(steps[0], steps[-1])
        chunk = self.array.chunks[0]
        for i in range(lo // chunk, hi // chunk + 1):
            if i in self._chunks_seen:
                continue
            if not (self.array_dir / "c" / str(i)).exists():
                raise DamagedEpisodeError(
                    f"{self.array_dir}: chunk {i} (steps {i * chunk}..{(i + 1) * chunk - 1}) is missing inside the "
                    f"committed range of {self.shape[0]} steps; the episode is damaged (record it again, or restore "
                    "it from a copy)"
                )
            self._chunks_seen.add(i)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        first, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        n = self.shape[0]
        if isinstance(first, int | np.integer):
            index = int(first) + n if first < 0 else int(first)
            if not 0 <= index < n:
                raise IndexError(f"step {first} out of range for {n} committed steps")
            first = index
        elif isinstance(first, slice):
            first = slice(*first.indices(n))
        else:
            raise TypeError("index the time axis with an int or a slice")
        self._check_chunks(first)
        try:
            out = self.array[(first, *rest)]
        except (IndexError, TypeError):
            raise
        except Exception as e:  # zstd, JSON or shape errors from a damaged chunk or zarr.json
            where = self.array_dir or self.array.path
            raise DamagedEpisodeError(
                f"{where}: the stored data cannot be read ({type(e).__name__}: {e}); the episode is damaged "
                "(record it again, or restore it from a copy)"
            ) from e
        return out[()] if isinstance(out, np.ndarray) and out.ndim == 0 else out

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)


class JsonArray:
    """A per-step text array of JSON documents, parsed when sliced: `gt[t]` is one step's value, `gt[a:b]` a list."""

    def __init__(self, array: CommittedArray):
        self.array = array
        self.shape = array.shape

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, key):
        raw = self.array[key]
        if isinstance(key, int | np.integer):
            return json.loads(str(raw))
        return [json.loads(str(s)) for s in raw]


class Episode:
    """A recorded episode, opened read-only; arrays are lazy and cut to the committed length.

    Ask for arrays by what they hold (`frames`, `attention(layer)`, `activation(hook)`, `action(head)`,
    `minerl_action(key)`, `ground_truth(name)`, ...): their store names are built in `schema` only.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / "zarr.json").is_file():
            raise FileNotFoundError(f"{self.path}: not an episode (no zarr.json); pass a run's episode directory")
        try:
            self.group = zarr.open_group(str(self.path), mode="r", zarr_format=3)
        except Exception as e:  # a damaged zarr.json: name the file, not a JSON decoder's line and column
            raise DamagedEpisodeError(
                f"{self.path / 'zarr.json'} cannot be read ({type(e).__name__}: {e}); the episode is damaged"
            ) from e
        self.attrs = dict(self.group.attrs)
        check_schema(self.attrs, self.path)
        self.length = int(self.attrs["committed_length"])

    def __repr__(self) -> str:
        return f"Episode({str(self.path)!r}, {self.length} steps, {self.status})"

    def __len__(self) -> int:
        return self.length

    @property
    def status(self) -> str:
        return self.attrs.get("status", "unknown")

    @cached_property
    def meta(self) -> EpisodeMeta:
        """The recorder's metadata, typed (agent files, env, scene, seed, hooks, STEVE-1 goal ...)."""
        return EpisodeMeta.from_dict(self.attrs, str(self.path))

    @cached_property
    def _names(self) -> list[str]:
        def walk(group, prefix: str) -> list[str]:
            names = [prefix + name for name, _ in group.arrays()]
            for name, sub in group.groups():
                names += walk(sub, f"{prefix}{name}/")
            return names

        return sorted(walk(self.group, ""))

    def names(self) -> list[str]:
        """Every array of the episode, nested names joined with '/' (the store's names: see PROTOCOL.md)."""
        return list(self._names)

    def __contains__(self, name: str) -> bool:
        return name in self._names

    def __getitem__(self, name: str) -> CommittedArray:
        """An array by its store name; prefer the typed accessors below."""
        if name not in self._names:
            raise KeyError(f"{self.path} has no array '{name}'; it has {self.names()}")
        try:
            array = self.group[name]
        except Exception as e:  # a damaged zarr.json of the array
            raise DamagedEpisodeError(f"{self.path / name}: cannot be opened ({type(e).__name__}: {e})") from e
        return CommittedArray(array, self.length, self.path / name)

    # ------------------------------------------------------------------ what the agent saw and computed

    @property
    def frames(self) -> CommittedArray:
        """(N, h, w, 3) uint8: the frames the policy saw (at its input's size: 128x128 for the released models)."""
        return self[schema.FRAMES]

    @property
    def frame_size(self) -> tuple[int, int]:
        """(h, w) of the frames the policy saw."""
        return tuple(self.frames.shape[1:3])

    @property
    def frames_full(self) -> CommittedArray | None:
        """(N, H, W, 3) uint8 full-resolution frames, or None when the run did not store them."""
        if schema.FRAMES_FULL not in self:
            return None
        return self[schema.FRAMES_FULL]

    @property
    def layers(self) -> list[int]:
        """The blocks whose attention is stored, ascending."""
        return schema.attention_layers(self._names)

    def attention(self, layer: int) -> CommittedArray:
        """Block `layer`'s attention (N, heads, M+1) float16, last column = now; negative layers count from the end."""
        layers = self.layers
        if not layers:
            raise KeyError(f"{self.path} stores no attention; record the run with `vptlens record`")
        if layer < 0 and -layer <= len(layers):
            layer = layers[layer]
        if layer not in layers:
            raise KeyError(f"{self.path} stores the attention of layers {layers}, not {layer}")
        return self[schema.attention_array(layer)]

    @property
    def hooks(self) -> list[str]:
        """The hooks whose activations are stored."""
        return schema.activation_hooks(self._names)

    def has_activation(self, hook: str) -> bool:
        return schema.activation_array(hook) in self

    def activation(self, hook: str) -> CommittedArray:
        """A stored hook activation, (N, ...) float16."""
        if not self.has_activation(hook):
            raise KeyError(
                f"{self.path} did not record the hook {hook!r}; it stores {self.hooks}. Record the run again "
                f"with `vptlens record --hooks {hook} ...`"
            )
        return self[schema.activation_array(hook)]

    def action(self, head: str) -> CommittedArray:
        """The class each action head took: "buttons" (0..8640) or "camera" (0..120), int32."""
        return self[schema.action_array(head)]

    def entropy(self, head: str) -> CommittedArray:
        """Entropy of an action head ("buttons" or "camera"), nats."""
        return self[schema.entropy_array(head)]

    @property
    def log_prob(self) -> CommittedArray:
        """log pi(action taken), nats, with the released agents' temperature."""
        return self[schema.LOG_PROB]

    @property
    def value(self) -> CommittedArray:
        return self[schema.VALUE]

    @property
    def reward(self) -> CommittedArray:
        return self[schema.REWARD]

    @property
    def terminated(self) -> CommittedArray:
        return self[schema.TERMINATED]

    @property
    def truncated(self) -> CommittedArray:
        return self[schema.TRUNCATED]

    @property
    def has_policy_outputs(self) -> bool:
        """Whether the actions' classes and log-probabilities are stored (a replay can be checked against them)."""
        return all(n in self for n in (schema.LOG_PROB, schema.action_array("buttons"), schema.action_array("camera")))

    @property
    def minerl_keys(self) -> list[str]:
        """The MineRL binary keys stored (camera excluded)."""
        return schema.minerl_action_keys(self._names)

    def minerl_action(self, key: str) -> CommittedArray:
        """The MineRL action sent to the env: a binary key (N,) uint8, or "camera" (N, 2) degrees [pitch, yaw]."""
        name = schema.minerl_action_array(key)
        if name not in self:
            raise KeyError(f"{self.path} stores no MineRL action {key!r}; it stores {self.minerl_keys} and camera")
        return self[name]

    def has_ground_truth(self, name: str) -> bool:
        return schema.ground_truth_array(name) in self

    def ground_truth(self, name: str) -> CommittedArray | JsonArray:
        """The env's ground truth: "pose", "nearest_log" (numeric), "crosshair", "visible_entities", "events" (JSON,
        parsed when sliced)."""
        array_name = schema.ground_truth_array(name)
        if array_name not in self:
            raise KeyError(f"{self.path} stores no ground truth {name!r} (recorded by an older vpt-lens, or MineRL)")
        array = self[array_name]
        return JsonArray(array) if schema.GROUND_TRUTH[name] == "json" else array


def check_schema(attrs: Mapping, where: Path) -> None:
    if attrs.get("schema") != EPISODE_SCHEMA:
        raise ValueError(f"{where}: not a vpt-lens episode (schema {attrs.get('schema')!r})")
    version = attrs.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(
            f"{where}: episode schema version {version!r}, this vpt-lens reads version {SCHEMA_VERSION}. "
            "Upgrade or downgrade vpt-lens to the version that wrote it (see recordings/PROTOCOL.md)."
        )


def iter_blocks(
    episodes: list[Episode], array: Callable[[Episode], CommittedArray] | str, block_steps: int = 4096
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Stream one array across episodes in large sequential blocks: yields (episode index, first step, block).

    `array` picks the array from an episode (e.g. `lambda e: e.activation(hook)`; a store name for generic
    stores). Memory stays at one block whatever the run's size; blocks are aligned to the array's chunks.
    """
    for i, episode in enumerate(episodes):
        arr = episode[array] if isinstance(array, str) else array(episode)
        chunk = arr.array.chunks[0]
        step = max(chunk, block_steps - block_steps % chunk)
        for start in range(0, len(arr), step):
            yield i, start, arr[start : start + step]


class Run:
    """A run directory (its manifest and episodes), or a lone episode seen as a run of one.

    >>> run = Run.open("runs/probe")                       # a run: every complete episode
    >>> run = Run.open("runs/probe/episode_000003.zarr")   # one episode (with its run's manifest)
    >>> for episode in run.episodes(): ...
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.manifest: RunManifest | None = RunManifest.load(self.path)
        self._only: Path | None = None

    @classmethod
    def open(cls, path: str | Path) -> "Run":
        """A run directory, or one episode directory (inside a run or not)."""
        path = Path(path)
        if (path / schema.MANIFEST_FILE).is_file():
            return cls(path)
        if not (path / "zarr.json").is_file():
            raise FileNotFoundError(
                f"{path}: neither a run directory (no {schema.MANIFEST_FILE}) nor an episode (no zarr.json); "
                "pass the --out of `vptlens record` or one of its episode_*.zarr directories"
            )
        Episode(path)  # checks the schema now
        run = cls.__new__(cls)
        in_run = (path.parent / schema.MANIFEST_FILE).is_file()
        run.path = path.parent if in_run else path
        run.manifest = RunManifest.load(path.parent) if in_run else None
        run._only = path
        return run

    def episode_paths(self, status: str | None = "complete") -> list[Path]:
        """Episode directories, complete ones only by default (status=None: every one on disk).

        A run opened on one episode has that episode, whatever its status.
        """
        if self._only is not None:
            return [self._only]
        paths = sorted(self.path.glob("episode_*.zarr"))
        return [p for p in paths if status is None or Episode(p).status == status]

    def episodes(self, status: str | None = "complete") -> list[Episode]:
        return [Episode(p) for p in self.episode_paths(status)]

    def summary(self) -> dict:
        """What an artifact made from this run records of it (its provenance's `run` entry)."""
        manifest = self.manifest
        return {
            "path": str(self.path.resolve()),
            "episodes": [p.name for p in self.episode_paths()],
            "created": None if manifest is None else manifest.created,
            "agent": None if manifest is None else manifest.agent.to_dict(),
            "record_config": None if manifest is None else manifest.config,
        }


def interrupted_at_creation(path: Path) -> bool:
    """Whether an episode directory is one the writer was killed while creating (no zarr.json yet, or a zarr.json
    without the schema attributes, which are written last): nothing of it was committed."""
    meta = path / "zarr.json"
    if not meta.exists():
        return not any(path.rglob("c/*"))  # no chunk data anywhere
    try:
        attrs = json.loads(meta.read_text()).get("attributes", {})
    except (json.JSONDecodeError, OSError, AttributeError):
        return False
    return "schema" not in attrs


def committed_length(path: Path) -> int:
    """The steps an episode on disk holds for sure (0 if it cannot be read)."""
    try:
        return len(Episode(path))
    except (ValueError, FileNotFoundError, KeyError):
        return 0


def is_complete(path: Path) -> bool:
    """Whether an episode on disk was closed complete (False if it cannot be read)."""
    try:
        return Episode(path).status == "complete"
    except (ValueError, FileNotFoundError, KeyError):
        return False
