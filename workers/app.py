"""The worker side of ``celery -A tasks worker -Q face``, wired in this one place.

Celery imports this module when a worker starts (``imports`` in ``tasks.config``; the API
and other producers never do).  It registers the task implementations on ``tasks.app.app``
and connects Celery's signals, once, to the worker hooks (``workers.hooks``): model
loading, heartbeats, scaling hints and, unless ``VISIONQ_METRICS=0``, metrics.

One job's path: a task below -> ``workers.runner.run_job`` (returns a ``JobOutcome``) ->
``task_postrun`` -> ``Hooks.after_task`` -> each hook.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from celery import Task, signals

from monitoring.settings import metrics_enabled
from tasks.app import app
from tasks.signatures import TASK_NAMES, enqueue, queue_of
from visionq.custom_models import CUSTOM_QUEUE
from visionq.settings import QUEUES
from workers import shard_check
from workers.custom.hooks import CustomModelsScan
from workers.hooks import Heartbeats, Hooks, ModelLoading, ScalingHints
from workers.hooks_metrics import MetricsHook
from workers.request import JobRequest
from workers.runner import JobOutcome, run_job

log = logging.getLogger("visionq.worker")


def build_hooks() -> Hooks:
    """The worker's hooks, in the order they run."""
    hooks = Hooks()
    hooks.add(ModelLoading(on_loaded=hooks.on_model_loaded))
    hooks.add(CustomModelsScan())
    hooks.add(Heartbeats(enqueue=lambda task, job_id: enqueue(app, task, job_id)))
    hooks.add(ScalingHints())
    if metrics_enabled():
        hooks.add(MetricsHook())
    else:
        log.info("metrics off (VISIONQ_METRICS=0): no metrics hook")
    return hooks


hooks = build_hooks()


# -- the tasks: one per queue, each runs one job -----------------------------------------

class JobTask(Task):
    """Base class of visionq's tasks: its requests fail the job on a hard time limit."""

    Request = JobRequest


def _run(task: Task, queue: str, job_id: str) -> JobOutcome:
    return run_job(queue, job_id, task.request.hostname or "unknown", hooks.on_model_loaded)


@app.task(name=TASK_NAMES["face"], bind=True, base=JobTask)
def face(self: Task, job_id: str) -> JobOutcome:
    return _run(self, "face", job_id)


@app.task(name=TASK_NAMES["detect"], bind=True, base=JobTask)
def detect(self: Task, job_id: str) -> JobOutcome:
    return _run(self, "detect", job_id)


@app.task(name=TASK_NAMES["classify"], bind=True, base=JobTask)
def classify(self: Task, job_id: str) -> JobOutcome:
    return _run(self, "classify", job_id)


@app.task(name=TASK_NAMES[CUSTOM_QUEUE], bind=True, base=JobTask)
def custom(self: Task, job_id: str) -> JobOutcome:
    """Any custom model's job: the job's task (``custom/<name>``) says which."""
    return _run(self, CUSTOM_QUEUE, job_id)


# -- Celery signals -> hook events ------------------------------------------------------

def consumed_queues(worker: Any) -> list[str]:
    """The visionq queues a worker consumes (``-Q``; the built-in ones without it, though such
    a worker takes custom jobs too)."""
    selected = worker.app.amqp.queues.consume_from
    names = list(selected) if selected else list(QUEUES)
    return [name for name in names if name in (*QUEUES, CUSTOM_QUEUE)]


def _hostname(request: Any) -> str:
    return getattr(request, "hostname", None) or "unknown"


class SignalBridge:
    """Turns Celery's signals into ``Hooks`` events: finds the queues a worker consumes,
    times each task (prerun -> postrun) and names tasks by their queue.  Signals about
    tasks that are not visionq's are ignored."""

    def __init__(self, hooks: Hooks) -> None:
        self.hooks = hooks
        self.queues: list[str] = []
        self.started: dict[str, float] = {}
        """Task id -> ``perf_counter`` at prerun, in this process."""

    def connect(self) -> None:
        """Connect every handler; connecting again is a no-op."""
        for signal, handler in (
            (signals.worker_init, self.worker_init),
            (signals.worker_process_init, self.worker_process_init),
            (signals.worker_process_shutdown, self.worker_process_shutdown),
            (signals.worker_ready, self.worker_ready),
            (signals.worker_shutdown, self.worker_shutdown),
            (signals.task_prerun, self.task_prerun),
            (signals.task_postrun, self.task_postrun),
            (signals.task_failure, self.task_failure),
            (signals.task_revoked, self.task_revoked),
        ):
            signal.connect(handler, weak=False, dispatch_uid=f"visionq-hooks:{signal.name}")

    def worker_init(self, sender: Any = None, **_: Any) -> None:
        self.queues = consumed_queues(sender)
        self.hooks.on_worker_init(list(self.queues))

    def worker_process_init(self, **_: Any) -> None:
        self.started.clear()  # a fresh pool process: forget the parent's bookkeeping
        self.hooks.on_child_init()

    def worker_process_shutdown(self, pid: int | None = None, **_: Any) -> None:
        self.hooks.on_child_exit(pid or os.getpid())

    def worker_ready(self, sender: Any = None, **_: Any) -> None:
        self.hooks.on_worker_ready(getattr(sender, "hostname", None) or "worker",
                                   list(self.queues))

    def worker_shutdown(self, **_: Any) -> None:
        self.hooks.on_worker_shutdown()

    def task_prerun(self, task_id: str = "", task: Any = None, **_: Any) -> None:
        queue = queue_of(getattr(task, "name", "") or "")
        if queue is None:
            return
        self.started[task_id] = time.perf_counter()
        self.hooks.before_task(queue, task_id, _hostname(task.request))

    def task_postrun(self, task_id: str = "", task: Any = None, retval: Any = None,
                     **_: Any) -> None:
        queue = queue_of(getattr(task, "name", "") or "")
        if queue is None:
            return
        started = self.started.pop(task_id, None)
        seconds = None if started is None else time.perf_counter() - started
        outcome = retval if isinstance(retval, JobOutcome) else None
        self.hooks.after_task(queue, task_id, _hostname(task.request), outcome, seconds)

    def task_failure(self, sender: Any = None, task_id: str = "",
                     exception: BaseException | None = None, **_: Any) -> None:
        queue = queue_of(getattr(sender, "name", "") or "")
        if queue is not None:
            self.hooks.on_task_failure(queue, task_id, _hostname(sender.request), exception)

    def task_revoked(self, request: Any = None, sender: Any = None, **_: Any) -> None:
        name = getattr(sender, "name", None) or getattr(request, "task", "") or ""
        queue = queue_of(name)
        if queue is not None:
            self.hooks.on_task_revoked(queue, getattr(request, "id", "") or "",
                                       _hostname(request))


shard_check.connect()  # first: a worker on the wrong Redis stops before loading models
SignalBridge(hooks).connect()
