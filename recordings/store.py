"""The episode store: one zarr v3 group per episode, written in chunk-aligned blocks.

Layout and meaning are documented in `recordings/PROTOCOL.md`; this module is the
reference writer and reader. Everything here is readable with plain `zarr` and numpy.

Writes are buffered in memory and flushed whole time-chunks at a time (single-step zarr
appends are ~100x slower). After each flush the group attribute `committed_length` is
rewritten; readers trust it over the arrays' shapes, so a writer killed at any moment
loses at most its unflushed tail (zarr's local store replaces files atomically).
"""

import datetime as dt
import functools
import json
import logging
import os
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import zarr

import vptlens

logger = logging.getLogger(__name__)

SCHEMA_NAME = "vptlens.episode"
SCHEMA_VERSION = 1
"""Bumped on any change a reader of the previous version would misread."""

TEXT = "str"
"""`ArraySpec.dtype` of per-step UTF-8 text (JSON documents, names)."""


@dataclass(frozen=True)
class ArraySpec:
    """One per-step array of an episode: its shape per step, dtype, and time chunk."""

    shape: tuple[int, ...]
    """Shape of one step's value (the array is (n_steps, *shape))."""
    dtype: str
    """numpy dtype name, or "str" for UTF-8 text."""
    chunk_steps: int = 64
    """Steps per chunk along time; a flush writes whole chunks."""
    description: str = ""
    """What the array holds (written into the array's attributes)."""
    units: str = ""
    """Units or convention (e.g. "degrees", "lag: last column = current frame")."""

    def __post_init__(self):
        if self.chunk_steps < 1:
            raise ValueError(f"chunk_steps must be >= 1, got {self.chunk_steps}")
        if self.dtype != TEXT:
            np.dtype(self.dtype)  # raises TypeError for an unknown dtype


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@functools.cache
def git_commit() -> str | None:
    """The vpt-lens source's git commit (None outside a git checkout), for provenance."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(vptlens.__file__).parent, capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)


class EpisodeWriter:
    """Append steps to a new episode group; flush whole chunks; mark the episode complete or partial.

    >>> with EpisodeWriter(path, specs, attrs={"seed": 0}) as w:
    ...     for step in steps:
    ...         w.append({"frames": frame, "value": v})
    ...     w.close("complete")      # leaving the block without close() marks it "partial"
    """

    def __init__(
        self,
        path: str | Path,
        specs: Mapping[str, ArraySpec],
        attrs: Mapping | None = None,
        *,
        flush_steps: int | None = None,
        overwrite: bool = False,
    ):
        self.path = Path(path)
        self.specs = dict(specs)
        chunk_lcm = int(np.lcm.reduce([s.chunk_steps for s in self.specs.values()]))
        self.flush_steps = flush_steps or chunk_lcm
        if self.flush_steps % chunk_lcm:
            raise ValueError(f"flush_steps {self.flush_steps} must be a multiple of every chunk length ({chunk_lcm})")
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"{self.path} exists; pass overwrite=True (or resume the run) to replace it")
        self.group = zarr.open_group(str(self.path), mode="w", zarr_format=3)
        self.arrays = {}
        for name, spec in self.specs.items():
            arr = self.group.create_array(
                name,
                shape=(0, *spec.shape),
                chunks=(spec.chunk_steps, *spec.shape),
                dtype=str if spec.dtype == TEXT else spec.dtype,
            )
            arr.attrs.update({"description": spec.description, "units": spec.units})
            self.arrays[name] = arr
        self.group.attrs.update(
            {
                "schema": SCHEMA_NAME,
                "schema_version": SCHEMA_VERSION,
                "committed_length": 0,
                "status": "recording",
                "start_time": _now(),
                **(attrs or {}),
            }
        )
        self._buffer: dict[str, list] = {name: [] for name in self.specs}
        self.n_committed = 0
        self.closed = False

    def __len__(self) -> int:
        return self.n_committed + len(next(iter(self._buffer.values()), []))

    def append(self, values: Mapping[str, object]) -> None:
        """Add one step; every array of the episode must get a value of its per-step shape."""
        if self.closed:
            raise RuntimeError(f"{self.path}: episode already closed")
        if values.keys() != self._buffer.keys():
            missing, extra = self._buffer.keys() - values.keys(), values.keys() - self._buffer.keys()
            raise KeyError(
                f"step values do not match the episode's arrays: missing {sorted(missing)}, extra {sorted(extra)}"
            )
        checked = {}
        for name, value in values.items():  # check every value before buffering any
            spec = self.specs[name]
            if spec.dtype == TEXT:
                if not isinstance(value, str):
                    raise TypeError(f"'{name}' holds text: expected str, got {type(value).__name__}")
            else:
                value = np.asarray(value)
                if value.shape != spec.shape:
                    raise ValueError(f"'{name}': step value has shape {value.shape}, the episode stores {spec.shape}")
            checked[name] = value
        for name, value in checked.items():
            self._buffer[name].append(value)
        if len(self) - self.n_committed >= self.flush_steps:
            self.flush(final=False)

    def flush(self, final: bool = True) -> None:
        """Write buffered steps: whole multiples of `flush_steps`, or everything if `final`."""
        n_buffered = len(next(iter(self._buffer.values()), []))
        n_write = n_buffered if final else n_buffered - n_buffered % self.flush_steps
        if n_write == 0:
            return
        start, stop = self.n_committed, self.n_committed + n_write
        for name, arr in self.arrays.items():
            block = self._buffer[name][:n_write]
            data = np.array(block, dtype=object) if self.specs[name].dtype == TEXT else np.stack(block)
            arr.resize((stop, *arr.shape[1:]))
            arr[start:stop] = data
            del self._buffer[name][:n_write]
        self.n_committed = stop
        self.group.attrs["committed_length"] = stop  # readers trust this, written last

    def close(self, status: str = "complete", **attrs) -> None:
        """Flush everything and mark the episode `complete` or `partial` (with any final attributes)."""
        if self.closed:
            return
        if status not in ("complete", "partial"):
            raise ValueError(f"status must be 'complete' or 'partial', got {status!r}")
        self.flush(final=True)
        self.group.attrs.update({"status": status, "end_time": _now(), **attrs})
        self.closed = True

    def __enter__(self) -> "EpisodeWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.closed:
            self.close("partial", interrupted_by=exc_type.__name__ if exc_type else "not closed")


class CommittedArray:
    """A zarr array seen only up to the episode's committed length (lazy; slicing reads from disk)."""

    def __init__(self, array: zarr.Array, length: int):
        self.array = array
        self.shape = (length, *array.shape[1:])
        self.dtype = array.dtype
        self.attrs = dict(array.attrs)

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
        out = self.array[(first, *rest)]
        return out[()] if isinstance(out, np.ndarray) and out.ndim == 0 else out

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)


class Episode:
    """A recorded episode, opened read-only; arrays are lazy and cut to the committed length."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / "zarr.json").is_file():
            raise FileNotFoundError(f"{self.path}: not an episode (no zarr.json); pass a run's episode directory")
        self.group = zarr.open_group(str(self.path), mode="r", zarr_format=3)
        self.attrs = dict(self.group.attrs)
        check_schema(self.attrs, self.path)
        self.length = int(self.attrs["committed_length"])

    def __len__(self) -> int:
        return self.length

    @property
    def status(self) -> str:
        return self.attrs.get("status", "unknown")

    def names(self) -> list[str]:
        """Every array of the episode, nested names joined with '/'."""

        def walk(group, prefix: str) -> list[str]:
            names = [prefix + name for name, _ in group.arrays()]
            for name, sub in group.groups():
                names += walk(sub, f"{prefix}{name}/")
            return names

        return sorted(walk(self.group, ""))

    def __contains__(self, name: str) -> bool:
        return name in self.group

    def __getitem__(self, name: str) -> CommittedArray:
        if name not in self.group:
            raise KeyError(f"{self.path} has no array '{name}'; it has {self.names()}")
        return CommittedArray(self.group[name], self.length)


def check_schema(attrs: Mapping, where: Path) -> None:
    if attrs.get("schema") != SCHEMA_NAME:
        raise ValueError(f"{where}: not a vpt-lens episode (schema {attrs.get('schema')!r})")
    version = attrs.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(
            f"{where}: episode schema version {version!r}, this vpt-lens reads version {SCHEMA_VERSION}. "
            "Upgrade or downgrade vpt-lens to the version that wrote it (see recordings/PROTOCOL.md)."
        )


def iter_blocks(episodes: list[Episode], name: str, block_steps: int = 4096) -> Iterator[tuple[int, int, np.ndarray]]:
    """Stream one array across episodes in large sequential blocks: yields (episode index, first step, block).

    Memory stays at one block whatever the run's size; blocks are aligned to the array's chunks.
    """
    for i, episode in enumerate(episodes):
        arr = episode[name]
        chunk = arr.array.chunks[0]
        step = max(chunk, block_steps - block_steps % chunk)
        for start in range(0, len(arr), step):
            yield i, start, arr[start : start + step]


def spec_to_dict(spec: ArraySpec) -> dict:
    return asdict(spec)


class Run:
    """A run directory: its manifest (run.json) and its episodes, in index order."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        manifest_path = self.path / "run.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(
                f"{self.path}: not a run directory (no run.json); pass the --out of `vptlens record`"
            )
        self.manifest = json.loads(manifest_path.read_text())
        if self.manifest.get("schema_version") != 1:
            raise ValueError(f"{manifest_path}: run schema version {self.manifest.get('schema_version')!r}, expected 1")

    def episode_paths(self, status: str | None = "complete") -> list[Path]:
        """Episode directories, complete ones only by default (status=None: every one on disk)."""
        paths = sorted(self.path.glob("episode_*.zarr"))
        return [p for p in paths if status is None or Episode(p).status == status]

    def episodes(self, status: str | None = "complete") -> list[Episode]:
        return [Episode(p) for p in self.episode_paths(status)]


def open_episodes(path: str | Path) -> list[Episode]:
    """One episode directory, or every complete episode of a run directory."""
    path = Path(path)
    return (
        [Episode(path)] if (path / "zarr.json").is_file() and not (path / "run.json").exists() else Run(path).episodes()
    )
