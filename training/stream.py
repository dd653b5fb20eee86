"""Demonstrations generated on the fly: B BlockWorld episodes stepped side by side, labelled by the expert.

Raw frames are 49 kB each at 128x128, so millions of them are not stored: each training update asks the stream
for the next chunk of T steps of every row (VPT's BC layout: a row is one contiguous episode stream, `first`
marks where a new episode begins). Who drives a row's episode is decided when it starts: the expert with
probability `beta`, otherwise the learner (DAgger): the learner's sampled actions move the world, the expert
labels every state it reaches, and the learner is trained on those labels.

Every episode's seed is a function of (stream seed, row, episode number), and who drives it of that seed, so a
stream (and a resumed one) is reproducible from its counters, however its rows are split among processes.
"""

import dataclasses
import itertools
from dataclasses import dataclass

import numpy as np
import torch

from vptlens.agents.actions import factored_to_minerl, minerl_to_factored
from vptlens.agents.agent import preprocess_frames
from vptlens.agents.distributions import sample_actions
from vptlens.agents.policy import PolicyState, VPTPolicy
from vptlens.envs.blockworld import BlockWorldConfig, BlockWorldEnv
from vptlens.training.expert import ChopperExpert, log_in_reach

TRAIN_SEED_BASE = 1_000_000
"""Training episodes use world seeds from here up; evaluation uses seeds below it (held out)."""


def episode_seed(stream_seed: int, row: int, episode: int) -> int:
    """The world seed of a row's n-th episode: distinct across rows, episodes and streams, never an eval seed."""
    return int(TRAIN_SEED_BASE + np.random.SeedSequence([stream_seed, row, episode]).generate_state(1)[0] % 2**30)


@dataclass
class Chunk:
    """T steps of B rows: what the policy saw and what the expert would have done."""

    frames: np.ndarray
    """(B, T, H, W, 3) uint8."""
    first: np.ndarray
    """(B, T) bool: a new episode starts at this step."""
    buttons: np.ndarray
    """(B, T) int64: the expert's button class."""
    camera: np.ndarray
    """(B, T) int64: the expert's camera class."""
    learner_driven: np.ndarray
    """(B, T) bool: the learner's action moved the world at this step."""
    log_in_reach: np.ndarray
    """(B, T) bool: the frame's crosshair is on a log within reach (where the expert holds attack)."""
    logs_broken: int
    """Logs broken during the chunk, over every row."""


class DemoStream:
    """B BlockWorld episodes, each driven by the expert or the learner, every step labelled by the expert."""

    def __init__(
        self,
        rows: int,
        env_config: BlockWorldConfig,
        seed: int,
        episodes_done: list[int] | None = None,
        sight: str = "oracle",
        frame_size: tuple[int, int] | None = None,
        first_row: int = 0,
        explore: str = "walk",
    ):
        self.env_config = env_config
        self.first_row = first_row  # rows are numbered across the feeders that share a batch
        self.frame_size = tuple(frame_size or env_config.resolution)
        self.seed = seed
        self.sight = sight
        self.explore = explore
        self.envs = [BlockWorldEnv(env_config) for _ in range(rows)]
        self.experts: list[ChopperExpert] = [ChopperExpert() for _ in range(rows)]
        self.episodes_done = list(episodes_done or [0] * rows)
        self.obs: list[dict] = [{}] * rows
        self.info: list[dict] = [{}] * rows
        self.first = np.ones(rows, bool)
        self.learner_drives = np.zeros(rows, bool)
        self._beta = 1.0
        self._started = False  # episodes start at the first chunk, whose beta decides who drives them
        self._state: PolicyState | None = None  # the learner's memory over the rows, from its first DAgger step

    @property
    def rows(self) -> int:
        return len(self.envs)

    def _start_episode(self, row: int) -> None:
        world_seed = episode_seed(self.seed, self.first_row + row, self.episodes_done[row])
        self.obs[row], self.info[row] = self.envs[row].reset(seed=world_seed)
        # its exploration seeded by the episode
        self.experts[row] = ChopperExpert(seed=world_seed, sight=self.sight, explore=self.explore)
        self.first[row] = True
        self.learner_drives[row] = np.random.default_rng([world_seed, 1]).random() >= self._beta

    def next_chunk(self, steps: int, beta: float, learner: VPTPolicy | None, generator: torch.Generator) -> Chunk:
        """The next `steps` steps of every row. Episodes starting in this chunk are learner-driven with probability
        1 - beta (a `learner` is needed when beta < 1)."""
        if beta < 1 and learner is None:
            raise ValueError("DAgger (beta < 1) needs the learner to drive episodes")
        self._beta = beta
        if not self._started:
            for row in range(self.rows):
                self._start_episode(row)
            self._started = True
        b, (h, w) = self.rows, self.frame_size
        chunk = Chunk(
            frames=np.zeros((b, steps, h, w, 3), np.uint8),
            first=np.zeros((b, steps), bool),
            buttons=np.zeros((b, steps), np.int64),
            camera=np.zeros((b, steps), np.int64),
            learner_driven=np.zeros((b, steps), bool),
            log_in_reach=np.zeros((b, steps), bool),
            logs_broken=0,
        )
        for t in range(steps):
            labels = [self.experts[r].act(self.envs[r], self.info[r]) for r in range(b)]
            actions = labels
            frames = preprocess_frames(np.stack([self.obs[r]["pov"] for r in range(b)]), self.frame_size)
            if learner is not None and self.learner_drives.any():
                actions = self._learner_actions(learner, frames, generator, labels)
            for r in range(b):
                buttons, camera = minerl_to_factored(labels[r])
                chunk.buttons[r, t], chunk.camera[r, t] = buttons[0], camera[0]
            chunk.frames[:, t], chunk.first[:, t] = frames, self.first
            chunk.learner_driven[:, t] = self.learner_drives
            chunk.log_in_reach[:, t] = [log_in_reach(self.info[r]) for r in range(b)]
            self.first[:] = False
            for r in range(b):
                self.obs[r], _, terminated, truncated, self.info[r] = self.envs[r].step(actions[r])
                chunk.logs_broken += sum(
                    e["type"] == "block_broken" and e["block"].endswith("_log") for e in self.info[r]["events"]
                )
                if terminated or truncated:
                    self.episodes_done[r] += 1
                    self._start_episode(r)
        return chunk

    def _learner_actions(self, learner: VPTPolicy, frames: np.ndarray, generator, labels: list[dict]) -> list[dict]:
        """The learner steps the rows it drives and acts there. Who drives is fixed at an episode's start, whose
        `first` clears the row's memory, so the memory of the other rows is never read: they are not stepped
        (at beta 0.5, about half the rows: the policy was most of the worker's time in a DAgger round)."""
        if self._state is None:
            self._state = learner.initial_state(self.rows)
        device = learner.device
        rows = np.flatnonzero(self.learner_drives)
        index = torch.from_numpy(rows).to(device)
        out, state = learner.step(
            torch.from_numpy(frames[rows]).to(device), torch.from_numpy(self.first[rows]).to(device),
            self._state.select(index),
        )  # fmt: skip
        for whole, part in zip((*self._state.keys, *self._state.values), (*state.keys, *state.values), strict=True):
            whole[index] = part
        self._state.valid[index] = state.valid
        buttons, camera = sample_actions(out, generator=generator)
        sampled = factored_to_minerl(buttons.cpu().numpy(), camera.cpu().numpy())
        actions = list(labels)
        for j, row in enumerate(rows):
            actions[row] = sampled[j]
        return actions


class StreamWorker:
    """The rows' `DemoStream`s in worker processes, one chunk ahead of the trainer: the envs and the expert step
    while the trainer trains on the previous chunk (on 2 cores, data generation was ~40% of an in-process update).

    `feeders` processes share the rows (row numbers, hence episode seeds and who drives, are global: an expert
    round's data is the same whatever their number; a DAgger round's sampled actions are seeded per feeder).
    `request(steps, beta, weights)` asks for the next chunk; `weights` (a state dict, when the learner drives some
    episodes) refreshes the workers' copies of the learner first, so a DAgger chunk is driven by the weights of
    one update earlier. `receive()` returns (chunk, episodes done per row). The workers are stopped by `close()`.
    """

    def __init__(self, rows: int, env_config: BlockWorldConfig, seed: int, episodes_done: list[int],
                 policy_config: dict, sight: str = "oracle", feeders: int = 1, explore: str = "walk"):  # fmt: skip
        import multiprocessing

        from vptlens.envs.workers import worker_environment

        if not 1 <= feeders <= rows:
            raise ValueError(f"feeders={feeders}: give 1 to {rows} (the rows are split among them)")
        context = multiprocessing.get_context("spawn")
        self.first_rows = [int(part[0]) for part in np.array_split(np.arange(rows), feeders)]
        bounds = [*self.first_rows, rows]
        self.requests, self.results, self.processes = [], [], []
        with worker_environment():
            for lo, hi in itertools.pairwise(bounds):
                requests, results = context.Queue(), context.Queue()
                args = (requests, results, lo, hi - lo, env_config, seed, episodes_done[lo:hi], policy_config, sight,
                        explore)  # fmt: skip
                process = context.Process(target=_serve, args=args, daemon=True, name=f"vptlens-demo-stream-{lo}")
                process.start()
                self.requests.append(requests)
                self.results.append(results)
                self.processes.append(process)

    def request(self, steps: int, beta: float, sample_seed: int, weights: dict | None) -> None:
        for requests in self.requests:
            requests.put((steps, beta, sample_seed, weights))

    def receive(self, timeout_s: float = 600.0) -> tuple[Chunk, list[int]]:
        import queue

        parts = []
        for results, process in zip(self.results, self.processes, strict=True):
            try:
                result = results.get(timeout=timeout_s)
            except queue.Empty:
                alive = "is alive but produced nothing" if process.is_alive() else "died"
                raise RuntimeError(f"the demonstration worker {alive} in {timeout_s:.0f} s") from None
            if isinstance(result, str):
                raise RuntimeError(f"the demonstration worker failed:\n{result}")
            parts.append(result)
        if len(parts) == 1:
            return parts[0]
        chunks = [chunk for chunk, _ in parts]
        arrays = [f.name for f in dataclasses.fields(Chunk) if f.name != "logs_broken"]  # each (B, ...): rows join
        joined = Chunk(
            **{name: np.concatenate([getattr(c, name) for c in chunks]) for name in arrays},
            logs_broken=sum(c.logs_broken for c in chunks),
        )
        return joined, [n for _, done in parts for n in done]

    def close(self) -> None:
        for requests, process in zip(self.requests, self.processes, strict=True):
            if process.is_alive():
                requests.put(None)
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()


def _serve(requests, results, first_row, rows, env_config, seed, episodes_done, policy_config, sight, explore) -> None:
    """The worker's loop: one chunk per request, the learner's weights refreshed when sent."""
    import signal
    import traceback

    from vptlens.agents.config import PolicyConfig
    from vptlens.envs.workers import init_worker

    init_worker()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the trainer saves, then stops us
    try:
        learner = VPTPolicy(PolicyConfig(**_config_kwargs(policy_config))).eval()
        size = learner.cfg.img_shape[:2]
        stream = DemoStream(rows, env_config, seed, episodes_done, sight, size, first_row, explore=explore)
        while (request := requests.get()) is not None:
            steps, beta, sample_seed, weights = request
            if weights is not None:
                learner.load_state_dict(weights)
            feeder_seed = np.random.SeedSequence([sample_seed, first_row]).generate_state(1)[0]
            generator = torch.Generator().manual_seed(int(feeder_seed))
            chunk = stream.next_chunk(steps, beta, learner if beta < 1 else None, generator)
            results.put((chunk, list(stream.episodes_done)))
    except Exception:
        results.put(traceback.format_exc())


def _config_kwargs(config: dict) -> dict:
    """`PolicyConfig.to_dict()` back into constructor arguments (JSON lists into tuples)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
