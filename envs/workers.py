"""Env worker processes on shared cores: one numba and one torch thread each, set before they start."""

import contextlib
import os

WORKER_ENV = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
"""Set in the parent before workers spawn: a worker imports numba (through the module it runs) before any
initializer runs, and numba reads its thread count at import. Two workers with two numba threads each were ~4x
slower on 2 cores than with one (8.5 s vs 33 s per experiment cell, measured)."""


@contextlib.contextmanager
def worker_environment():
    """`WORKER_ENV` in os.environ while processes are spawned, the parent's values restored after."""
    saved = {k: os.environ.get(k) for k in WORKER_ENV}
    os.environ.update(WORKER_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def init_worker() -> None:
    """In a worker: one numba and one torch thread (in case the process was started without `worker_environment`)."""
    import numba
    import torch

    numba.set_num_threads(1)
    torch.set_num_threads(1)
