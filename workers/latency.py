"""Latency classes: heavy queues' workers give way to latency-critical ones (issue 26).

A queue is latency-critical when it is in ``VISIONQ_LATENCY_QUEUES`` (``detect`` by
default: cameras drop a frame that is 0.1 s late).  A worker that consumes none of them
is *heavy*: it lowers its own CPU priority (``os.setpriority`` to ``VISIONQ_HEAVY_NICE``,
in the main process before the pool forks and again in each pool process, so every thread
a runtime starts later inherits it).  The kernel then gives a detection waiting for a core
~10 times the share of a face job's thread (CFS weights 1024 vs 110 at nice 10).

A worker that consumes a latency-critical queue keeps its pool processes instead of
replacing them every ``VISIONQ_WORKER_MAX_TASKS_PER_CHILD`` jobs (``keeps_children``; the
memory limit still applies): in ``bench camera`` each replacement of the detect worker's
child showed as a burst of 15 timeouts in a row.

Measured and left out (``bench camera``, docs/performance.md): a heavy worker waiting between jobs
while a critical queue had jobs waiting cost a third of the face throughput for no
detection gain; cgroup ``cpu.weight`` adds nothing to nice for processes of one cgroup.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from visionq.settings import Settings, get_settings
from workers.hooks import WorkerHook

log = logging.getLogger("visionq.worker")


def critical_queues(settings: Settings) -> list[str]:
    return [q.strip() for q in settings.latency_queues.split(",") if q.strip()]


def is_heavy(queues: Sequence[str], critical: Sequence[str]) -> bool:
    """A worker is heavy when it consumes queues, none of them latency-critical."""
    return bool(critical) and bool(queues) and not set(queues) & set(critical)


def keeps_children(queues: Sequence[str], critical: Sequence[str]) -> bool:
    """A worker of a latency-critical queue never replaces its pool processes by job count
    (``VISIONQ_WORKER_MAX_TASKS_PER_CHILD``): a fresh pool process loads its model first,
    and the ~1.5 s that takes is 15 late frames of a 10 frames/s camera, every 1,000 jobs
    (every 50 s for 4 cameras at 5 frames/s).  The memory limit
    (``VISIONQ_WORKER_MAX_MEMORY_PER_CHILD_KB``) still replaces a growing one."""
    return bool(set(queues) & set(critical))


def lower_priority(nice: int) -> int:
    """Set this process's nice value to ``nice`` (absolute, so calling it again is a
    no-op); returns the value in effect.  Raising it back needs privileges, so a higher
    current value is kept."""
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if nice > current:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    return os.getpriority(os.PRIO_PROCESS, 0)


class LatencyClasses(WorkerHook):
    """The hook: decides whether this worker is heavy and lowers its priority."""

    def __init__(self) -> None:
        self.heavy = False

    def on_worker_init(self, queues: list[str]) -> None:
        settings = get_settings()
        critical = critical_queues(settings)
        self.heavy = is_heavy(queues, critical)
        if self.heavy:
            nice = lower_priority(settings.heavy_nice)
            log.info("queues %s are not latency-critical (%s): this worker runs at nice %d",
                     ",".join(queues), ",".join(critical), nice)

    def on_child_init(self) -> None:
        if self.heavy:
            lower_priority(get_settings().heavy_nice)
