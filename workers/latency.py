"""Latency classes: heavy queues' workers give way to latency-critical ones (issue 26).

A queue is latency-critical when it is in ``VISIONQ_LATENCY_QUEUES`` (``detect`` by
default: cameras drop a frame that is 0.1 s late).  A worker that consumes none of them
is *heavy*: it lowers its own CPU priority (``os.setpriority`` to ``VISIONQ_HEAVY_NICE``,
in the main process before the pool forks and again in each pool process, so every thread
a runtime starts later inherits it) and, between two jobs, waits while a latency-critical
queue has jobs waiting in Redis, at most ``VISIONQ_HEAVY_YIELD_S``.

The waiting check is one ``LLEN`` per critical queue and priority level, after each job.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence

from redis import Redis, RedisError

from visionq.kombu_redis import queue_length
from visionq.settings import Settings, get_settings
from workers.hooks import WorkerHook

log = logging.getLogger("visionq.worker")

YIELD_POLL_S = 0.01
"""How often a yielding worker looks at the critical queues again: a detection takes
~20 ms, so a backlog of one is gone within a couple of polls."""


def critical_queues(settings: Settings) -> list[str]:
    return [q.strip() for q in settings.latency_queues.split(",") if q.strip()]


def is_heavy(queues: Sequence[str], critical: Sequence[str]) -> bool:
    """A worker is heavy when it consumes queues, none of them latency-critical."""
    return bool(critical) and bool(queues) and not set(queues) & set(critical)


def lower_priority(nice: int) -> int:
    """Set this process's nice value to ``nice`` (absolute, so calling it again is a
    no-op); returns the value in effect.  Raising it back needs privileges, so a higher
    current value is kept."""
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if nice > current:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    return os.getpriority(os.PRIO_PROCESS, 0)


def yield_while(waiting: Callable[[], int], bound_s: float, *,
                poll_s: float = YIELD_POLL_S, clock: Callable[[], float] = time.monotonic,
                sleep: Callable[[float], None] = time.sleep) -> float:
    """Wait while ``waiting()`` reports jobs, at most ``bound_s``; the seconds waited."""
    started = clock()
    while bound_s > 0 and waiting() > 0:
        left = bound_s - (clock() - started)
        if left <= 0:
            break
        sleep(min(poll_s, left))
    return clock() - started


def waiting_in(queues: Sequence[tuple[Redis, str]]) -> Callable[[], int]:
    """Jobs waiting in ``queues`` ((its Redis, queue) pairs); 0 when Redis cannot say (a
    worker never blocks on an error)."""
    def count() -> int:
        try:
            return sum(queue_length(client, queue) for client, queue in queues)
        except RedisError:
            return 0

    return count


class LatencyClasses(WorkerHook):
    """The hook: decides whether this worker is heavy, lowers its priority, yields."""

    def __init__(self, client_for: Callable[[str], Redis] | None = None) -> None:
        self.heavy = False
        self.critical: list[str] = []
        self._client_for = client_for
        self._waiting: Callable[[], int] | None = None

    def on_worker_init(self, queues: list[str]) -> None:
        settings = get_settings()
        self.critical = critical_queues(settings)
        self.heavy = is_heavy(queues, self.critical)
        if not self.heavy:
            return
        nice = lower_priority(settings.heavy_nice)
        log.info("queues %s are not latency-critical (%s): this worker runs at nice %d and "
                 "waits up to %g s between jobs while those have jobs waiting",
                 ",".join(queues), ",".join(self.critical), nice, settings.heavy_yield_s)

    def on_child_init(self) -> None:
        if self.heavy:
            lower_priority(get_settings().heavy_nice)
        self._waiting = None  # a Redis connection is not shared across a fork

    def after_task(self, task: str, job_id: str, hostname: str, outcome: object,
                   seconds: float | None) -> None:
        bound = get_settings().heavy_yield_s
        if not self.heavy or bound <= 0:
            return
        if self._waiting is None:
            client_for = self._client_for or _queue_client
            self._waiting = waiting_in([(client_for(q), q) for q in self.critical])
        waited = yield_while(self._waiting, bound)
        if waited >= YIELD_POLL_S:
            log.debug("job %s: waited %.3f s for latency-critical jobs", job_id, waited)


def _queue_client(queue: str) -> Redis:
    from workers.runner import queue_client

    return queue_client(queue)
