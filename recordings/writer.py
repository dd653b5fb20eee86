"""The episode store's writer: one zarr v3 group per episode, written in chunk-aligned blocks.

Layout and meaning are documented in `recordings/PROTOCOL.md`. Writes are buffered in memory
and flushed whole time-chunks at a time (single-step zarr appends are ~100x slower), optionally
on a background thread (`BlockWriter`) so a fast policy never waits for the disk. After each
block the group attribute `committed_length` is rewritten; readers trust it over the arrays'
shapes, so a writer killed at any moment loses at most its unflushed tail (zarr's local store
replaces files atomically). Whole chunks are encoded and written by `chunks.DirectChunks` (the
arrays' own codecs, the bytes zarr would write, ~3x less Python than zarr's write path); arrays are
created at the episode's expected length, so blocks do not resize them, and trimmed when it closes.
The empty episode itself is written from documents zarr built in memory (`layout.py`, ~20 ms instead
of 0.2-0.5 s through zarr's local store).
"""

import asyncio
import functools
import logging
import queue
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
from zarr import AsyncArray, AsyncGroup

from vptlens.recordings import layout
from vptlens.recordings.chunks import DirectChunks, can_write_directly
from vptlens.recordings.layout import TEXT
from vptlens.recordings.schema import EPISODE_SCHEMA, SCHEMA_VERSION, now_iso

logger = logging.getLogger(__name__)


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


async def _gather(*tasks):
    """`asyncio.gather` that waits for every task before raising the first failure (a failing disk fails many writes
    at once: the others are neither left running nor reported as 'exception never retrieved')."""
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


class WriterError(OSError):
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
        expected_steps: int = 0,
    ):
        """`expected_steps`: the episode's likely length; the arrays are created that long (trimmed at close), so
        that no block has to grow them (a resize rewrites every array's metadata)."""
        self.path = Path(path)
        self.expected_steps = max(0, int(expected_steps))
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
        self._direct: dict[str, DirectChunks | None] = {}
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
        group, self._arrays = await layout.create(self.path, self.specs, self.expected_steps)
        self._direct = {name: DirectChunks.of(arr) for name, arr in self._arrays.items()}
        await group.update_attributes(group_attrs)  # written last: schema attributes mean the arrays exist
        self._group = group

    async def _write_block(self, start: int, stop: int, block: dict[str, np.ndarray]) -> None:
        async def grow(name: str, arr: AsyncArray) -> None:
            # by doubling: rewriting each array's metadata per block costs more than the data
            await arr.resize((max(stop, 2 * arr.shape[0]), *arr.shape[1:]))

        await _gather(*(grow(name, arr) for name, arr in self._arrays.items() if arr.shape[0] < stop))
        through_zarr = []
        for name, arr in self._arrays.items():
            direct = self._direct[name]
            if direct is not None and can_write_directly(start, stop, direct.chunk_steps):
                direct.write(start, block[name])  # whole chunks, ~3x cheaper than zarr's path (chunks.py)
            else:
                through_zarr.append(arr.setitem(slice(start, stop), block[name]))
        await _gather(*through_zarr)
        await self._group.update_attributes({"committed_length": stop})  # readers trust this: written last

    async def _mark(self, attrs: dict) -> None:
        """Trim every array to the committed length, then write the closing attributes."""
        n = self.n_committed

        async def trim(name: str, arr: AsyncArray) -> None:
            if arr.shape[0] != n:
                await arr.resize((n, *arr.shape[1:]))

        await _gather(*(trim(name, arr) for name, arr in self._arrays.items()))
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

    def abandon(self, reason: str | None = None) -> None:
        """Stop without writing any more steps (after the writer failed); the episode keeps its committed steps.

        With a `reason`, the episode is marked partial directly (its attributes only: a few hundred bytes, which may
        still fit on a disk too full for a block); if even that fails it stays "recording", which readers treat alike.
        """
        self.closed = True
        if self._own_writer:
            self._writer.close()
        if reason is None or not (self.path / "zarr.json").exists():
            return
        try:
            group = zarr.open_group(str(self.path), mode="r+", zarr_format=3)
            n = int(group.attrs.get("committed_length", 0))
            group.attrs.update({"status": "partial", "interrupted_by": reason, "end_time": now_iso(), "n_steps": n})
        except Exception as e:  # noqa: BLE001 -- the disk is failing; what is committed stays readable
            logger.warning("%s: could not mark the episode partial (%s: %s)", self.path, type(e).__name__, e)

    def __enter__(self) -> "EpisodeWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.closed:
            self.close("partial", interrupted_by=exc_type.__name__ if exc_type else "not closed")
