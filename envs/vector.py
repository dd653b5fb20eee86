"""`EnvPool`: N envs stepped in lockstep, in this process or spread over W worker processes.

A BlockWorld step at VPT's 640x360 is mostly numba rendering on one core; stepping B envs one
after another leaves the other cores idle. With `n_workers > 0` env i lives in worker i % W (so
the first and the second half of the envs each span the workers), built by the same
`envs.make(env_cfg, scene=...)` call as in process, and the parent hands out one command per
worker and then collects the answers, so the workers step at the same time. Frames come back
through one `multiprocessing.shared_memory` block (a 640x360x3 frame is 0.7 MB: pickling it
through a pipe would cost as much as rendering), everything else (the small obs fields,
reward, flags, infos) through the pipe.

`step_async` sends a step and returns at once; `wait` collects it. Steps of disjoint env subsets may be
outstanding together and are collected in the order they were sent (each worker answers its commands in
order), which is what a recorder needs to step half the envs while its policy acts for the other half.

Envs are deterministic in their seed and actions, so a pool returns bit-identical
observations and infos whether it has 0, 1 or many workers (tests/test_env_workers.py).
Workers are spawned (no forked numba or torch state), with `worker_environment()` so each
has one numba thread, ignore Ctrl-C (the parent decides when to stop) and exit when the
parent's end of their pipe closes, so a killed parent leaves no orphans.
"""

import contextlib
import multiprocessing as mp
import signal
import traceback
from collections import deque
from collections.abc import Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.shared_memory import SharedMemory

import gymnasium
import numpy as np

from vptlens.envs.blockworld.env import BlockWorldConfig
from vptlens.envs.factory import make
from vptlens.envs.minerl_env import MineRLConfig
from vptlens.envs.scenes import Scene
from vptlens.envs.workers import worker_environment

EnvCfg = BlockWorldConfig | MineRLConfig

StepResult = tuple[dict, float, bool, bool, dict]
"""One env's `(obs, reward, terminated, truncated, info)`, as Gymnasium's `step` returns it."""

_JOIN_TIMEOUT_S = 10.0
"""How long `close()` waits for a worker to exit before terminating it."""


class EnvWorkerError(RuntimeError):
    """An env failed in a worker process (the message holds the worker's traceback), or a worker died."""


class EnvPool:
    """`n_envs` envs from `make(env_cfg, scene=scene)`, reset and stepped together, all or a subset at a time.

    `n_workers == 0` keeps them in this process (`envs` gives them to code that reads an env's state);
    `n_workers > 0` spreads them over that many processes (at most one per env). Use as a context manager,
    or call `close()`: it stops the workers and frees the shared frames.
    """

    def __init__(self, env_cfg: EnvCfg, n_envs: int, n_workers: int = 0, *, scene: Scene | None = None):
        if n_envs < 1:
            raise ValueError(f"n_envs {n_envs}: an env pool needs at least one env")
        if n_workers < 0:
            raise ValueError(f"n_workers {n_workers}: give 0 (envs in this process) or a positive number")
        self.n_envs = n_envs
        self.n_workers = min(n_workers, n_envs)
        self._local: list[gymnasium.Env] = []
        self._workers: list[_Worker] = []
        self._shm: SharedMemory | None = None
        self._outstanding: deque[PendingStep] = deque()
        if self.n_workers == 0:
            self._local = [make(env_cfg, scene=scene) for _ in range(n_envs)]
            return
        self._frame_shape = (env_cfg.height, env_cfg.width, 3)
        self._shm = SharedMemory(create=True, size=n_envs * int(np.prod(self._frame_shape)))
        self._frames_bhwc = np.ndarray((n_envs, *self._frame_shape), np.uint8, buffer=self._shm.buf)
        try:
            self._workers = _start_workers(env_cfg, scene, n_envs, self.n_workers, self._shm.name)
        except BaseException:
            self.close()
            raise

    @property
    def envs(self) -> list[gymnasium.Env]:
        """The env objects, for code that reads an env's state (a scripted agent); only without workers."""
        if self.n_workers:
            raise ValueError("the envs live in worker processes; build the pool with n_workers=0 to reach them")
        return self._local

    def reset(self, seeds: Sequence[int | None], indices: Sequence[int] | None = None) -> tuple[list, list]:
        """Reset envs `indices` (default all) with one seed each; their `(obs, info)` as two lists, in order."""
        indices = self._check(indices, seeds, "seeds")
        if self._outstanding:
            raise ValueError("wait for the outstanding steps before a reset")
        if not self._workers:
            pairs = [self._local[i].reset(seed=seed) for i, seed in zip(indices, seeds)]
        else:
            pairs = self._collect(self._send("reset", indices, seeds))
        return [obs for obs, _ in pairs], [info for _, info in pairs]

    def step(self, actions: Sequence[dict], indices: Sequence[int] | None = None) -> list[StepResult]:
        """Step envs `indices` (default all) with one action each; each env's 5-tuple, in order."""
        return self.wait(self.step_async(actions, indices))

    def step_async(self, actions: Sequence[dict], indices: Sequence[int] | None = None) -> "PendingStep":
        """Send a step of envs `indices` (default all) and return without waiting: `wait(...)` gives its results.
        In this process the envs step here and now (there is nothing to overlap with)."""
        indices = self._check(indices, actions, "actions")
        busy = {i for p in self._outstanding for i in p.indices}.intersection(indices)
        if busy:
            raise ValueError(f"envs {sorted(busy)} have a step outstanding: wait for it before stepping them again")
        if not self._workers:
            pending = PendingStep(indices, {}, [self._local[i].step(a) for i, a in zip(indices, actions)])
        else:
            pending = self._send("step", indices, actions)
        self._outstanding.append(pending)
        return pending

    def wait(self, pending: "PendingStep") -> list[StepResult]:
        """The results of a `step_async`, each env's 5-tuple in the order of its indices. Outstanding steps are
        collected in the order they were sent."""
        if not self._outstanding or self._outstanding[0] is not pending:
            raise ValueError("wait for outstanding steps in the order they were sent (each once)")
        self._outstanding.popleft()
        return pending.results if not self._workers else self._collect(pending)

    def close(self) -> None:
        """Close every env, stop the workers (terminated if they do not exit in time) and free the frames."""
        for env in self._local:
            env.close()
        self._local = []
        self._outstanding.clear()  # a worker answers what it was sent before it reads "close"
        for worker in self._workers:
            worker.stop()
        self._workers = []
        if self._shm is not None:
            self._frames_bhwc = None  # its memory is unmapped below
            self._shm.close()
            self._shm.unlink()
            self._shm = None

    def __enter__(self) -> "EnvPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check(self, indices: Sequence[int] | None, values: Sequence, what: str) -> list[int]:
        if not self._workers and not self._local:
            raise ValueError("this env pool is closed: make a new one")
        indices = list(range(self.n_envs)) if indices is None else list(indices)
        if len(values) != len(indices):
            raise ValueError(f"{len(values)} {what} for {len(indices)} envs: give one per env")
        if len(set(indices)) != len(indices) or not all(0 <= i < self.n_envs for i in indices):
            raise ValueError(f"env indices {indices}: give distinct indices in 0..{self.n_envs - 1}")
        return indices

    def _send(self, command: str, indices: list[int], args: Sequence) -> "PendingStep":
        """Send each worker its share of the command; the workers start at once."""
        shares: dict[int, list[tuple[int, object]]] = {}
        for position, (i, arg) in enumerate(zip(indices, args)):
            shares.setdefault(self._worker_of(i), []).append((position, (i, arg)))
        for w, share in shares.items():
            self._workers[w].send(command, [item for _, item in share])
        return PendingStep(indices, shares, command=command)

    def _collect(self, pending: "PendingStep") -> list:
        """Each worker's answers to a sent command, back in the order of its indices. Every worker that was sent
        something is answered before an error is raised, so the pipes stay in step."""
        results: list = [None] * len(pending.indices)
        error: EnvWorkerError | None = None
        for w, share in pending.shares.items():
            try:
                answers = self._workers[w].receive()
            except EnvWorkerError as e:
                error = error or e
                continue
            for (position, (i, _)), answer in zip(share, answers):
                results[position] = self._with_frame(i, answer, pending.command)
        if error is not None:
            raise error
        return results

    def _with_frame(self, i: int, answer: tuple, command: str) -> tuple:
        """Put env i's frame (a copy: the slot is rewritten at the next step) back into its obs."""
        obs = {"pov": self._frames_bhwc[i].copy(), **answer[0]}
        return (obs, *answer[1:]) if command == "step" else (obs, answer[1])

    def _worker_of(self, i: int) -> int:
        return i % len(self._workers)  # as `_start_workers` dealt them


class PendingStep:
    """A step (or reset) sent to the envs and not yet collected: `EnvPool.wait` takes it."""

    def __init__(self, indices: list[int], shares: dict, results: list | None = None, command: str = "step"):
        self.indices, self.shares, self.results, self.command = indices, shares, results, command


class _Worker:
    """The parent's handle on one worker process: its pipe, process and env indices."""

    def __init__(self, index: int, process: BaseProcess, conn: Connection, env_indices: range):
        self.index, self.process, self.conn, self.env_indices = index, process, conn, env_indices

    def send(self, command: str, payload) -> None:
        try:
            self.conn.send((command, payload))
        except (BrokenPipeError, ConnectionResetError) as e:
            raise self._died() from e

    def receive(self):
        try:
            status, payload = self.conn.recv()
        except (EOFError, ConnectionResetError) as e:
            raise self._died() from e
        if status == "error":
            raise EnvWorkerError(f"env worker {self.index} (envs {list(self.env_indices)}) failed:\n{payload}")
        return payload

    def stop(self) -> None:
        with contextlib.suppress(OSError):  # a broken pipe: the worker is gone already
            self.conn.send(("close", None))
        self.process.join(_JOIN_TIMEOUT_S)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()
        self.conn.close()

    def _died(self) -> EnvWorkerError:
        self.process.join(1.0)
        return EnvWorkerError(
            f"env worker {self.index} exited unexpectedly (exit code {self.process.exitcode}; a negative code is the "
            "signal that killed it, e.g. -9 when out of memory); its own error, if any, is on stderr. "
            "A script that starts workers needs an `if __name__ == '__main__':` guard (spawn re-imports it)"
        )


def _start_workers(env_cfg: EnvCfg, scene: Scene | None, n_envs: int, n_workers: int, shm_name: str) -> list[_Worker]:
    """Spawn the workers, env i in worker i % n_workers, and wait until each has built its envs (so a
    bad config fails here, with the worker's traceback)."""
    ctx = mp.get_context("spawn")
    workers = []
    with worker_environment():
        for w in range(n_workers):
            env_indices = range(w, n_envs, n_workers)
            parent_conn, child_conn = ctx.Pipe()
            process = ctx.Process(
                target=_worker_main,
                args=(child_conn, env_cfg, scene, env_indices, n_envs, shm_name),
                name=f"vptlens-env-worker-{w}",
                daemon=True,
            )
            process.start()
            child_conn.close()  # only the worker holds its end: its death is an EOF here
            workers.append(_Worker(w, process, parent_conn, env_indices))
    try:
        for worker in workers:
            worker.receive()  # "ready", or the error that building the envs raised
    except BaseException:
        for worker in workers:
            worker.stop()
        raise
    return workers


def _worker_main(
    conn: Connection, env_cfg: EnvCfg, scene: Scene | None, env_indices: range, n_envs: int, shm_name: str
) -> None:
    """A worker's loop: build its envs, then answer commands until "close" or until the parent is gone (EOF). A
    failing command is answered with its traceback and the worker carries on: the parent decides what to do."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the parent stops us
    # one numba thread comes from `worker_environment()` at spawn; not `init_worker()`, whose torch import would
    # add seconds to every worker's start for nothing (the envs never touch torch)
    shm = SharedMemory(name=shm_name)
    frames_bhwc = np.ndarray((n_envs, env_cfg.height, env_cfg.width, 3), np.uint8, buffer=shm.buf)
    envs: dict[int, gymnasium.Env] = {}
    try:
        try:
            envs = {i: make(env_cfg, scene=scene) for i in env_indices}
        except Exception:
            conn.send(("error", traceback.format_exc()))
            return
        conn.send(("ok", None))
        while True:
            command, payload = conn.recv()
            if command == "close":
                return
            try:
                message = ("ok", [_serve(envs, frames_bhwc, command, i, arg) for i, arg in payload])
            except Exception:
                message = ("error", traceback.format_exc())
            conn.send(message)
    except (EOFError, BrokenPipeError, ConnectionResetError):
        return  # the parent died: nobody is left to answer
    finally:
        for env in envs.values():
            env.close()
        del frames_bhwc  # release the buffer's export before closing the block
        shm.close()


def _serve(envs: dict[int, gymnasium.Env], frames_bhwc: np.ndarray, command: str, i: int, arg) -> tuple:
    """Run one env's reset or step; its frame goes to its shared slot, the rest back through the pipe."""
    if command == "reset":
        obs, *rest = envs[i].reset(seed=arg)
    elif command == "step":
        obs, *rest = envs[i].step(arg)
    else:
        raise ValueError(f"unknown env worker command {command!r}")
    pov = obs["pov"]
    if pov.shape != frames_bhwc.shape[1:]:
        raise ValueError(f"env {i} rendered a {pov.shape} frame; the pool expected {frames_bhwc.shape[1:]}")
    frames_bhwc[i] = pov
    return ({k: v for k, v in obs.items() if k != "pov"}, *rest)
