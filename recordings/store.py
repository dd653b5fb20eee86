"""The episode store: one zarr v3 group per episode, written in chunk-aligned blocks.

Layout and meaning are documented in `recordings/PROTOCOL.md`; this module is the
reference writer and reader. Everything here is readable with plain `zarr` and numpy.

Writes are buffered in memory and flushed whole time-chunks at a time (single-step zarr
appends are ~100x slower), optionally on a background thread (`BlockWriter`) so a fast
policy never waits for the disk. After each block the group attribute `committed_length`
is rewritten; readers trust it over the arrays' shapes, so a writer killed at any moment
loses at most its unflushed tail (zarr's local store replaces files atomically).
"""

import asyncio
import functools
import json
import logging
import queue
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import zarr
import zarr.api.asynchronous
from zarr import AsyncArray, AsyncGroup

from vptlens.recordings import schema
from vptlens.recordings.schema import EPISODE_SCHEMA, SCHEMA_VERSION, EpisodeMeta, RunManifest, now_iso

logger = logging.getLogger(__name__)

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


class WriterError(RuntimeError):
    """The background episode writer failed; what it had not written is lost (committed_length does not cover it)."""


class BlockWriter:
    """One background thread that runs episodes' writes in the order they were handed over.

    Tasks are coroutine functions, run on the thread's own event loop with zarr's async API
    (so one block's arrays are written concurrently). The queue holds at most `max_pending`
    tasks: `submit` blocks while the writer is that far behind, so memory stays bounded.
    The first failure stops the writer: every later task is dropped (no `committed_length`
    ever covers data that was not written), and `submit`, `drain` and `close` raise
    `WriterError` in the calling thread.
    """

    def __init__(self, max_pending: int = 16):
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="vptlens-episode-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            while True:
                task = self._queue.get()
                try:
                    if task is None:
                        return
                    if self._error is None:
                        loop.run_until_complete(task())
                except BaseException as e:  # noqa: BLE001 -- handed to the submitting thread by check()
                    logger.error("background episode writer failed: %s: %s", type(e).__name__, e)
                    self._error = e
                finally:
                    self._queue.task_done()
        finally:
            loop.close()

    @property
    def failed(self) -> bool:
        return self._error is not None

    def check(self) -> None:
        """Raise `WriterError` if a write has failed."""
        if self._error is not None:
            e = self._error
            raise WriterError(
                f"writing episodes failed in the background writer ({type(e).__name__}: {e}); "
                "each episode keeps only the steps its committed_length covers"
            ) from e

    def submit(self, task: Callable[[], Awaitable[None]]) -> None:
        """Queue a write (blocks while `max_pending` writes are queued)."""
        if self._closed:
            raise RuntimeError("the episode writer is closed")
        self.check()
        self._queue.put(task)

    def drain(self) -> None:
        """Wait until every write handed over so far is done."""
        self._queue.join()
        self.check()

    def close(self) -> None:
        """Finish every write handed over, stop the thread, raise `WriterError` if a write failed."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()
        self.check()

    def __enter__(self) -> "BlockWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()


class EpisodeWriter:
    """Append steps to a new episode group; flush whole chunks; mark the episode complete or partial.

    >>> with EpisodeWriter(path, specs, attrs={"seed": 0}) as w:
    ...     for step in steps:
    ...         w.append({"frames": frame, "value": v})
    ...     w.close("complete")      # leaving the block without close() marks it "partial"

    Steps go into preallocated numpy blocks; a full block is handed over whole (the writer
    no longer touches it) to be written. Without `writer` every write happens before the
    call returns. With a shared `BlockWriter`, creating the group, writing blocks and
    closing happen on its thread, in order; `BlockWriter.close()` waits for them.
    """

    def __init__(
        self,
        path: str | Path,
        specs: Mapping[str, ArraySpec],
        attrs: Mapping | None = None,
        *,
        flush_steps: int | None = None,
        overwrite: bool = False,
        writer: BlockWriter | None = None,
    ):
        self.path = Path(path)
        self.specs = dict(specs)
        chunk_lcm = int(np.lcm.reduce([s.chunk_steps for s in self.specs.values()]))
        self.flush_steps = chunk_lcm if flush_steps is None else flush_steps
        if self.flush_steps < 1 or self.flush_steps % chunk_lcm:
            raise ValueError(f"flush_steps {self.flush_steps} must be a multiple of every chunk length ({chunk_lcm})")
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"{self.path} exists; pass overwrite=True (or resume the run) to replace it")
        self._own_writer = writer is None
        self._writer = BlockWriter(max_pending=2) if writer is None else writer
        self._group: AsyncGroup | None = None
        self._arrays: dict[str, AsyncArray] = {}
        self._block = self._new_block()
        self._n_buffered = 0
        self.n_committed = 0
        """Steps handed over to be written (on disk once the writer has run)."""
        self.closed = False
        group_attrs = {
            "schema": EPISODE_SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "committed_length": 0,
            "status": "recording",
            "start_time": now_iso(),
            **(attrs or {}),
        }
        self._submit(functools.partial(self._create, group_attrs))

    def _new_block(self) -> dict[str, np.ndarray]:
        return {
            name: np.empty((self.flush_steps, *spec.shape), object if spec.dtype == TEXT else spec.dtype)
            for name, spec in self.specs.items()
        }

    def _submit(self, task: Callable[[], Awaitable[None]], handed_over: Callable[[], None] | None = None) -> None:
        """Queue a write; `handed_over` updates this writer's state only once the write is queued.

        An interruption (Ctrl-C) before the write is queued leaves the state as it was, so the
        same steps are handed over again by close(); one after it at worst writes them twice.
        """
        try:
            self._writer.submit(task)
            if handed_over is not None:
                handed_over()
            if self._own_writer:
                self._writer.drain()
        except WriterError:
            if self._own_writer:
                self.closed = True
                self._writer.close()
            raise

    async def _create(self, group_attrs: dict) -> None:
        group = await zarr.api.asynchronous.open_group(store=str(self.path), mode="w", zarr_format=3)
        parents = {name.rsplit("/", i)[0] for name in self.specs for i in range(1, name.count("/") + 1)}
        for parent in sorted(parents, key=lambda p: p.count("/")):  # parents first, so arrays never race on them
            await group.require_group(parent)
        arrays = await asyncio.gather(
            *(
                group.create_array(
                    name,
                    shape=(0, *spec.shape),
                    chunks=(spec.chunk_steps, *spec.shape),
                    dtype=str if spec.dtype == TEXT else spec.dtype,
                    attributes={"description": spec.description, "units": spec.units},
                    config={"write_empty_chunks": True},  # skips comparing every chunk with the fill value
                )
                for name, spec in self.specs.items()
            )
        )
        self._arrays = dict(zip(self.specs, arrays))
        await group.update_attributes(group_attrs)  # written last: schema attributes mean the arrays exist
        self._group = group

    async def _write_block(self, start: int, stop: int, block: dict[str, np.ndarray]) -> None:
        async def write(name: str, arr: AsyncArray) -> None:
            if (
                arr.shape[0] < stop
            ):  # grow by doubling: rewriting each array's metadata per block costs more than the data
                await arr.resize((max(stop, 2 * arr.shape[0]), *arr.shape[1:]))
            await arr.setitem(slice(start, stop), block[name])

        await asyncio.gather(*(write(name, arr) for name, arr in self._arrays.items()))
        await self._group.update_attributes({"committed_length": stop})  # readers trust this: written last

    async def _mark(self, attrs: dict) -> None:
        """Trim every array to the committed length, then write the closing attributes."""
        n = self.n_committed

        async def trim(name: str, arr: AsyncArray) -> None:
            if arr.shape[0] != n:
                await arr.resize((n, *arr.shape[1:]))

        await asyncio.gather(*(trim(name, arr) for name, arr in self._arrays.items()))
        await self._group.update_attributes(attrs)

    def __len__(self) -> int:
        return self.n_committed + self._n_buffered

    def append(self, values: Mapping[str, object]) -> None:
        """Add one step; every array of the episode must get a value of its per-step shape."""
        if self.closed:
            raise RuntimeError(f"{self.path}: episode already closed")
        if values.keys() != self.specs.keys():
            missing, extra = self.specs.keys() - values.keys(), values.keys() - self.specs.keys()
            raise KeyError(
                f"step values do not match the episode's arrays: missing {sorted(missing)}, extra {sorted(extra)}"
            )
        for name, value in values.items():  # check every value before buffering any
            spec = self.specs[name]
            if spec.dtype == TEXT:
                if not isinstance(value, str):
                    raise TypeError(f"'{name}' holds text: expected str, got {type(value).__name__}")
            elif np.shape(value) != spec.shape:
                raise ValueError(f"'{name}': step value has shape {np.shape(value)}, the episode stores {spec.shape}")
        i = self._n_buffered
        for name, value in values.items():
            self._block[name][i] = value
        self._n_buffered += 1
        if self._n_buffered == self.flush_steps:
            self.flush(final=False)

    def flush(self, final: bool = True) -> None:
        """Hand buffered steps over to be written: whole blocks of `flush_steps`, or everything if `final`."""
        n_write = self._n_buffered
        if n_write == 0 or (n_write < self.flush_steps and not final):
            return
        block = self._block if n_write == self.flush_steps else {k: v[:n_write] for k, v in self._block.items()}
        start, stop = self.n_committed, self.n_committed + n_write
        fresh = self._new_block()  # the handed-over block is the writer's from now on

        def handed_over() -> None:
            self._block, self._n_buffered, self.n_committed = fresh, 0, stop  # one statement: no signal in between

        self._submit(functools.partial(self._write_block, start, stop, block), handed_over)

    def close(self, status: str = "complete", **attrs) -> None:
        """Flush everything and mark the episode `complete` or `partial` (with any final attributes)."""
        if self.closed:
            return
        if status not in ("complete", "partial"):
            raise ValueError(f"status must be 'complete' or 'partial', got {status!r}")
        self.flush(final=True)
        self._submit(
            functools.partial(self._mark, {"status": status, "end_time": now_iso(), **attrs}), self._set_closed
        )
        if self._own_writer:
            self._writer.close()

    def _set_closed(self) -> None:
        self.closed = True

    def abandon(self) -> None:
        """Stop without writing anything more (after the writer failed); the episode keeps its committed steps."""
        self.closed = True
        if self._own_writer:
            self._writer.close()

    def __enter__(self) -> "EpisodeWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.closed:
            self.close("partial", interrupted_by=exc_type.__name__ if exc_type else "not closed")


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
        """(N, 128, 128, 3) uint8: the frames the policy saw."""
        return self[schema.FRAMES]

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


def spec_to_dict(spec: ArraySpec) -> dict:
    return asdict(spec)


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
