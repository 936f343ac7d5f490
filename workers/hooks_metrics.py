"""The worker's Prometheus metrics, as a worker hook (``workers.hooks``).

Task-level counters and ``celery_task_runtime`` follow celery-exporter; job-level outcomes
(``visionq_jobs_completed``, stage latencies, goodput) come from the runner's
``JobOutcome`` through ``monitoring.record.record_job``, and from the events the runner
never sees the end of: exceptions escaping the task, hard time limits and revoked tasks.

``workers.app`` adds this hook only when metrics are on: with ``VISIONQ_METRICS=0`` it is
never called.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from prometheus_client import multiprocess

from monitoring.metrics import Metrics, metrics, multiprocess_dir
from monitoring.record import record_job
from tasks.signatures import TASK_NAMES
from workers.hooks import WorkerHook

if TYPE_CHECKING:
    from workers.runner import JobOutcome

log = logging.getLogger(f"visionq.{__name__}")

IGNORED_FAILURES = {"WorkerLostError"}
"""Redelivered (``task_reject_on_worker_lost``): not a final outcome of the job."""


class MetricsHook(WorkerHook):
    def __init__(self, m: Metrics | None = None) -> None:
        self._m = m
        """The metrics to write (tests pass their own); default: this process's."""

    @property
    def m(self) -> Metrics:
        return self._m if self._m is not None else metrics()

    @staticmethod
    def _labels(task: str, hostname: str) -> dict[str, str]:
        return {"name": TASK_NAMES[task], "hostname": hostname, "queue_name": task}

    def before_task(self, task: str, job_id: str, hostname: str) -> None:
        labels = self._labels(task, hostname)
        self.m.task_started.labels(**labels).inc()
        self.m.worker_tasks_active.labels(hostname=hostname).inc()

    def after_task(self, task: str, job_id: str, hostname: str, outcome: JobOutcome | None,
                   seconds: float | None) -> None:
        labels = self._labels(task, hostname)
        if seconds is not None:
            self.m.task_runtime.labels(**labels).observe(seconds)
            self.m.worker_tasks_active.labels(hostname=hostname).dec()
        if outcome is None:
            return  # the task raised: counted by on_task_failure
        self.m.task_succeeded.labels(**labels).inc()
        if outcome.final:
            record_job(task, outcome.outcome, outcome.code, outcome.job, m=self._m)

    def on_task_failure(self, task: str, job_id: str, hostname: str,
                        exception: BaseException | None) -> None:
        kind = type(exception).__name__ if exception is not None else "unknown"
        self.m.task_failed.labels(**self._labels(task, hostname), exception=kind).inc()
        if kind not in IGNORED_FAILURES:
            code = "timeout" if "TimeLimit" in kind else "internal"
            record_job(task, "failed", code, None, m=self._m)

    def on_task_revoked(self, task: str, job_id: str, hostname: str) -> None:
        self.m.task_revoked.labels(**self._labels(task, hostname)).inc()
        record_job(task, "revoked", None, None, m=self._m)

    def on_model_loaded(self, task: str, model: str, seconds: float) -> None:
        self.m.model_load.labels(task=task, model=model).observe(seconds)

    def on_child_exit(self, pid: int) -> None:
        _mark_dead(pid)

    def on_worker_shutdown(self) -> None:
        _mark_dead(os.getpid())


def _mark_dead(pid: int) -> None:
    """Drop this process's ``live*`` gauge files (``celery_worker_tasks_active``);
    counters and histograms stay, so totals survive a child's exit."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(pid)
