"""Worker-side metrics through Celery signals (imported once by ``tasks/__init__.py``).

Task-level counters and ``celery_task_runtime`` follow celery-exporter; job-level outcomes
are recorded by ``workers.runner.run_job`` itself (``monitoring.record.record_job``) except
for the outcomes that never reach its end: poison jobs (its early return), revoked tasks
and exceptions escaping the task.

Model load time: ``workers.runtime.load_model`` is wrapped here at import, before
``worker_init`` loads any model, so the runtime needs no metrics code.

``install()`` (run at import) connects the handlers and wraps the loader unless
``VISIONQ_METRICS=0``, so a worker with metrics off pays nothing per task.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from typing import Any

from celery import signals

from monitoring.metrics import metrics, multiprocess_dir
from monitoring.record import record_job
from monitoring.settings import metrics_enabled
from visionq.settings import get_settings
from workers import runtime

log = logging.getLogger(__name__)

_started: dict[str, float] = {}
"""Task id -> perf_counter at prerun, in this process (one task at a time per child)."""
_IGNORED_FAILURES = {"WorkerLostError"}
"""Redelivered (``task_reject_on_worker_lost``): not a final outcome of the job."""


def _labels(task: Any) -> dict[str, str]:
    request = getattr(task, "request", None)
    delivery = getattr(request, "delivery_info", None) or {}
    name = getattr(task, "name", "") or ""
    queue = delivery.get("routing_key") or name.rpartition(".")[2] or "unknown"
    return {"name": name, "hostname": getattr(request, "hostname", None) or "unknown",
            "queue_name": queue}


def _job_task(name: str) -> str:
    return name.rpartition(".")[2]


def _on_prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    try:
        labels = _labels(task)
        m = metrics()
        m.task_started.labels(**labels).inc()
        m.worker_tasks_active.labels(hostname=labels["hostname"]).inc()
        _started[task_id or ""] = time.perf_counter()
    except Exception:  # noqa: BLE001 - metrics never break a task
        log.exception("task_prerun metrics failed")


def _on_postrun(task_id: str | None = None, task: Any = None, retval: Any = None,
                state: str | None = None, **_: Any) -> None:
    try:
        labels = _labels(task)
        m = metrics()
        started = _started.pop(task_id or "", None)
        if started is not None:
            m.task_runtime.labels(**labels).observe(time.perf_counter() - started)
            m.worker_tasks_active.labels(hostname=labels["hostname"]).dec()
        if state == "SUCCESS":
            m.task_succeeded.labels(**labels).inc()
        if isinstance(retval, dict) and retval.get("code") == "poison_job":
            record_job(_job_task(labels["name"]), "failed", "poison_job", None)
    except Exception:  # noqa: BLE001
        log.exception("task_postrun metrics failed")


def _on_failure(sender: Any = None, exception: BaseException | None = None,
                **_: Any) -> None:
    try:
        labels = _labels(sender)
        kind = type(exception).__name__ if exception is not None else "unknown"
        metrics().task_failed.labels(**labels, exception=kind).inc()
        if kind not in _IGNORED_FAILURES:
            code = "timeout" if "TimeLimit" in kind else "internal"
            record_job(_job_task(labels["name"]), "failed", code, None)
    except Exception:  # noqa: BLE001
        log.exception("task_failure metrics failed")


def _on_revoked(request: Any = None, sender: Any = None, **_: Any) -> None:
    try:
        name = getattr(sender, "name", None) or getattr(request, "task", "") or ""
        hostname = getattr(request, "hostname", None) or "unknown"
        delivery = getattr(request, "delivery_info", None) or {}
        queue = delivery.get("routing_key") or _job_task(name) or "unknown"
        metrics().task_revoked.labels(name=name, hostname=hostname, queue_name=queue).inc()
        record_job(_job_task(name), "revoked", None, None)
    except Exception:  # noqa: BLE001
        log.exception("task_revoked metrics failed")


def _on_child_start(**_: Any) -> None:
    # A fresh prefork child: forget the parent's bookkeeping (prometheus_client itself
    # switches to this pid's file on the first write).
    _started.clear()


def _on_child_exit(pid: int | None = None, **_: Any) -> None:
    _mark_dead(pid or os.getpid())


def _on_worker_exit(**_: Any) -> None:
    _mark_dead(os.getpid())


def _mark_dead(pid: int) -> None:
    """Drop this process's ``live*`` gauge files (``celery_worker_tasks_active``);
    counters and histograms stay, so totals survive a child's exit."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def _timed(load_model: Any) -> Any:
    if getattr(load_model, "_visionq_timed", False):
        return load_model

    @functools.wraps(load_model)
    def timed_load_model(task: str) -> Any:
        started = time.perf_counter()
        model = load_model(task)
        try:
            metrics().model_load.labels(task=task, model=get_settings().model_for(task)).observe(
                time.perf_counter() - started)
        except Exception:  # noqa: BLE001
            log.exception("model load metrics failed")
        return model

    timed_load_model._visionq_timed = True  # type: ignore[attr-defined]
    return timed_load_model


_HANDLERS = (
    (signals.task_prerun, _on_prerun), (signals.task_postrun, _on_postrun),
    (signals.task_failure, _on_failure), (signals.task_revoked, _on_revoked),
    (signals.worker_process_init, _on_child_start),
    (signals.worker_process_shutdown, _on_child_exit),
    (signals.worker_shutdown, _on_worker_exit),
)


def install() -> bool:
    """Connect the handlers and time model loads; idempotent.  False when metrics are off."""
    if not metrics_enabled():
        log.info("metrics off (VISIONQ_METRICS=0): no task hooks")
        return False
    for signal, handler in _HANDLERS:
        signal.connect(handler, weak=False, dispatch_uid=f"visionq-metrics:{handler.__name__}")
    runtime.load_model = _timed(runtime.load_model)
    return True


install()
