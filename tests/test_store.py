"""The episode store: round trips, committed length, plain-zarr readability, schema checks."""

import asyncio
import json
import shutil
import threading

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vptlens.recordings.store import Episode, iter_blocks
from vptlens.recordings.writer import TEXT, ArraySpec, BlockWriter, EpisodeWriter, WriterError

SPECS = {
    "frames": ArraySpec((4, 4, 3), "uint8", chunk_steps=8),
    "value": ArraySpec((), "float32", chunk_steps=16),
    "attention/L0": ArraySpec((2, 5), "float16", chunk_steps=16),
    "events": ArraySpec((), TEXT, chunk_steps=16),
}


def _step(i: int) -> dict:
    return {
        "frames": np.full((4, 4, 3), i % 256, np.uint8),
        "value": np.float32(i) / 3,
        "attention/L0": np.full((2, 5), i / 100, np.float16),
        "events": json.dumps([{"step": i}]) if i % 3 == 0 else "",
    }


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n_steps=st.integers(0, 70))
def test_round_trip_any_length(tmp_path_factory, n_steps):
    path = tmp_path_factory.mktemp("ep") / "ep.zarr"
    with EpisodeWriter(path, SPECS, attrs={"seed": 3}) as writer:
        for i in range(n_steps):
            writer.append(_step(i))
        writer.close("complete")
    ep = Episode(path)
    assert len(ep) == n_steps and ep.status == "complete" and ep.attrs["seed"] == 3
    for name in SPECS:
        got = ep[name][:]
        expected = [_step(i)[name] for i in range(n_steps)]
        assert got.shape[0] == n_steps
        if SPECS[name].dtype == TEXT:
            assert list(got) == expected
        else:
            np.testing.assert_array_equal(got, np.array(expected).reshape(got.shape))


def test_flushes_whole_chunks_and_commits_after(tmp_path):
    writer = EpisodeWriter(tmp_path / "ep.zarr", SPECS)
    assert writer.flush_steps == 16  # lcm of the chunk lengths
    for i in range(40):
        writer.append(_step(i))
    group = zarr.open_group(str(tmp_path / "ep.zarr"), mode="r")
    assert group.attrs["committed_length"] == 32  # 8 steps still buffered
    assert group["frames"].shape[0] == 32
    writer.close()
    assert Episode(tmp_path / "ep.zarr").length == 40


def test_arrays_grow_by_doubling_and_close_trims_them(tmp_path):
    writer = EpisodeWriter(tmp_path / "ep.zarr", SPECS)
    for i in range(56):
        writer.append(_step(i))
    group = zarr.open_group(str(tmp_path / "ep.zarr"), mode="r")
    assert group.attrs["committed_length"] == 48 and group["value"].shape[0] == 64  # room for the next block
    assert len(Episode(tmp_path / "ep.zarr")) == 48
    writer.close("partial")
    group = zarr.open_group(str(tmp_path / "ep.zarr"), mode="r")
    assert {name: group[name].shape[0] for name in SPECS} == dict.fromkeys(SPECS, 56)  # plain readers see the episode
    np.testing.assert_array_equal(group["value"][:], (np.arange(56) / 3).astype(np.float32))


def test_reader_trusts_committed_length_over_shape(tmp_path):
    writer = EpisodeWriter(tmp_path / "ep.zarr", SPECS)
    for i in range(20):
        writer.append(_step(i))
    writer.flush()
    # simulate a writer killed after growing an array but before committing
    zarr.open_group(str(tmp_path / "ep.zarr"), mode="r+")["frames"].resize((30, 4, 4, 3))
    ep = Episode(tmp_path / "ep.zarr")
    assert len(ep) == 20 and ep["frames"].shape == (20, 4, 4, 3) and ep.status == "recording"
    with pytest.raises(IndexError):
        ep["frames"][25]
    assert ep["frames"][-1][0, 0, 0] == 19


def test_exception_marks_partial_and_keeps_data(tmp_path):
    with pytest.raises(RuntimeError), EpisodeWriter(tmp_path / "ep.zarr", SPECS) as writer:
        for i in range(5):
            writer.append(_step(i))
        raise RuntimeError("env crashed")
    ep = Episode(tmp_path / "ep.zarr")
    assert json.loads(ep["events"][3]) == [{"step": 3}]
    assert ep.status == "partial" and len(ep) == 5 and ep.attrs["interrupted_by"] == "RuntimeError"


def test_plain_zarr_reads_an_episode(tmp_path):
    with EpisodeWriter(tmp_path / "ep.zarr", SPECS) as writer:
        for i in range(10):
            writer.append(_step(i))
        writer.close()
    group = zarr.open_group(str(tmp_path / "ep.zarr"), mode="r")
    n = group.attrs["committed_length"]
    assert group["value"][:n][4] == np.float32(4) / 3
    assert json.loads(str(group["events"][3])) == [{"step": 3}]


def test_bad_steps_and_unknown_schema_are_refused(tmp_path):
    writer = EpisodeWriter(tmp_path / "ep.zarr", SPECS)
    with pytest.raises(KeyError, match="missing"):
        writer.append({"frames": np.zeros((4, 4, 3), np.uint8)})
    with pytest.raises(ValueError, match="shape"):
        writer.append({**_step(0), "value": np.zeros(2)})
    writer.close()
    with pytest.raises(FileExistsError):
        EpisodeWriter(tmp_path / "ep.zarr", SPECS)
    group = zarr.open_group(str(tmp_path / "ep.zarr"), mode="r+")
    group.attrs["schema_version"] = 99
    with pytest.raises(ValueError, match="schema version 99"):
        Episode(tmp_path / "ep.zarr")


def test_iter_blocks_streams_across_episodes(tmp_path):
    episodes = []
    for e, n in enumerate([37, 0, 50]):
        with EpisodeWriter(tmp_path / f"ep{e}.zarr", SPECS) as writer:
            for i in range(n):
                writer.append(_step(i))
            writer.close()
        episodes.append(Episode(tmp_path / f"ep{e}.zarr"))
    blocks = list(iter_blocks(episodes, "value", block_steps=20))
    assert [(i, start, len(b)) for i, start, b in blocks] == [
        (0, 0, 16),
        (0, 16, 16),
        (0, 32, 5),
        (2, 0, 16),
        (2, 16, 16),
        (2, 32, 16),
        (2, 48, 2),
    ]
    joined = np.concatenate([b for _, _, b in blocks])
    np.testing.assert_array_equal(joined, np.concatenate([np.arange(37), np.arange(50)]).astype(np.float32) / 3)


def test_background_writer_commits_only_after_the_data_and_keeps_order(tmp_path):
    gate = threading.Event()

    async def wait_for_gate():
        await asyncio.to_thread(gate.wait, 30)

    with BlockWriter(max_pending=64) as background:
        a = EpisodeWriter(tmp_path / "a.zarr", SPECS, writer=background)
        b = EpisodeWriter(tmp_path / "b.zarr", SPECS, writer=background)
        background.drain()  # both groups exist
        background.submit(wait_for_gate)  # hold the writer: blocks are handed over but not written
        for i in range(40):
            a.append(_step(i))
            b.append(_step(1000 + i))
        assert len(a) == 40 and a.n_committed == 32  # two blocks handed over, 8 steps buffered
        for name in ("a", "b"):
            group = zarr.open_group(str(tmp_path / f"{name}.zarr"), mode="r")
            assert group.attrs["committed_length"] == 0 and group["frames"].shape[0] == 0
        gate.set()
        background.drain()
        assert zarr.open_group(str(tmp_path / "a.zarr"), mode="r").attrs["committed_length"] == 32
        a.close("complete")
        b.close("partial", interrupted_by="test")
    # the handed-over blocks were the writer's alone: refilling the next buffer did not change them
    ep_a, ep_b = Episode(tmp_path / "a.zarr"), Episode(tmp_path / "b.zarr")
    assert (len(ep_a), ep_a.status, len(ep_b), ep_b.status) == (40, "complete", 40, "partial")
    np.testing.assert_array_equal(ep_a["frames"][:, 0, 0, 0], np.arange(40) % 256)
    np.testing.assert_array_equal(ep_b["value"][:], (np.arange(1000, 1040) / 3).astype(np.float32))
    assert json.loads(ep_b["events"][2]) == [{"step": 1002}] and ep_b["events"][3] == ""


def test_a_failed_write_surfaces_in_the_caller_and_stops_the_writer(tmp_path):
    (tmp_path / "a_file").write_text("not a directory")
    background = BlockWriter(max_pending=4)
    broken = EpisodeWriter(tmp_path / "a_file" / "ep.zarr", SPECS, writer=background)  # created on the writer
    with pytest.raises(WriterError, match="background writer") as failure:
        for i in range(100):
            broken.append(_step(i))
        background.drain()
    assert isinstance(failure.value.__cause__, OSError)
    with pytest.raises(WriterError):
        EpisodeWriter(tmp_path / "ok.zarr", SPECS, writer=background)  # nothing more is accepted
    with pytest.raises(WriterError):
        background.close()
    with pytest.raises(WriterError):  # without a shared writer the failure is raised by the call itself
        EpisodeWriter(tmp_path / "a_file" / "ep2.zarr", SPECS)


def test_an_interrupted_hand_over_loses_nothing(tmp_path, monkeypatch):
    submit, calls = BlockWriter.submit, []

    def interrupted_once(self, task):
        calls.append(task)
        if len(calls) == 3:  # creating the group, block 0..16, then Ctrl-C while handing over block 16..32
            raise KeyboardInterrupt
        submit(self, task)

    monkeypatch.setattr(BlockWriter, "submit", interrupted_once)
    with BlockWriter(max_pending=4) as background:
        writer = EpisodeWriter(tmp_path / "ep.zarr", SPECS, writer=background)
        with pytest.raises(KeyboardInterrupt):
            for i in range(40):
                writer.append(_step(i))
        assert (len(writer), writer.n_committed) == (32, 16)  # the block was not handed over: still buffered
        writer.close("partial", interrupted_by="KeyboardInterrupt")
    ep = Episode(tmp_path / "ep.zarr")
    assert len(ep) == 32 and ep.status == "partial"
    np.testing.assert_array_equal(ep["value"][:], (np.arange(32) / 3).astype(np.float32))


def test_a_missing_or_corrupt_chunk_is_named_not_read_as_zeros(tmp_path):
    from vptlens.recordings.store import DamagedEpisodeError

    path = tmp_path / "ep.zarr"
    with EpisodeWriter(path, SPECS) as writer:
        for i in range(100):
            writer.append(_step(i))
        writer.close()
    episode = Episode(path)
    assert len(episode["value"][10:20]) == 10  # a whole episode reads
    shutil.rmtree(path / "frames" / "c" / "5")  # steps 40..47
    episode = Episode(path)
    assert len(episode["frames"][:40]) == 40 and len(episode["frames"][48:]) == 52  # the chunks that are there
    with pytest.raises(DamagedEpisodeError, match=r"frames: chunk 5 \(steps 40..47\) is missing"):
        episode["frames"][30:50]
    with pytest.raises(DamagedEpisodeError, match="chunk 5"):
        episode["frames"][-60]
    (path / "value" / "c" / "0").write_bytes(b"not zstd")
    with pytest.raises(DamagedEpisodeError, match="value: the stored data cannot be read"):
        Episode(path)["value"][:5]
    (path / "zarr.json").write_text("{broken")
    with pytest.raises(DamagedEpisodeError, match=r"zarr.json cannot be read"):
        Episode(path)


BYTE_SPECS = {
    **SPECS,
    "flag": ArraySpec((), "bool", chunk_steps=8),
    "pose": ArraySpec((5,), "float32", chunk_steps=8),
    "action/minerl/attack": ArraySpec((), "uint8", chunk_steps=8),
    "action/buttons": ArraySpec((), "int32", chunk_steps=8),
}


def _byte_step(i: int) -> dict:
    return {
        **_step(i),
        "flag": np.bool_(i % 5 == 0),
        "pose": np.linspace(-i, i, 5, dtype=np.float32),
        "action/minerl/attack": np.uint8(i % 2),
        "action/buttons": np.int32(8640 - i),
    }


def _chunk_files(root) -> dict:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "/c/" in str(p.relative_to(root)) + "/" and p.name != "zarr.json"
    }


@pytest.mark.parametrize("expected_steps", [0, 20, 200])
def test_direct_chunk_files_are_the_ones_zarr_writes(tmp_path, expected_steps):
    """Whole chunks are encoded and written by recordings/chunks.py, not by zarr: every chunk file must hold the bytes
    zarr itself writes for the same data, and zarr must read the episode back unchanged."""
    n = 37  # whole blocks (direct) and a final partial one (through zarr)
    path = tmp_path / "direct.zarr"
    with EpisodeWriter(path, BYTE_SPECS, expected_steps=expected_steps) as writer:
        for i in range(n):
            writer.append(_byte_step(i))
        writer.close("complete")
    assert writer._direct and all(d is not None for d in writer._direct.values())
    reference = zarr.open_group(str(tmp_path / "zarr.zarr"), mode="w", zarr_format=3)
    for name, spec in BYTE_SPECS.items():
        values = [_byte_step(i)[name] for i in range(n)]
        data = np.array(values, dtype=object) if spec.dtype == TEXT else np.array(values, dtype=spec.dtype)
        arr = reference.create_array(
            name,
            shape=(n, *spec.shape),
            chunks=(spec.chunk_steps, *spec.shape),
            dtype=str if spec.dtype == TEXT else spec.dtype,
            config={"write_empty_chunks": True},
        )
        arr[:] = data
        got = zarr.open_group(str(path), mode="r")[name][:]
        if spec.dtype == TEXT:
            assert list(got) == values
        else:
            np.testing.assert_array_equal(got, data)
    ours, theirs = _chunk_files(path), _chunk_files(tmp_path / "zarr.zarr")
    whole = {k for k in theirs if int(k.split("/c/")[1].split("/")[0]) < n // 8}  # chunks written whole by both
    assert whole and all(ours[k] == theirs[k] for k in whole), "a directly written chunk differs from zarr's"
    assert not list(path.rglob("*.partial")), "a temporary chunk file was left behind"


def test_direct_writes_only_what_they_can_reproduce(tmp_path):
    from vptlens.recordings.chunks import DirectChunks

    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w", zarr_format=3)
    plain = group.create_array("plain", shape=(0, 3), chunks=(8, 3), dtype="float32")
    assert DirectChunks.of(plain._async_array) is not None
    split = group.create_array("split", shape=(0, 4), chunks=(8, 2), dtype="float32")  # two chunks per step
    assert DirectChunks.of(split._async_array) is None
    other = group.create_array("blosc", shape=(0,), chunks=(8,), dtype="float32", compressors=zarr.codecs.BloscCodec())
    assert DirectChunks.of(other._async_array) is None
    with pytest.raises(ValueError, match="whole chunks"):
        DirectChunks.of(plain._async_array).write(4, np.zeros((8, 3), np.float32))


def test_freed_memory_is_kept_where_the_c_library_is_glibc():
    """`vptlens record` keeps freed memory in the process (recordings/allocator.py): on glibc every setting must be
    accepted (a refused one would silently bring back the page faults); elsewhere it says it did nothing."""
    import platform

    from vptlens.recordings.allocator import keep_freed_memory

    applied = keep_freed_memory()
    assert applied is keep_freed_memory()  # once per process, the same answer
    assert applied == (platform.libc_ver()[0] == "glibc")


def _documents(root) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("zarr.json"))}


@pytest.mark.parametrize("length", [0, 64])
def test_episode_layout_files_are_the_ones_zarr_writes(tmp_path, length):
    """An episode's groups and arrays are created from documents zarr built in memory (recordings/layout.py): each
    document must be the bytes zarr's local store writes for the same calls, for the first episode of a layout and for
    later ones (built once, cached), and the arrays handed back must write and read through zarr."""
    from vptlens.recordings import layout

    async def reference():
        return await layout.build(str(tmp_path / "zarr.zarr"), BYTE_SPECS, length)

    asyncio.run(reference())
    theirs = _documents(tmp_path / "zarr.zarr")
    assert len(theirs) == len(BYTE_SPECS) + 4  # each array, the root and the groups action, action/minerl, attention
    groups = {}
    for name in ("first", "second"):
        path = tmp_path / f"{name}.zarr"
        groups[name], arrays = asyncio.run(layout.create(path, BYTE_SPECS, length))
        assert _documents(path) == theirs, f"the {name} episode's zarr.json files differ from zarr's"
        assert set(arrays) == set(BYTE_SPECS) and all(a.store_path.store.root == path for a in arrays.values())

    # episodes written side by side keep their own attributes (zarr updates a group's attributes in place)
    async def label(name: str, **attrs):
        await groups[name].update_attributes(attrs)

    asyncio.run(label("first", seed=1))
    asyncio.run(label("second", seed=2))
    asyncio.run(label("first", committed_length=5))
    asyncio.run(label("second", committed_length=7))
    for name, attrs in (("first", {"seed": 1, "committed_length": 5}), ("second", {"seed": 2, "committed_length": 7})):
        assert json.loads((tmp_path / f"{name}.zarr" / "zarr.json").read_text())["attributes"] == attrs

    # the handed-back arrays are zarr's own: a resize and a write land on disk, and zarr reads them
    async def write():
        await arrays["pose"].resize((3, 5))
        await arrays["pose"].setitem(slice(0, 3), np.arange(15, dtype=np.float32).reshape(3, 5))

    asyncio.run(write())
    np.testing.assert_array_equal(zarr.open_group(str(path))["pose"][:], np.arange(15).reshape(3, 5))

    asyncio.run(layout.create(path, BYTE_SPECS, length))  # creating over an episode replaces it, as mode "w" did
    assert _documents(path) == theirs and not list(path.rglob("c"))
