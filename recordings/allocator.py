"""Keep freed memory in the process (glibc), so the policy's large temporaries are not page-faulted in afresh.

Measured on the 2-core dev VM (benchmarks/RESULTS.md, `record.py`): with glibc's defaults, buffers above the
dynamic mmap threshold are mapped and unmapped per allocation, and the heap's top is trimmed back to the OS;
a recording loop, which also allocates and frees multi-MB blocks between policy steps, shifts those thresholds
so that the policy's own activations (MBs each at batch 8) come back as fresh pages: the same `policy.step`
ran 25-35% slower inside the recording loop than in a bare loop. Serving allocations up to 32 MB from the heap
and never trimming it brought the two within ~5-8% (per-step medians 39-40 vs 42 ms at batch 8). The cost
is that a process keeps its peak heap until it exits, which suits a long-running rollout whose working set
is steady.
"""

import ctypes
import ctypes.util
import logging

logger = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
"""glibc's upper limit for M_MMAP_THRESHOLD on 64-bit systems (a larger value is refused)."""

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Serve allocations up to 32 MB from the heap and never trim it (glibc's `mallopt`); once per process.

    Returns whether the settings are in force: False where the C library is not glibc (they are glibc's),
    which changes speed only, never results.
    """
    global _applied
    if _applied is not None:
        return _applied
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        _applied = False
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = all(
        mallopt(param, value) == 1
        for param, value in (
            (_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX),
            (_M_TRIM_THRESHOLD, 2**31 - 1),
            (_M_TOP_PAD, 64 * 1024 * 1024),
        )
    )
    if not _applied:
        logger.info("glibc's mallopt refused a setting: freed memory may be returned to the OS (slower steps)")
    return _applied
