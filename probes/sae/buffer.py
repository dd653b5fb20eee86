"""Stream one recorded activation through a shuffle buffer: large sequential reads in, shuffled batches out.

The store is read with `iter_blocks` (whole chunks, one block in memory at a time) into a buffer of a
fixed number of rows kept as float16 (what the store holds, so nothing is lost). When the buffer is
full, half of it, drawn at random, goes out as float32 batches and the freed half is refilled; at the
end of an epoch what is left goes out shuffled. Every row therefore comes out exactly once per epoch,
and the whole run is never in memory. The order is a function of the seed only: episodes are visited
in a per-epoch random order, the draws come from one numpy generator, and the optional prefetch thread
is a single producer.
"""

import logging
import queue
import threading
from collections.abc import Iterator

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from vptlens.probes.sae.inputs import check_hook
from vptlens.recordings.store import Episode, iter_blocks

logger = logging.getLogger(__name__)


class ActivationBuffer:
    """Shuffled float32 batches of the hook's stored activations over `n_epochs` passes (None: forever).

    `float16=True` yields the stored float16 rows as they are, for a consumer that converts on its
    device (a GPU does it for free, and half the bytes cross the bus).

    Memory: `capacity` rows of float16 plus one read block of `block_steps` rows (plus, with
    prefetch, `prefetch_batches` finished batches). The last batch of an epoch may be short.
    """

    def __init__(
        self,
        episodes: list[Episode],
        hook_name: str,
        batch_size: int,
        capacity: int,
        seed: int = 0,
        n_epochs: int | None = 1,
        block_steps: int = 4096,
        prefetch_batches: int = 0,
        float16: bool = False,
    ):
        self.d = check_hook(episodes, hook_name)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if capacity < 2 * batch_size:
            raise ValueError(f"capacity ({capacity}) must be at least 2 x batch_size ({batch_size})")
        if n_epochs is not None and n_epochs < 1:
            raise ValueError(f"n_epochs must be >= 1 or None, got {n_epochs}")
        self.episodes, self.hook_name = episodes, hook_name
        self.batch_size, self.capacity, self.seed = batch_size, capacity, seed
        self.n_epochs, self.block_steps, self.prefetch_batches = n_epochs, block_steps, prefetch_batches
        self.float16 = float16
        self.n_rows = sum(len(e) for e in episodes)
        self.max_rows_held = 0
        """Most rows the buffer ever held (never above `capacity`)."""

    def _batches(self) -> Iterator[np.ndarray]:
        rng = np.random.default_rng(self.seed)
        buf = np.empty((self.capacity, self.d), dtype=np.float16)
        half = max(self.batch_size, (self.capacity // 2) // self.batch_size * self.batch_size)
        epoch = 0
        while self.n_epochs is None or epoch < self.n_epochs:
            # `free` lists the empty slots in fill order: all of them at the start of an epoch, then the
            # slots just drawn (refilling them in place saves moving the kept half)
            free, n_free = np.arange(self.capacity), self.capacity
            order = [self.episodes[i] for i in rng.permutation(len(self.episodes))]
            for _, _, block in iter_blocks(order, lambda e: e.activation(self.hook_name), self.block_steps):
                pos = 0
                while pos < len(block):
                    take = min(n_free, len(block) - pos)
                    slots = free[len(free) - n_free : len(free) - n_free + take]
                    if len(slots) and slots[-1] - slots[0] == take - 1:
                        buf[slots[0] : slots[0] + take] = block[pos : pos + take]  # contiguous: a plain copy
                    else:
                        buf[slots] = block[pos : pos + take]
                    n_free, pos = n_free - take, pos + take
                    self.max_rows_held = max(self.max_rows_held, self.capacity - n_free)
                    if n_free == 0:
                        out = rng.choice(self.capacity, size=half, replace=False)
                        for a in range(0, half, self.batch_size):
                            yield buf[out[a : a + self.batch_size]]
                        free, n_free = np.sort(out), half
            held = np.setdiff1d(np.arange(self.capacity), free[len(free) - n_free :], assume_unique=True)
            perm = rng.permutation(held)  # end of the epoch: flush what is left
            for a in range(0, len(perm), self.batch_size):
                yield buf[perm[a : a + self.batch_size]]
            epoch += 1

    def __iter__(self) -> Iterator[Float[Tensor, "b d"]]:
        batches = (torch.from_numpy(b) if self.float16 else torch.from_numpy(b).float() for b in self._batches())
        if self.prefetch_batches < 1:
            yield from batches
            return
        yield from _prefetch(batches, self.prefetch_batches)

    def __len__(self) -> int:
        """Batches per epoch."""
        return -(-self.n_rows // self.batch_size)


_DONE = object()


def _prefetch(source: Iterator, n: int) -> Iterator:
    """Run `source` in a background thread, `n` items ahead; re-raises its exceptions; stops it when closed."""
    q: queue.Queue = queue.Queue(maxsize=n)
    stop = threading.Event()

    def produce():
        try:
            for item in source:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_DONE)
        except BaseException as e:  # handed to the consumer
            q.put(e)

    thread = threading.Thread(target=produce, daemon=True, name="activation-prefetch")
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)


def estimate_mean_norm(episodes: list[Episode], hook_name: str, n_rows: int = 65536, block_steps: int = 4096) -> float:
    """Mean L2 norm of the first `n_rows` rows (in stored order), in float64; for the input scale."""
    total, count = 0.0, 0
    for _, _, block in iter_blocks(episodes, lambda e: e.activation(hook_name), block_steps):
        block = block[: n_rows - count].astype(np.float64)
        total += float(np.linalg.norm(block, axis=1).sum())
        count += len(block)
        if count >= n_rows:
            break
    if count == 0 or total == 0:
        raise ValueError(f"'{hook_name}' has no rows or only zeros in these episodes; nothing to scale or train on")
    return total / count


def sample_rows(episodes: list[Episode], hook_name: str, n_rows: int, seed: int) -> np.ndarray:
    """About `n_rows` rows for initialisation, float64: a random window of each episode, episodes in a seeded
    random order, until `n_rows` are in hand (reads about `n_rows` rows, never a whole large run)."""
    rng = np.random.default_rng(seed)
    per_episode = max(64, -(-n_rows // len(episodes)))
    rows, count = [], 0
    for i in rng.permutation(len(episodes)):
        arr = episodes[i].activation(hook_name)
        start = int(rng.integers(max(1, len(arr) - per_episode + 1)))
        rows.append(arr[start : start + per_episode].astype(np.float64))
        count += len(rows[-1])
        if count >= n_rows:
            break
    return np.concatenate(rows)[:n_rows]


def geometric_median(x: Float[np.ndarray, "n d"], n_iter: int = 100, tol: float = 1e-7) -> Float[np.ndarray, " d"]:
    """The point minimising the summed Euclidean distance to the rows (Weiszfeld's iteration, float64).

    SAELens initialises b_dec this way; it is the mean's robust cousin (outlier rows pull it less).
    """
    y = x.mean(axis=0)
    for _ in range(n_iter):
        dist = np.linalg.norm(x - y, axis=1)
        w = 1.0 / np.maximum(dist, 1e-12)
        y_new = (w[:, None] * x).sum(axis=0) / w.sum()
        if np.linalg.norm(y_new - y) <= tol * max(1.0, np.linalg.norm(y)):
            return y_new
        y = y_new
    return y
