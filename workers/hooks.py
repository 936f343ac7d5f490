"""Worker hooks: one interface for everything that happens around jobs (after dramatiq's
middleware).

A hook subclasses ``WorkerHook`` and overrides the events it cares about; ``workers.app``
turns Celery's signals into these events and hands them to ``Hooks``, which calls every
hook in order.  The worker's own behaviour is hooks too: ``ModelLoading``, ``Heartbeats``
and ``ScalingHints`` here, ``workers.hooks_metrics.MetricsHook`` for Prometheus.

Events name the job task (the queue: ``face``, ``detect``, ``classify``) and the job id
(which is also the Celery task id).  ``after_task`` receives what ``workers.runner.run_job``
returned (``JobOutcome``); hooks record it (the runner finishes the job record and, on
the same round trips, may carry the scaling hints: ``JobOutcome.hints``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import redis

from visionq.broker import mark_busy, mark_done
from visionq.jobs import JobStore
from visionq.redis_conn import redis_client
from visionq.settings import QUEUES, get_settings
from visionq.shards import shard_map
from workers import runtime
from workers.heartbeat import Heartbeat
from workers.reaper import maybe_sweep
from workers.stores import hints_ride_along

if TYPE_CHECKING:
    from workers.runner import JobOutcome

log = logging.getLogger("visionq.worker")


class WorkerHook:
    """Every event a hook can handle; each does nothing unless overridden.

    Where each runs: ``on_worker_init``, ``on_worker_ready`` and ``on_worker_shutdown`` in
    the worker's main process; ``on_child_init``, ``on_child_exit``, ``before_task`` and
    ``after_task`` in the pool process that runs jobs (a prefork child);
    ``on_task_failure`` and ``on_task_revoked`` in either (a hard time limit or a lost
    child is seen by the main process).
    """

    def on_worker_init(self, queues: list[str]) -> None:
        """The worker starts consuming ``queues``, before the pool forks.  Raise
        ``SystemExit`` to refuse to start."""

    def on_child_init(self) -> None:
        """A pool process has started (after the fork)."""

    def on_child_exit(self, pid: int) -> None:
        """Pool process ``pid`` is about to exit."""

    def on_worker_ready(self, hostname: str, queues: list[str]) -> None:
        """The worker consumes its queues."""

    def on_worker_shutdown(self) -> None:
        """The worker is stopping (after its pool finished the jobs in hand)."""

    def on_model_loaded(self, task: str, model: str, seconds: float) -> None:
        """Model ``model`` for ``task`` was loaded and warmed up in this process."""

    def before_task(self, task: str, job_id: str, hostname: str) -> None:
        """Job ``job_id`` is about to run."""

    def after_task(self, task: str, job_id: str, hostname: str, outcome: JobOutcome | None,
                   seconds: float | None) -> None:
        """Job ``job_id``'s task returned ``outcome`` (``None``: it raised, see
        ``on_task_failure``) after ``seconds`` (``None`` if this process did not see it
        start)."""

    def on_task_failure(self, task: str, job_id: str, hostname: str,
                        exception: BaseException | None) -> None:
        """The task raised, hit its hard time limit or lost its pool process."""

    def on_task_revoked(self, task: str, job_id: str, hostname: str) -> None:
        """The task was revoked before it ran."""


class Hooks(WorkerHook):
    """Calls every hook in order.  A hook that raises is logged and the next one runs, so
    no cross-cutting concern can fail a job or stop the worker; ``SystemExit`` (a hook
    refusing to start the worker) is not caught."""

    def __init__(self, hooks: Iterable[WorkerHook] = ()) -> None:
        self.hooks = list(hooks)

    def add(self, hook: WorkerHook) -> None:
        self.hooks.append(hook)

    def _each(self, event: str, *args: object) -> None:
        for hook in self.hooks:
            try:
                getattr(hook, event)(*args)
            except Exception:  # noqa: BLE001 - see the class docstring
                log.exception("worker hook %s.%s failed", type(hook).__name__, event)

    def on_worker_init(self, queues: list[str]) -> None:
        self._each("on_worker_init", queues)

    def on_child_init(self) -> None:
        self._each("on_child_init")

    def on_child_exit(self, pid: int) -> None:
        self._each("on_child_exit", pid)

    def on_worker_ready(self, hostname: str, queues: list[str]) -> None:
        self._each("on_worker_ready", hostname, queues)

    def on_worker_shutdown(self) -> None:
        self._each("on_worker_shutdown")

    def on_model_loaded(self, task: str, model: str, seconds: float) -> None:
        self._each("on_model_loaded", task, model, seconds)

    def before_task(self, task: str, job_id: str, hostname: str) -> None:
        self._each("before_task", task, job_id, hostname)

    def after_task(self, task: str, job_id: str, hostname: str, outcome: JobOutcome | None,
                   seconds: float | None) -> None:
        self._each("after_task", task, job_id, hostname, outcome, seconds)

    def on_task_failure(self, task: str, job_id: str, hostname: str,
                        exception: BaseException | None) -> None:
        self._each("on_task_failure", task, job_id, hostname, exception)

    def on_task_revoked(self, task: str, job_id: str, hostname: str) -> None:
        self._each("on_task_revoked", task, job_id, hostname)


class ModelLoading(WorkerHook):
    """Load each consumed queue's model once, at start-up: a broken model stops the worker
    with a clear message instead of failing its first job.  A model that is not fork-safe
    is dropped before the fork and loaded again by each pool process."""

    def __init__(self, on_loaded: runtime.LoadListener | None = None) -> None:
        self.on_loaded = on_loaded
        self.queues: list[str] = []

    def on_worker_init(self, queues: list[str]) -> None:
        # The custom queue has no model of its own: each job loads its own (workers.custom).
        self.queues = [queue for queue in queues if queue in QUEUES]
        for queue in self.queues:
            try:
                model = runtime.load_model(queue, self.on_loaded)
            except Exception as exc:
                message = (f"visionq: cannot start a worker for queue {queue!r}: model "
                           f"{get_settings().model_for(queue)!r} failed to load: {exc}")
                log.critical(message)
                raise SystemExit(message) from exc
            if not model.fork_safe:
                runtime.forget(queue)  # each pool process loads its own copy after the fork

    def on_child_init(self) -> None:
        for queue in self.queues:
            if queue not in runtime.loaded():
                runtime.load_model(queue, self.on_loaded)


class Heartbeats(WorkerHook):
    """Keep ``visionq:worker:<hostname>`` fresh while the worker runs (``/readyz``, the
    autoscaler and the metrics read it), and sweep for jobs whose message was lost
    (``workers.reaper``) from the same thread."""

    def __init__(self, enqueue: Callable[[str, str], None]) -> None:
        self.enqueue = enqueue
        self.heartbeat: Heartbeat | None = None

    def on_worker_ready(self, hostname: str, queues: list[str]) -> None:
        settings = get_settings()
        client = redis_client(settings.redis_url)
        jobs = JobStore(client, settings.result_ttl_s)
        lost_after_s = settings.visibility_timeout_s + settings.reaper_grace_s

        def sweep() -> None:
            maybe_sweep(client, jobs, self.enqueue, lost_after_s, hostname)

        self.heartbeat = Heartbeat(client, hostname, queues, on_beat=sweep)
        self.heartbeat.start()
        log.info("visionq worker %s ready for queues %s", hostname, ", ".join(queues))

    def on_worker_shutdown(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()


class ScalingHints(WorkerHook):
    """What the autoscaler reads from the workers (``visionq.broker``): which hosts are
    running a job (scale-in protection) and each queue's recent service times.

    When the queue's jobs live on the main Redis (always, unless it is sharded elsewhere)
    the runner's begin and finish round trips carry these (``workers.stores.hints_ride_along``);
    this hook then writes only what a run that ended early left (a duplicate, an expired
    job, a task that raised: the busy mark to clear)."""

    def before_task(self, task: str, job_id: str, hostname: str) -> None:
        settings = get_settings()
        if hints_ride_along(shard_map(settings), task):
            return  # the job's begin round trip marks the host busy
        try:
            mark_busy(self._client(), settings.instance_id, job_id)
        except Exception as exc:  # noqa: BLE001 - scaling hints must never fail a job
            log.warning("could not mark %s busy: %s", job_id, exc)

    def after_task(self, task: str, job_id: str, hostname: str, outcome: JobOutcome | None,
                   seconds: float | None) -> None:
        if outcome is not None and outcome.hints:
            return  # the job's finishing round trip carried them
        try:
            mark_done(self._client(), get_settings().instance_id, job_id, task, seconds)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not record service time of %s: %s", job_id, exc)

    @staticmethod
    def _client() -> redis.Redis:
        return redis_client(get_settings().redis_url)
