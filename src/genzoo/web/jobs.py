"""Every computation of the web explorer is a job: run on a worker thread, never on the server's event loop.

A job has a time limit and can be cancelled; both take effect at the next progress report of a pixel-by-pixel
sampler (:mod:`genzoo.progress`), or when a queued job starts. A request waits a little for its job and answers
with the result, or with the job's state for the client to poll (progress, cancel). Each model computes one job at
a time (its lock); finished jobs are forgotten after a while.

Randomness: a job that takes a seed seeds torch's global generator, so a result is reproducible when no other job
runs at the same moment (torch has no per-thread generator the models could use).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import torch

from genzoo import progress
from genzoo.errors import GenzooError

log = logging.getLogger("genzoo.web")

KEPT_FINISHED = 200  # finished jobs remembered for polling clients


class Stopped(Exception):
    """A job was cancelled or ran past its time limit; the message says which."""


class Busy(Exception):
    """Too many jobs are waiting already."""


@dataclass
class Job:
    id: str
    label: str
    time_limit: float
    created: float = field(default_factory=time.monotonic)
    status: str = "queued"  # queued, running, done, failed (bad input), error (a fault), cancelled, timeout
    progress: float = 0.0
    result: dict[str, Any] | None = None
    error: str | None = None
    seconds: float | None = None  # computing time, queueing excluded
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)

    def report(self, done: int, total: int) -> None:
        """The progress reporter of :mod:`genzoo.progress`: records progress, stops a cancelled or late job."""
        self.progress = done / max(total, 1)
        if self.cancel_requested.is_set():
            raise Stopped("cancelled")
        if time.monotonic() - self.created > self.time_limit:
            raise Stopped(f"stopped at the time limit of {self.time_limit:g} s per request")

    def state(self) -> dict[str, Any]:
        return {
            "job": self.id,
            "status": self.status,
            "progress": round(self.progress, 4),
            "seconds": self.seconds,
            "result": self.result,
            "error": self.error,
        }


class Jobs:
    """A bounded pool of worker threads and the jobs they run."""

    def __init__(self, time_limit: float, workers: int = 2, max_waiting: int = 16) -> None:
        self.time_limit = time_limit
        self.max_waiting = max_waiting
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="genzoo-web")
        self.jobs: dict[str, Job] = {}
        self.guard = threading.Lock()

    def submit(self, label: str, work: Callable[[], dict[str, Any]], locks: list[threading.Lock]) -> Job:
        """Run ``work`` (a GenzooError is the user's mistake) holding ``locks``; raises :class:`Busy` when full."""
        with self.guard:
            waiting = sum(job.status == "queued" for job in self.jobs.values())
            if waiting >= self.max_waiting:
                raise Busy(f"{waiting} computations are waiting already; try again in a moment")
            job = Job(uuid.uuid4().hex, label, self.time_limit)
            self.jobs[job.id] = job
            self._forget_old()
        self.executor.submit(self._run, job, work, locks)
        return job

    def get(self, job_id: str) -> Job:
        with self.guard:
            return self.jobs[job_id]

    def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        job.cancel_requested.set()
        return job

    def shutdown(self) -> None:
        with self.guard:
            for job in self.jobs.values():
                job.cancel_requested.set()
        self.executor.shutdown(wait=True, cancel_futures=False)

    def _forget_old(self) -> None:
        finished = [job_id for job_id, job in self.jobs.items() if job.finished.is_set()]
        for job_id in finished[: max(0, len(finished) - KEPT_FINISHED)]:
            del self.jobs[job_id]

    def _run(self, job: Job, work: Callable[[], dict[str, Any]], locks: list[threading.Lock]) -> None:
        started = time.perf_counter()
        try:
            with ExitStack() as stack:
                for lock in locks:
                    stack.enter_context(lock)
                job.report(0, 1)  # a job cancelled or timed out while it waited stops here
                job.status = "running"
                stack.enter_context(progress.reporting(job.report))
                stack.enter_context(torch.no_grad())
                started = time.perf_counter()
                job.result = work()
            job.progress, job.status = 1.0, "done"
        except Stopped as err:
            job.status = "cancelled" if str(err) == "cancelled" else "timeout"
            job.error = str(err)
        except GenzooError as err:
            job.status, job.error = "failed", str(err)
        except Exception as err:  # a fault of genzoo's: the server keeps serving and says what happened
            log.exception("job %s (%s) failed", job.id, job.label)
            first_line = str(err).splitlines()[0] if str(err) else ""
            job.status, job.error = "error", f"internal error: {type(err).__name__}: {first_line}"
        finally:
            job.seconds = round(time.perf_counter() - started, 4)
            job.finished.set()
