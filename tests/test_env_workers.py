"""`EnvPool`: BlockWorld envs stepped in worker processes give what the same envs give in process."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vptlens.envs import make
from vptlens.envs.blockworld import BlockWorldConfig
from vptlens.envs.scenes import as_scene
from vptlens.envs.vector import EnvPool, EnvWorkerError
from vptlens.minerl_spec import MINERL_BUTTONS

CFG = BlockWorldConfig(72, 128)


def _actions(rng: np.random.Generator, n: int) -> list[dict]:
    """Random MineRL actions: walking, jumping, attacking, turning (so the worlds change and the frames differ)."""
    actions = []
    for _ in range(n):
        action = {key: int(rng.random() < 0.3) for key in MINERL_BUTTONS}
        action["camera"] = (rng.normal(size=2) * 5).astype(np.float32)
        actions.append(action)
    return actions


def _assert_same(a, b, where: str = "") -> None:
    """Exact equality of nested obs / infos: arrays bit for bit (with their dtypes), everything else by ==."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert a == b, where


def test_workers_step_bit_identical_to_in_process_envs():
    """300 steps of 3 envs with seeds and a scene, some steps on a subset: workers (1 and 2) and in-process envs
    return the same frames, obs and infos, bit for bit."""
    scene = as_scene("tree_at_spot")
    n_envs, seeds = 3, [11, 12, 13]
    reference = [make(CFG, scene=scene) for _ in range(n_envs)]
    pools = [EnvPool(CFG, n_envs, n_workers, scene=scene) for n_workers in (0, 1, 2)]
    try:
        expected = [env.reset(seed=seed) for env, seed in zip(reference, seeds)]
        for pool in pools:
            _assert_same(list(zip(*pool.reset(seeds))), expected, "reset")
        rng = np.random.default_rng(0)
        for t in range(300):
            indices = [0, 2] if t % 7 == 3 else [0, 1, 2]  # a subset now and then, as a recorder with ended episodes
            actions = _actions(rng, len(indices))
            expected = [reference[i].step(a) for i, a in zip(indices, actions)]
            for pool in pools:
                _assert_same(pool.step(actions, indices), expected, f"step {t} with {pool.n_workers} workers")
    finally:
        for pool in pools:
            pool.close()


def test_halves_stepped_in_turn_with_step_async_give_what_lockstep_gives():
    """As a pipelined recorder steps them: half A sent, half B collected, B sent, A collected, ... The results are
    the in-process envs' own; steps are collected in the order sent, and an env is never stepped twice at once."""
    n_envs, seeds = 4, [3, 4, 5, 6]
    reference = [make(CFG) for _ in range(n_envs)]
    expected_resets = [env.reset(seed=seed) for env, seed in zip(reference, seeds)]
    halves = ([0, 1], [2, 3])
    rng = np.random.default_rng(2)
    for n_workers in (0, 1, 2):
        with EnvPool(CFG, n_envs, n_workers) as pool:
            _assert_same(list(zip(*pool.reset(seeds))), expected_resets, "reset")
            sent = [pool.step_async(_actions(rng, 2), half) for half in halves]
            with pytest.raises(ValueError, match=r"envs \[0, 1\] have a step outstanding"):
                pool.step_async(_actions(rng, 2), halves[0])
            with pytest.raises(ValueError, match="in the order they were sent"):
                pool.wait(sent[1])
            with pytest.raises(ValueError, match="before a reset"):
                pool.reset([0], [0])
            for t in range(20):
                half = halves[t % 2]
                results = pool.wait(sent.pop(0))
                assert [r[4]["step"] for r in results] == [t // 2 + 1] * 2, f"{n_workers} workers, turn {t}"
                sent.append(pool.step_async(_actions(rng, 2), half))
            for pending in sent:
                pool.wait(pending)
    # the same action sequence, in lockstep in process, gives the same frames
    rng = np.random.default_rng(2)
    sequences = {0: [], 1: []}
    for half_index in (0, 1):
        sequences[half_index].append(_actions(rng, 2))
    for t in range(20):
        sequences[t % 2].append(_actions(rng, 2))
    with EnvPool(CFG, n_envs, 2) as pool:
        pool.reset(seeds)
        pending = [pool.step_async(sequences[h][0], halves[h]) for h in (0, 1)]
        got = {0: [], 1: []}
        for t in range(20):
            h = t % 2
            got[h].append(pool.wait(pending.pop(0)))
            pending.append(pool.step_async(sequences[h][t // 2 + 1], halves[h]))
        for p in pending:
            pool.wait(p)
    for h in (0, 1):
        for k, results in enumerate(got[h]):
            expected = [reference[i].step(a) for i, a in zip(halves[h], sequences[h][k])]
            _assert_same(results, expected, f"half {h}, step {k}")


def test_a_worker_error_is_raised_with_its_traceback_and_the_pool_goes_on():
    with EnvPool(CFG, 2, 2) as pool:
        pool.reset([0, 1])
        with pytest.raises(EnvWorkerError, match=r"(?s)env worker 1 .*Traceback.*world\.py.*ValueError"):
            pool.step([{"camera": np.zeros(3)}], [1])
        results = pool.step(_actions(np.random.default_rng(1), 2))
        assert [r[4]["step"] for r in results] == [1, 1]  # the failed step was refused before the tick


class NotAnEnvConfig(BlockWorldConfig):
    """Has a frame size, so the parent starts a worker; `envs.make` refuses it there."""


def test_a_bad_env_config_fails_at_start_with_the_worker_traceback():
    with pytest.raises(EnvWorkerError, match=r"(?s)env worker 0 .*Traceback.*NotAnEnvConfig is not an env config"):
        EnvPool(NotAnEnvConfig(32, 32), 1, 1)


def test_close_stops_the_workers_and_frees_the_frames():
    pool = EnvPool(CFG, 3, 2)
    processes = [w.process for w in pool._workers]
    shm_name = pool._shm.name
    pool.close()
    assert not any(p.is_alive() for p in processes)
    assert not Path("/dev/shm", shm_name.lstrip("/")).exists()
    with pytest.raises(ValueError, match="closed"):
        pool.step([{}])


def test_bad_indices_and_counts_say_how_to_fix_them():
    with EnvPool(CFG, 2) as pool:
        with pytest.raises(ValueError, match="one per env"):
            pool.reset([0])
        with pytest.raises(ValueError, match="distinct indices in 0..1"):
            pool.reset([0, 1], [0, 0])
        assert len(pool.envs) == 2
    with EnvPool(CFG, 1, 1) as pool, pytest.raises(ValueError, match="n_workers=0"):
        _ = pool.envs


_PARENT = """
import sys, time
from vptlens.envs.blockworld import BlockWorldConfig
from vptlens.envs.vector import EnvPool
if __name__ == "__main__":
    pool = EnvPool(BlockWorldConfig(32, 32), 2, 2)
    print(" ".join(str(w.process.pid) for w in pool._workers), flush=True)
    time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"  # a zombie has exited


def test_workers_exit_when_the_parent_is_killed(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(_PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
    finally:
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids), "env workers outlived their killed parent"
