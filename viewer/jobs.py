"""Background work of the server (an SAE's feature index, a closed-loop experiment): one thread per job, polled.

A request that needs such work starts it and answers at once with the job (HTTP 202); the page polls
`/api/jobs/<id>` for progress and shows the result (or the error) when it is done. The server keeps answering
meanwhile.
"""

import itertools
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from vptlens.viewer.registry import NotFound

logger = logging.getLogger(__name__)


@dataclass
class Job:
    id: str
    kind: str
    description: str
    status: str = "running"
    """running, done or failed."""
    progress: float = 0.0
    """0..1 where the work can tell, else 0 until done."""
    message: str = ""
    result: object = None
    error: str | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "description": self.description,
            "status": self.status,
            "progress": self.progress,
            "message": self.message,
            "result": self.result,
            "error": self.error,
            "seconds": (self.finished or time.time()) - self.started,
        }


class Pending(Exception):
    """The answer needs a background job that is still running (the app answers 202 with the job)."""

    def __init__(self, job: Job):
        super().__init__(job.description)
        self.job = job


class Jobs:
    """Jobs by id; `start(kind, description, fn)` runs `fn(job)` in a daemon thread and stores what it returns."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()

    def start(self, kind: str, description: str, fn: Callable[[Job], object]) -> Job:
        with self._lock:
            job = Job(f"j{next(self._ids)}", kind, description)
            self._jobs[job.id] = job

        def run() -> None:
            try:
                job.result = fn(job)
                job.progress, job.status = 1.0, "done"
            except Exception as e:  # the job's page shows it; the server goes on
                logger.error("job %s (%s) failed:\n%s", job.id, description, traceback.format_exc())
                job.error, job.status = f"{type(e).__name__}: {e}", "failed"
            job.finished = time.time()

        threading.Thread(target=run, name=f"vptlens-{job.id}", daemon=True).start()
        return job

    def get(self, job_id: str) -> Job:
        if job_id not in self._jobs:
            raise NotFound(f"no job {job_id!r}")
        return self._jobs[job_id]

    def all(self) -> list[Job]:
        return list(self._jobs.values())
