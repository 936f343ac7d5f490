"""The worker side of ``celery -A tasks worker -Q face``, wired in this one place.

Celery imports this module when a worker starts (``imports`` in ``tasks.config``; the API
and other producers never do).  It registers the task implementations on ``tasks.app.app``
and connects Celery's signals, once, to the worker hooks (``workers.hooks``): model
loading, heartbeats, scaling hints and, unless ``VISIONQ_METRICS=0``, metrics.

One job's path: a task below -> ``workers.runner.run_job`` (returns a ``JobOutcome``) ->
``task_postrun`` -> ``Hooks.after_task`` -> each hook.  Jobs the delivery claimed from a
deep queue (``workers.claim``) run next in the same task, each with its own
``before_task``/``after_task``.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from celery import Task, signals
from celery.exceptions import SoftTimeLimitExceeded

from monitoring.settings import metrics_enabled
from tasks.app import app
from tasks.signatures import TASK_NAMES, enqueue, queue_of
from visionq.custom_models import CUSTOM_QUEUE
from visionq.jobs import ClaimRequest
from visionq.settings import get_settings
from workers import broker_check, shard_check
from workers.claim import START_WITHIN, Claimed, ack_commands, claim_request, give_back
from workers.custom.hooks import CustomModelsScan
from workers.hooks import Heartbeats, Hooks, ModelLoading, ScalingHints
from workers.hooks_metrics import MetricsHook
from workers.latency import LatencyClasses
from workers.queues import consumed_queues
from workers.request import JobRequest
from workers.runner import JobOutcome, claim_host, queue_client, run_job

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


# -- the tasks: one per queue, each runs one job -----------------------------------------

class JobTask(Task):
    """Base class of visionq's tasks: its requests fail the job on a hard time limit."""

    Request = JobRequest


def _run(task: Task, queue: str, job_id: str) -> JobOutcome:
    started = time.monotonic()
    hostname = task.request.hostname or "unknown"
    settings = get_settings()
    bridge.jobs_run += 1
    if settings.claim_max <= 1 or not bridge.may_claim(settings.worker_max_tasks_per_child):
        return run_job(queue, job_id, hostname, hooks.on_model_loaded)
    host = claim_host(queue)
    claim = claim_request(queue, TASK_NAMES[queue], job_id, 1, bridge.concurrency,
                          settings.visibility_timeout_s, host)
    outcome = run_job(queue, job_id, hostname, hooks.on_model_loaded, claim=claim)
    if outcome.claimed:
        run_claimed(queue, job_id, hostname, list(outcome.claimed), claim, host,
                    settings.claim_max - 1,
                    started + START_WITHIN * settings.soft_time_limit_s)
    return outcome


def run_claimed(queue: str, delivery_id: str, hostname: str, claimed: list[Claimed],
                claim: ClaimRequest, host: str | None, most: int,
                claim_before: float) -> None:
    """Run the jobs the delivery of ``delivery_id`` claims, one after another, each as a
    task of its own for the hooks: each one's finish claims the next while fewer than
    ``most`` were run and the clock is before ``claim_before`` (``workers.claim``).  What
    cannot run here is given back."""
    runs = 0
    current = None
    limit = get_settings().worker_max_tasks_per_child
    try:
        while claimed:
            current = claimed[0]
            runs += 1
            bridge.jobs_run += 1
            more = (runs < most and time.monotonic() < claim_before
                    and bridge.may_claim(limit))
            hooks.before_task(queue, current.job_id, hostname)
            ack = [*ack_commands(delivery_id, current.tag),
                   *([] if more else claim.end_commands())]
            outcome = run_job(queue, current.job_id, hostname, hooks.on_model_loaded,
                              claim=claim if more else None, ack=ack, claimed=True)
            claimed.pop(0)
            claimed += outcome.claimed
            hooks.after_task(queue, current.job_id, hostname, outcome, outcome.seconds)
    except SoftTimeLimitExceeded:
        log.warning("job %s: its delivery's soft time limit came first; giving it back to "
                    "run under a limit of its own", current and current.job_id)
    except Exception:  # noqa: BLE001 - e.g. Redis gone for good: the rest goes back
        log.exception("job %s: a claimed job could not run; giving the rest back",
                      current and current.job_id)
    if claimed:
        _give_back(queue, delivery_id, claimed, host)
    log.info("job %s: its delivery also ran %d claimed %s job(s)", delivery_id,
             runs - len(claimed), queue)


def _give_back(queue: str, delivery_id: str, claimed: list[Claimed], host: str | None) -> None:
    try:
        back = give_back(queue_client(queue), queue, delivery_id,
                         [item.tag for item in claimed], host)
        log.info("job %s: gave %d claimed job(s) back to %s", delivery_id, back, queue)
    except Exception:  # noqa: BLE001 - kombu restores them after the visibility timeout
        log.exception("job %s: could not give claimed jobs back; they return after the "
                      "visibility timeout", delivery_id)


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

    def __init__(self, hooks: Hooks) -> None:
        self.hooks = hooks
        self.queues: list[str] = []
        self.concurrency = 1
        """The worker's pool processes (``-c``): claiming leaves the others their share."""
        self.jobs_run = 0
        """Jobs this pool process ran (claimed ones included)."""
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
        self.concurrency = int(getattr(sender, "concurrency", None) or 1)
        self.hooks.on_worker_init(list(self.queues))

    def may_claim(self, max_tasks_per_child: int | None) -> bool:
        """Whether this pool process may claim another job: Celery replaces it after
        ``max_tasks_per_child`` deliveries, so one that has run that many jobs claims no
        more (it runs fewer than twice as many before it is replaced)."""
        return not max_tasks_per_child or self.jobs_run < max_tasks_per_child

    def worker_process_init(self, **_: Any) -> None:
        self.started.clear()  # a fresh pool process: forget the parent's bookkeeping
        self.jobs_run = 0
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
bridge = SignalBridge(hooks)
bridge.connect()
