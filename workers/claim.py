"""Claiming: a worker process runs up to N of its queue's jobs per Celery delivery.

Every Celery delivery costs the worker ≈ 1 ms of CPU besides the job itself: kombu's
``BRPOP``, its record of the delivery (a ``MULTI``), Celery's request and the prefork pipe
both ways, the ack (another ``MULTI``), two log lines.  When a queue is deep, the round trip that
finishes a job also claims the next message of its queue for the same process (``claim_
request``, carried out next to ``JobStore.succeed``/``fail``'s script), which then runs that
job at once, and so on, up to ``VISIONQ_CLAIM_MAX`` jobs per delivery.  A claimed job's ack
rides on its own finishing round trip (``ack_commands``).  A process claims only when it is
free (its job just finished) and the queue holds a message for each of its worker's pool
processes, so no job waits behind a slow one that a free process could have run.  The
model still sees one image per call: batched interpreter calls measured no faster on
2 cores.

Nothing accepted can be lost by it, because a claimed message is kept exactly as kombu keeps
a delivered one:

- The claim moves the message from the queue into kombu's record of delivered messages
  (the entry kombu's ``QoS.append`` writes, byte for byte the original message:
  ``visionq.kombu_redis.claim_command``).  So the autoscaler and ``/v1/stats`` still
  count it as in flight, and if the whole worker dies, kombu's visibility-timeout sweep
  (any worker's) puts it back on the queue.
- The same script notes it in a ledger (``visionq:claimed:<delivering job id>``, with the
  visibility timeout as TTL).  When the pool process dies (a hard time limit, OOM,
  ``kill -9``), the worker's main process gives the ledger's messages back at once
  (``give_back``, from ``workers.request.JobRequest``) instead of after the visibility
  timeout.
- The claim runs only if the finish it rides on was recorded (the job's ``finished_at`` is
  the one that finish wrote), so a re-sent pipeline never claims twice.
- A claimed job shares its delivery's soft time limit.  One that reaches it is not failed
  but given back, to run again under a full limit of its own; claims are only made during
  the first ``START_WITHIN`` of that limit.
- While the process holds a claimed job, the host stays busy for the autoscaler's
  scale-in protection (``visionq:autoscale:busy``), between one job's finish and the next
  one's begin too.

A claimed job is not a Celery task: Flower does not list it, and Celery logs no
``received``/``succeeded`` line for it (the runner's own line is there).
``VISIONQ_CLAIM_MAX=1`` turns claiming off.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from visionq import kombu_redis
from visionq.broker import DEFAULT_BUSY_TTL_SECONDS, Command
from visionq.jobs import ClaimRequest
from visionq.keys import BUSY_KEY, CLAIM_LEDGER_PREFIX

log = logging.getLogger(f"visionq.{__name__}")

START_WITHIN = 0.5
"""Claims are made only while their delivery has used less than this share of its soft
time limit."""

@dataclass(frozen=True)
class Claimed:
    """One claimed message: kombu's delivery tag and the job it carries."""

    tag: str
    job_id: str


def ledger_key(delivery_id: str) -> str:
    """The ledger of the jobs claimed by the delivery of job ``delivery_id``."""
    return f"{CLAIM_LEDGER_PREFIX}{delivery_id}"


def busy_member(host: str, delivery_id: str) -> str:
    """The autoscaler's busy mark (``visionq.broker.busy_workers``) of ``host`` while the
    delivery of job ``delivery_id`` holds claimed jobs."""
    return f"{host}/{delivery_id}+claimed"


def claim_request(queue: str, task_name: str, delivery_id: str, most: int,
                  concurrency: int, ttl_s: int, host: str | None = None,
                  now: float | None = None) -> ClaimRequest:
    """What the delivery of job ``delivery_id`` claims along with each finish
    (``JobStore.succeed``/``fail``): up to ``most`` of ``queue``'s messages; with ``host``
    (when the scaling hints live on this Redis) the host is marked busy while it holds a
    claimed job."""
    busy = None
    if host is not None:
        now = time.time() if now is None else now
        busy = (BUSY_KEY, busy_member(host, delivery_id), now + DEFAULT_BUSY_TTL_SECONDS)
    return ClaimRequest(queue, ledger_key(delivery_id), task_name, most,
                        concurrency, ttl_s, busy)


def ack_commands(delivery_id: str, tag: str) -> list[Command]:
    """What acknowledges a claimed message (kombu's ``QoS.ack``) and strikes it from the
    ledger: pipelined with its job's finishing script.  The last job a delivery runs (no
    claim rides on its finish) adds ``ClaimRequest.end_commands`` (the host's busy mark)."""
    return [*kombu_redis.ack_commands(tag), ("HDEL", ledger_key(delivery_id), tag)]


def give_back(client: redis.Redis, queue: str, delivery_id: str,
              tags: Sequence[str] = (), host: str | None = None) -> int:
    """Put claimed messages back on ``queue`` to be taken next (``tags``: these, else all the
    ledger of ``delivery_id`` holds) and end ``host``'s busy mark for them; idempotent.
    How many went back."""
    member = busy_member(host, delivery_id) if host is not None else ""
    return kombu_redis.give_back(client, queue, ledger_key(delivery_id), BUSY_KEY, member,
                                 tags)
