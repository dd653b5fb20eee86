"""What the player and the lists read from an episode: behaviour summaries, traces, frame sprites, attention chunks,
key frames and context strips, each cached.

Frames travel as JPEG sprites of SPRITE_STEPS steps: scrubbing within one costs the browser nothing, a jump
anywhere costs one small image, and the server reads each store chunk of frames once (LRU caches of decoded
chunks and of sprites). The full-resolution frames an episode may store (`frames_full`, the recorder's
--full-frames) travel the same way, in sprites of their own. Attention travels per store chunk, one layer and one
head (or their mean) at a time, as raw float32 in the store's lag layout (column M = now, column M-k = k frames
back, masked keys exactly 0).
"""

import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path

import cv2
import numpy as np

from vptlens.agents.actions import MINERL_BUTTONS, VPT_BUTTONS, class_to_buttons
from vptlens.interventions.metrics import EpisodeGroundTruth, get_metric
from vptlens.probes.attention import AttentionConfig
from vptlens.probes.attention_stats import detect_key_frames, episode_sums, lag_order
from vptlens.recordings.schema import FRAMES, FRAMES_FULL
from vptlens.recordings.store import CommittedArray, Episode
from vptlens.viewer.actions import KEYS
from vptlens.viewer.registry import NotFound

SPRITE_STEPS = 16
"""Steps per frame sprite: a jump anywhere costs one small image (4 x 4 frames of 128 px, ~100 kB)."""
SPRITE_COLUMNS = 4
JPEG_QUALITY = 90
MAX_STRIP_FRAMES = 33
KEY_FRAME_RULE = AttentionConfig(run=Path("."))
"""Key frames are detected with `vptlens attention`'s default thresholds (key_ratio, key_floor, key_min_lag)."""
MAX_KEY_FRAMES = 200
"""Key-frame markers shown per episode and layer (the most detected)."""


class LRU:
    """A small thread-safe least-recently-used cache: `get(key, make)` computes on a miss."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Hashable, make: Callable[[], object]):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
        value = make()  # outside the lock: two threads may both compute a missing item, never block each other
        with self._lock:
            self.misses += 1
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


def _floats(a, digits: int = 4) -> list:
    """A float array as a JSON list, rounded; non-finite values as null (JSON has no NaN)."""
    a = np.asarray(a, np.float64).reshape(-1)
    return [v if math.isfinite(v) else None for v in np.round(a, digits).tolist()]


def encode_jpeg(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    if not ok:
        raise ValueError("could not encode the frame as JPEG")
    return buf.tobytes()


def behaviour(episode: Episode, gt: EpisodeGroundTruth | None = None) -> dict:
    """Hits, kills and logs of an episode, from its ground truth events (`interventions.metrics`): every mob hit and
    killed, the hits on the scene's target, logs broken. None where the episode records no events (MineRL)."""
    if not episode.has_ground_truth("events") or len(episode) == 0:
        return {"hits": None, "kills": None, "target_hits": None, "target_killed": None, "logs": None}
    gt = gt or EpisodeGroundTruth(episode)
    count = lambda kind: sum(e.get("type") == kind for row in gt.events for e in row)
    return {
        "hits": count("entity_attacked"),
        "kills": count("entity_killed"),
        "target_hits": get_metric("hits").fn(gt),
        "target_killed": get_metric("target_killed").fn(gt),
        "logs": get_metric("logs_broken").fn(gt),
    }


def _event_label(event: dict) -> str:
    what = event.get("entity_type") or event.get("block") or event.get("item") or ""
    return f"{event.get('type', '?')} {str(what).removeprefix('minecraft:')}".strip()


class EpisodeData:
    """Opens served episodes and computes (and caches) what the viewer shows of them."""

    def __init__(self, sprite_cache: int = 1024, attention_cache: int = 1024):
        self.sprites = LRU(sprite_cache)
        self.attention_chunks = LRU(attention_cache)
        self.frame_chunks = LRU(32)
        self.full_chunks = LRU(4)  # 16 full frames a chunk (MineRL's 640x360: 11 MB decoded), read once per sprite
        self.arrays = LRU(1024)
        self.trace_cache = LRU(16)
        self.summaries = LRU(4096)
        self.key_frame_cache = LRU(64)
        self.episodes = LRU(256)

    def open(self, path: Path) -> Episode:
        """The episode at `path`, reopened when its attributes change (a run being recorded commits more steps)."""
        stamp = os.stat(path / "zarr.json").st_mtime_ns if (path / "zarr.json").exists() else 0
        return self.episodes.get((path, stamp), lambda: Episode(path))

    @staticmethod
    def _key(episode: Episode) -> tuple:
        return (episode.path, episode.length, episode.status)

    def _array(self, episode: Episode, name: str, get: Callable[[], CommittedArray]) -> CommittedArray:
        """An array of the episode, opened once (opening reads its metadata: ~1 ms to tens of ms)."""
        return self.arrays.get((*self._key(episode), name), get)

    # ------------------------------------------------------------------ lists

    def summary(self, episode: Episode, gt: EpisodeGroundTruth | None = None) -> dict:
        """One row of the runs page: status, length, scene, seed and the behaviour summary."""

        def make() -> dict:
            meta = episode.meta
            scene = (meta.scene or {}).get("name") if isinstance(meta.scene, dict) else meta.scene
            return {
                "name": episode.path.name,
                "status": episode.status,
                "length": len(episode),
                "scene": scene,
                "seed": meta.seed,
                "edit": (meta.intervention or {}).get("kind"),
                **behaviour(episode, gt),
            }

        return self.summaries.get(self._key(episode), make)

    # ------------------------------------------------------------------ the player

    def meta(self, episode: Episode) -> dict:
        """What the player needs to show frames and attention at once: shapes and metadata (reads no array data)."""
        frames = self._array(episode, FRAMES, lambda: episode.frames)
        full = episode.frames_full
        layers = episode.layers
        heads = memory = 0
        attention_chunk = 64
        if layers:
            pattern = self._array(episode, f"attention/{layers[0]}", lambda: episode.attention(layers[0]))
            heads, lags = pattern.shape[1:]
            memory, attention_chunk = lags - 1, int(pattern.array.chunks[0])
        meta = episode.meta
        return {
            "name": episode.path.name,
            "status": episode.status,
            "length": len(episode),
            "frame_size": list(frames.shape[1:3]),
            "full_frame_size": None if full is None else list(full.shape[1:3]),
            "sprite_steps": SPRITE_STEPS,
            "sprite_columns": SPRITE_COLUMNS,
            "attention_chunk": attention_chunk,
            "layers": layers,
            "heads": int(heads),
            "memory": int(memory),
            "seed": meta.seed,
            "scene": meta.scene,
            "env": meta.env.id,
            "intervention": meta.intervention,
        }

    def traces(self, episode: Episode) -> dict:
        """The whole episode's traces (value, entropy, reward, camera, keys pressed), its events and behaviour summary
        (cached). The player asks for them beside its first frame: reading them costs per array and per store chunk
        (~0.25 ms a chunk, 94 chunks per array at 6000 steps), so the keys pressed come from the one array of the
        joint button class the agent took (`action/buttons`; the MineRL keys sent are its image under VPT's
        mapping), not from one array per key."""
        return self.trace_cache.get(self._key(episode), lambda: self._traces(episode))

    def _traces(self, episode: Episode) -> dict:
        n = len(episode)
        gt = EpisodeGroundTruth(episode) if episode.has_ground_truth("events") else None
        events = []
        for t, row in enumerate(gt.events if gt is not None else []):
            for event in row:
                events.append({"step": t, "type": event.get("type", "?"), "label": _event_label(event)})
        camera = np.asarray(episode.minerl_action("camera")[:], np.float64).reshape(n, 2)
        return {
            "summary": self.summary(episode, gt),
            "traces": {
                "value": _floats(episode.value[:]),
                "entropy_buttons": _floats(episode.entropy("buttons")[:]),
                "entropy_camera": _floats(episode.entropy("camera")[:]),
                "reward": _floats(episode.reward[:]),
                "camera": [_floats(camera[:, 0], 2), _floats(camera[:, 1], 2)],
                "keys": self._keys(episode),
            },
            "events": events,
        }

    @staticmethod
    def _keys(episode: Episode) -> dict[str, str]:
        """Each key pressed at least once: a string of 0/1 per step, in `actions.KEYS` order then the hotbar."""
        if episode.minerl_keys:  # what the env was sent, one array per key
            columns = {key: np.asarray(episode.minerl_action(key)[:]) > 0 for key in episode.minerl_keys}
        else:  # only the policy's joint classes
            pressed, _ = class_to_buttons(np.asarray(episode.action("buttons")[:]).astype(np.int64))
            columns = {key: pressed[:, VPT_BUTTONS.index(key)] for key in VPT_BUTTONS}
        order = [*KEYS, *(k for k in MINERL_BUTTONS if k not in KEYS)]
        return {k: "".join("1" if x else "0" for x in columns[k]) for k in order if k in columns and columns[k].any()}

    def _full_frames(self, episode: Episode) -> CommittedArray:
        if episode.frames_full is None:
            raise NotFound(
                f"{episode.path.name} stores no full-resolution frames; record with `vptlens record --full-frames`"
            )
        return self._array(episode, FRAMES_FULL, lambda: episode.frames_full)

    def _frames(self, episode: Episode, start: int, stop: int, full: bool = False) -> np.ndarray:
        """Frames start..stop-1 (the agent's, or the full-resolution ones), read a whole store chunk at a time (each
        chunk once: an LRU of decoded chunks)."""
        frames = self._full_frames(episode) if full else self._array(episode, FRAMES, lambda: episode.frames)
        chunks = self.full_chunks if full else self.frame_chunks
        if not 0 <= start < stop <= len(episode):
            raise IndexError(f"steps {start}..{stop - 1} out of range: {episode.path.name} has {len(episode)} steps")
        size = int(frames.array.chunks[0])
        parts = []
        for c in range(start // size, (stop - 1) // size + 1):
            chunk = chunks.get((*self._key(episode), c), lambda c=c: np.asarray(frames[c * size : (c + 1) * size]))
            parts.append(chunk[max(start - c * size, 0) : stop - c * size])
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def sprite(self, episode: Episode, block: int, full: bool = False) -> bytes:
        """The JPEG of steps block*SPRITE_STEPS.. in a grid of SPRITE_COLUMNS columns (step start + i at cell i), of
        the agent's frames or (`full`) the full-resolution ones."""

        def make() -> bytes:
            start = block * SPRITE_STEPS
            if not 0 <= start < len(episode):
                raise IndexError(f"sprite {block} out of range: {episode.path.name} has {len(episode)} steps")
            frames = self._frames(episode, start, min(len(episode), start + SPRITE_STEPS), full)
            n, h, w, c = frames.shape
            rows = math.ceil(n / SPRITE_COLUMNS)
            grid = np.zeros((rows * h, SPRITE_COLUMNS * w, c), np.uint8)
            for i, frame in enumerate(frames):
                y, x = divmod(i, SPRITE_COLUMNS)
                grid[y * h : (y + 1) * h, x * w : (x + 1) * w] = frame
            return encode_jpeg(grid)

        return self.sprites.get((*self._key(episode), block, full), make)

    def attention(self, episode: Episode, layer: int, head: str, chunk: int) -> bytes:
        """Chunk `chunk` (the attention array's store chunk) of block `layer`'s attention for one head ("0", "1", ...)
        or "mean": float32 (steps, M+1)."""
        pattern = self._array(episode, f"attention/{layer}", lambda: episode.attention(layer))  # KeyError: layers
        n_heads = pattern.shape[1]
        if head != "mean" and not (head.isdigit() and int(head) < n_heads):
            raise ValueError(f"head {head!r}: give 'mean' or a head index 0..{n_heads - 1}")
        size = int(pattern.array.chunks[0])
        start = chunk * size
        if not 0 <= start < len(episode):
            raise IndexError(f"chunk {chunk} out of range: {episode.path.name} has {len(episode)} steps")

        def make() -> bytes:
            block = np.asarray(pattern[start : start + size], np.float32)  # (n, heads, M+1)
            rows = block.mean(1) if head == "mean" else block[:, int(head)]
            return np.ascontiguousarray(rows, "<f4").tobytes()

        return self.attention_chunks.get((*self._key(episode), layer, head, chunk), make)

    def key_frames(self, episode: Episode, layer: int) -> list[dict]:
        """Past frames that drew attention far above their lag's usual share, in block `layer` (any head): the
        detections of `vptlens attention`'s rule against the episode's own per-head lag profile, grouped by the
        step of the frame attended to; the MAX_KEY_FRAMES most detected, in step order."""

        def make() -> list[dict]:
            stored = np.asarray(episode.attention(layer)[:])  # (n, heads, M+1) float16
            rule = KEY_FRAME_RULE
            counts: dict[int, int] = {}
            heads_of: dict[int, set[int]] = {}
            for head in range(stored.shape[1]):
                a = lag_order(stored[:, [head]])  # (n, 1, lags), lag order, float64
                sums, n_valid, _, _ = episode_sums(a, rule.recent_lags)
                profile = np.where(n_valid > 0, sums / np.maximum(n_valid, 1), np.nan)
                idx, _ = detect_key_frames(a, profile, rule.key_ratio, rule.key_floor, rule.key_min_lag)
                for t, _, k in idx:
                    s = int(t - k)
                    counts[s] = counts.get(s, 0) + 1
                    heads_of.setdefault(s, set()).add(head)
            top = sorted(counts, key=lambda s: (-counts[s], s))[:MAX_KEY_FRAMES]
            return [{"step": s, "detections": counts[s], "heads": sorted(heads_of[s])} for s in sorted(top)]

        if len(episode) == 0:
            return []
        return self.key_frame_cache.get((*self._key(episode), layer), make)

    def strip(self, episode: Episode, steps: list[int], size: int) -> bytes:
        """The frames of `steps` side by side, each size x size (a context strip), as JPEG."""
        if not 1 <= len(steps) <= MAX_STRIP_FRAMES:
            raise ValueError(f"give 1..{MAX_STRIP_FRAMES} steps, got {len(steps)}")
        if not 16 <= size <= 256:
            raise ValueError(f"size {size}: give 16..256 pixels")
        tiles = []
        for t in steps:
            frame = self._frames(episode, t, t + 1)[0]
            interp = cv2.INTER_AREA if size < frame.shape[0] else cv2.INTER_NEAREST
            tiles.append(cv2.resize(frame, (size, size), interpolation=interp))
        return encode_jpeg(np.concatenate(tiles, 1))


def parse_steps(text: str) -> list[int]:
    """'3,4,5' -> [3, 4, 5]; ValueError with the fix otherwise."""
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"steps={text!r}: give whole numbers separated by commas, e.g. steps=10,12,14") from None
