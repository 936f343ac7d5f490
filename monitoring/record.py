"""Record job-level events where their outcome is known: ``record_submit`` in the API's
submit handler, ``record_job`` in the worker's metrics hook (``workers.hooks_metrics``)
with the outcome ``workers.runner.run_job`` returned.

Recording never raises: a metrics problem must not fail a job or a request; with
``VISIONQ_METRICS=0`` it records nothing.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from monitoring.metrics import Metrics, metrics, reason_for
from monitoring.settings import get_monitoring_settings, metrics_enabled

log = logging.getLogger(f"visionq.{__name__}")


def record_submit(task: str, m: Metrics | None = None) -> None:
    if m is None and not metrics_enabled():
        return
    try:
        (m or metrics()).jobs_submitted.labels(task=task).inc()
    except Exception:  # noqa: BLE001 - see module docstring
        log.exception("could not record a submitted %s job", task)


def record_job(task: str, outcome: str, code: str | None, job: Any | None,
               m: Metrics | None = None, slo_s: float | None = None,
               now: float | None = None, batch_size: int | None = 1) -> None:
    """Count a finished job and, when its record (``visionq.jobs.Job``: ``queued_at``,
    ``started_at``) is given, observe its stage latencies and goodput.

    ``now`` stands for the finish time: the worker calls this right after the job's task
    returned, so the record need not be read again.  ``batch_size`` is the number of images the
    model predicted together (the runner predicts one image per job).
    """
    if m is None and not metrics_enabled():
        return
    try:
        _record_job(task, outcome, code, job, m or metrics(), slo_s, now, batch_size)
    except Exception:  # noqa: BLE001 - see module docstring
        log.exception("could not record job metrics for a %s job", task)


def _record_job(task: str, outcome: str, code: str | None, job: Any | None, m: Metrics,
                slo_s: float | None, now: float | None, batch_size: int | None) -> None:
    m.jobs_completed.labels(task=task, outcome=outcome,
                            reason=reason_for(code if outcome == "failed" else None)).inc()
    if job is None:
        return
    now = time.time() if now is None else now
    queued, started = getattr(job, "queued_at", None), getattr(job, "started_at", None)
    if started is not None and queued is not None:
        m.job_latency.labels(task=task, stage="queue_wait").observe(max(0.0, started - queued))
    if started is not None:
        m.job_latency.labels(task=task, stage="inference").observe(max(0.0, now - started))
    if queued is not None:
        total = max(0.0, now - queued)
        m.job_latency.labels(task=task, stage="end_to_end").observe(total)
        slo = get_monitoring_settings().slo_for(task) if slo_s is None else slo_s
        within = m.jobs_within_slo.labels(task=task)  # exists at 0: a ratio, not "no data"
        if outcome == "succeeded" and total <= slo:
            within.inc()
    if outcome == "succeeded" and batch_size:
        m.batch_size.labels(task=task).observe(batch_size)
