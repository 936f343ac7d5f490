"""One Celery delivery: its job, then, while the queue is deep, the jobs its finishes claim
(``workers.claim``), one after another in this pool process; what cannot run here is given
back to the queue.

``run_delivery`` is what a task body calls.  Each job runs through ``workers.runner.run_job``
with what the delivery adds to its finish (``workers.finish.Rides``): the claim of the next
job while this delivery may take more (fewer than ``VISIONQ_CLAIM_MAX`` run, within the
first ``START_WITHIN`` of the soft time limit, this process not due for replacement), and,
for a claimed job, its ack.  A claimed job is a task of its own for the hooks
(``before_task``/``after_task``); the delivered one's are Celery's signals.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from celery.exceptions import SoftTimeLimitExceeded

from tasks.signatures import TASK_NAMES
from visionq.jobs import ClaimRequest
from visionq.settings import get_settings
from workers.claim import START_WITHIN, Claimed, ack_commands, claim_request, give_back
from workers.finish import Rides
from workers.model import LoadListener
from workers.runner import JobOutcome, run_job
from workers.stores import claim_host, queue_client

log = logging.getLogger(f"visionq.{__name__}")


class JobEvents(Protocol):
    """The worker hooks' job events (``workers.hooks.Hooks``)."""

    on_model_loaded: LoadListener

    def before_task(self, task: str, job_id: str, hostname: str) -> None: ...

    def after_task(self, task: str, job_id: str, hostname: str, outcome: JobOutcome | None,
                   seconds: float | None) -> None: ...


@dataclass
class ClaimBudget:
    """This pool process's room for claiming: ``concurrency`` is its worker's pool
    processes (``-c``; claiming leaves the others their share), ``jobs_run`` the jobs it
    ran (claimed ones included).  Set by the worker's signals (``workers.app``)."""

    concurrency: int = 1
    jobs_run: int = 0
    recycled: bool = True
    """False in a worker that keeps its pool processes (``workers.latency.keeps_children``)."""

    def may_claim(self, max_tasks_per_child: int | None) -> bool:
        """Whether this pool process may claim another job: Celery replaces it after
        ``max_tasks_per_child`` deliveries, so one that has run that many jobs claims no
        more (it runs fewer than twice as many before it is replaced)."""
        return (not self.recycled or not max_tasks_per_child
                or self.jobs_run < max_tasks_per_child)


def run_delivery(queue: str, job_id: str, hostname: str, events: JobEvents,
                 budget: ClaimBudget) -> JobOutcome:
    """Run the delivered job ``job_id`` of ``queue`` and the jobs its finishes claim; the
    delivered job's outcome (``claimed``: it claimed others, which ran here too)."""
    started = time.monotonic()
    settings = get_settings()
    budget.jobs_run += 1
    if settings.claim_max <= 1 or not budget.may_claim(settings.worker_max_tasks_per_child):
        return run_job(queue, job_id, hostname, events.on_model_loaded)
    host = claim_host(queue)
    claim = claim_request(queue, TASK_NAMES[queue], job_id, 1, budget.concurrency,
                          settings.visibility_timeout_s, host)
    outcome = run_job(queue, job_id, hostname, events.on_model_loaded, Rides(claim=claim))
    if outcome.claimed:
        _run_claimed(queue, job_id, hostname, outcome.claimed, claim, events, budget,
                     most=settings.claim_max - 1,
                     claim_before=started + START_WITHIN * settings.soft_time_limit_s)
    return outcome


def _run_claimed(queue: str, delivery_id: str, hostname: str, claimed: Sequence[Claimed],
                 claim: ClaimRequest, events: JobEvents, budget: ClaimBudget, *, most: int,
                 claim_before: float) -> None:
    """Run the claimed jobs, one after another: each one's finish claims the next while
    fewer than ``most`` were run and the clock is before ``claim_before``."""
    waiting, current = tuple(claimed), None
    runs = 0
    limit = get_settings().worker_max_tasks_per_child
    try:
        while waiting:
            current = waiting[0]
            runs += 1
            budget.jobs_run += 1
            more = runs < most and time.monotonic() < claim_before and budget.may_claim(limit)
            rides = Rides(ack=(*ack_commands(delivery_id, current.tag),
                               *(() if more else claim.end_commands())),
                          claim=claim if more else None)
            events.before_task(queue, current.job_id, hostname)
            outcome = run_job(queue, current.job_id, hostname, events.on_model_loaded, rides)
            waiting = (*waiting[1:], *outcome.claimed)
            events.after_task(queue, current.job_id, hostname, outcome, outcome.seconds)
    except SoftTimeLimitExceeded:
        log.warning("job %s: its delivery's soft time limit came first; giving it back to "
                    "run under a limit of its own", current and current.job_id)
    except Exception:  # noqa: BLE001 - e.g. Redis gone for good: the rest goes back
        log.exception("job %s: a claimed job could not run; giving the rest back",
                      current and current.job_id)
    if waiting:
        _give_back(queue, delivery_id, waiting, claim_host(queue))
    log.info("job %s: its delivery also ran %d claimed %s job(s)", delivery_id,
             runs - len(waiting), queue)


def _give_back(queue: str, delivery_id: str, waiting: Sequence[Claimed],
               host: str | None) -> None:
    try:
        back = give_back(queue_client(queue), queue, delivery_id,
                         [item.tag for item in waiting], host)
        log.info("job %s: gave %d claimed job(s) back to %s", delivery_id, back, queue)
    except Exception:  # noqa: BLE001 - kombu restores them after the visibility timeout
        log.exception("job %s: could not give claimed jobs back; they return after the "
                      "visibility timeout", delivery_id)
