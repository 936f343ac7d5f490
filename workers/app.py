"""The worker side of ``celery -A tasks worker -Q face``, wired in this one place.

Celery imports this module when a worker starts (``imports`` in ``tasks.config``; the API
and other producers never do).  It registers the task implementations on ``tasks.app.app``
and connects Celery's signals, once, to the worker hooks (``workers.hooks``): model
loading, heartbeats, scaling hints and, unless ``VISIONQ_METRICS=0``, metrics.

One job's walk through the worker, each step calling down into the next file, never back:

1. Celery runs a task below in a pool process (``task_prerun`` -> ``Hooks.before_task``);
   the task calls ``workers.delivery.run_delivery``, which decides whether this delivery
   may claim more of its queue's jobs (``workers.claim.claim_request``).
2. ``workers.runner.run_job`` runs the job: ``JobStore.begin`` on the queue's Redis
   (``workers.stores``: mark running, read the record and the image, one round trip),
   then ``_work`` (decode; ``workers.runtime.model_for`` -> ``predict``) comes to a
   ``Verdict``.
3. ``run_job`` builds one ``workers.finish.Finish`` (the verdict, the blob to delete, the
   scaling hints, and the delivery's ``Rides``: a claimed job's ack, the next claim) and
   ``workers.finish.apply`` sends it once (``JobStore.succeed``/``fail``, one round trip);
   ``run_job`` returns a ``JobOutcome`` with the jobs that finish claimed.
4. ``run_delivery`` runs each claimed job through steps 2-3 in turn, as a task of its own
   for the hooks, its ack riding on its finish (``workers.claim.ack_commands``); what
   cannot run here is given back (``workers.claim.give_back``).
5. The task returns the delivered job's ``JobOutcome``: ``task_postrun`` ->
   ``Hooks.after_task`` -> each hook.
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
from visionq.settings import get_settings
from workers import broker_check, shard_check
from workers.custom.hooks import CustomModelsScan
from workers.delivery import ClaimBudget, run_delivery
from workers.hooks import Heartbeats, Hooks, ModelLoading, ScalingHints
from workers.hooks_metrics import MetricsHook
from workers.latency import LatencyClasses, critical_queues, keeps_children
from workers.queues import consumed_queues
from workers.request import JobRequest
from workers.runner import JobOutcome

log = logging.getLogger("visionq.worker")


def build_hooks() -> Hooks:
    """The worker's hooks, in the order they run."""
    hooks = Hooks()
    hooks.add(LatencyClasses())  # first: runtimes' threads inherit the lowered priority
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
budget = ClaimBudget()
"""This pool process's room for claiming (``workers.delivery``), kept by ``SignalBridge``."""


# -- the tasks: one per queue, each runs one job -----------------------------------------

class JobTask(Task):
    """Base class of visionq's tasks: its requests fail the job on a hard time limit."""

    Request = JobRequest


def _run(task: Task, queue: str, job_id: str) -> JobOutcome:
    return run_delivery(queue, job_id, task.request.hostname or "unknown", hooks, budget)


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

def _hostname(request: Any) -> str:
    return getattr(request, "hostname", None) or "unknown"


class SignalBridge:
    """Turns Celery's signals into ``Hooks`` events: finds the queues a worker consumes,
    times each task (prerun -> postrun) and names tasks by their queue.  Signals about
    tasks that are not visionq's are ignored."""

    def __init__(self, hooks: Hooks, budget: ClaimBudget | None = None) -> None:
        self.hooks = hooks
        self.budget = budget if budget is not None else ClaimBudget()
        """This pool process's room for claiming: its worker's pool processes, the jobs it
        ran."""
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
        self.budget.concurrency = int(getattr(sender, "concurrency", None) or 1)
        self.hooks.on_worker_init(list(self.queues))
        if sender is not None and keeps_children(self.queues, critical_queues(get_settings())):
            sender.max_tasks_per_child = None  # read when the pool is created, after this
            self.budget.recycled = False
            log.info("queues %s are latency-critical: pool processes are replaced only past "
                     "the memory limit, never by job count", ",".join(self.queues))

    def worker_process_init(self, **_: Any) -> None:
        self.started.clear()  # a fresh pool process: forget the parent's bookkeeping
        self.budget.jobs_run = 0
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
        if outcome is not None and outcome.claimed:
            seconds = outcome.seconds  # the task also ran the jobs it claimed
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


broker_check.connect()  # first: kombu/Celery outside the verified range stop the worker
shard_check.connect()  # then: a worker on the wrong Redis stops before loading models
bridge = SignalBridge(hooks, budget)
bridge.connect()
