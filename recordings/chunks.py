"""Whole chunks of an episode's arrays written straight to files, encoded by the arrays' own codecs.

Why not `AsyncArray.setitem`: zarr 3's write path costs ~1.4 ms of Python per chunk (codec pipeline,
asyncio tasks, a thread hand-off per file), measured on the 2-core dev VM (benchmarks/record.py,
RESULTS.md). An episode writes 44 arrays per 64-step block, so recording the tiny policy spent ~3 ms
of CPU per env-step in the writer, more than a tenth of the rollout itself. Encoding a chunk with the
same numcodecs objects zarr uses and writing the file ourselves costs ~0.4 ms (compression aside).

Only what this writer can reproduce byte for byte is taken over: arrays in a local store whose codecs
are exactly `bytes` + `zstd` (numbers, booleans) or `vlen-utf8` + `zstd` (text), and writes of whole,
aligned chunks. Everything else (a partial last block, another store or codec) goes through zarr.
tests/test_store.py checks that every chunk file is identical to the one zarr writes, and that zarr
reads the arrays back unchanged. Files are replaced atomically (written aside, then renamed), as
zarr's local store does, so a reader never sees half a chunk.
"""

import os
import uuid
from pathlib import Path

import numpy as np
from numcodecs import Zstd
from numcodecs.vlen import VLenUTF8
from zarr import AsyncArray
from zarr.codecs import BytesCodec, VLenUTF8Codec, ZstdCodec
from zarr.codecs.bytes import Endian
from zarr.storage import LocalStore

_VLEN_UTF8 = VLenUTF8()


class DirectChunks:
    """Writes whole time-chunks of one zarr v3 array (time is axis 0, one chunk spans every other axis)."""

    def __init__(self, directory: Path, chunk_key, chunk_steps: int, text: bool, zstd: Zstd):
        self.directory = directory
        self.chunk_key = chunk_key
        self.chunk_steps = chunk_steps
        self.text = text
        self.zstd = zstd
        self._made: set[Path] = set()

    @classmethod
    def of(cls, arr: AsyncArray) -> "DirectChunks | None":
        """The direct writer of `arr`, or None where only zarr may write it."""
        store = arr.store_path.store
        meta = arr.metadata
        if not isinstance(store, LocalStore) or getattr(meta, "zarr_format", None) != 3:
            return None
        chunks = meta.chunk_grid.chunk_shape
        if tuple(chunks[1:]) != tuple(meta.shape[1:]):  # one chunk spans every axis but time
            return None
        codecs = tuple(meta.codecs)
        if len(codecs) != 2 or not isinstance(codecs[1], ZstdCodec):
            return None
        if isinstance(codecs[0], VLenUTF8Codec):
            text = True
        elif isinstance(codecs[0], BytesCodec) and codecs[0].endian in (None, Endian.little):
            text = False
        else:
            return None
        zstd = Zstd(level=codecs[1].level, checksum=codecs[1].checksum)
        ndim = len(meta.shape)
        return cls(
            Path(store.root) / arr.store_path.path,
            lambda i: meta.encode_chunk_key((i,) + (0,) * (ndim - 1)),
            int(chunks[0]),
            text,
            zstd,
        )

    def encode(self, chunk: np.ndarray) -> bytes:
        """The bytes zarr would store for this chunk."""
        if self.text:
            return self.zstd.encode(_VLEN_UTF8.encode(np.asarray(chunk, dtype=object)))
        if chunk.dtype.itemsize > 1:
            chunk = chunk.astype(chunk.dtype.newbyteorder("<"), copy=False)
        return self.zstd.encode(np.ascontiguousarray(chunk))

    def write(self, start: int, values: np.ndarray) -> None:
        """Write `values` (whole chunks' worth of steps) as the array's steps from `start` (chunk-aligned)."""
        c = self.chunk_steps
        if start % c or len(values) % c:
            raise ValueError(f"direct chunk writes are whole chunks: steps {start}..{start + len(values)}, chunk {c}")
        for offset in range(0, len(values), c):
            self._put(self.chunk_key((start + offset) // c), self.encode(values[offset : offset + c]))

    def _put(self, key: str, data: bytes) -> None:
        path = self.directory / key
        if path.parent not in self._made:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(path.parent)
        put_file(path, data)


def put_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` (its directory exists) atomically: aside, then renamed over it."""
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.partial")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # only a failed write leaves it: no stat per chunk on the way that succeeds
        raise


def can_write_directly(start: int, stop: int, chunk_steps: int) -> bool:
    """Whether steps start..stop are whole chunks."""
    return start % chunk_steps == 0 and (stop - start) % chunk_steps == 0 and stop > start
