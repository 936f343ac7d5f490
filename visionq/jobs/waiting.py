"""Long-poll: wait until a job is final, woken by the announcement its finish (or revoke)
publishes on ``visionq:done:<id>``, re-reading the record now and then in case one is lost."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from visionq.jobs.record import FINAL_STATUSES, Job
from visionq.keys import DONE_CHANNEL_PREFIX
from visionq.wakeup import DoneListener

WAIT_RECHECK_S = 1.0
"""A waiting thread re-reads the job record this often even without an announcement."""
UNSUBSCRIBED_RECHECK_S = 0.1
"""... and this often while the process's wake-up listener is reconnecting."""
READY_WAIT_S = 2.0
"""How long a waiter gives a starting listener before it falls back to re-reading."""

Read = Callable[[str], Job | None]
"""How a waiter reads the record (``JobStore.get``)."""


def done_channel(job_id: str) -> str:
    """Pub/sub channel on which finishing (or revoking) a job is announced."""
    return f"{DONE_CHANNEL_PREFIX}{job_id}"


def wait(get: Read, client: redis.Redis, listener: DoneListener | None, job_id: str,
         timeout_s: float) -> Job | None:
    """Long-poll until the job (read with ``get``) is final or ``timeout_s`` passes.

    With a ``DoneListener`` (the API's, one per process) the waiting thread is woken by
    the process's single pub/sub subscription; without one, it subscribes to the job's
    channel itself.  Either way the record is re-read every ``WAIT_RECHECK_S`` in case
    an announcement is lost (a reconnect)."""
    if listener is not None and timeout_s > 0:
        return _wait_listening(get, listener, job_id, timeout_s)
    job = get(job_id)
    if job is None or job.status in FINAL_STATUSES or timeout_s <= 0:
        return job
    return _wait_subscribed(get, client, job_id, timeout_s)


def _wait_listening(get: Read, listener: DoneListener, job_id: str,
                    timeout_s: float) -> Job | None:
    deadline = time.monotonic() + timeout_s
    event = listener.register(job_id)
    try:
        if not listener.ready:
            listener.wait_ready(min(timeout_s, READY_WAIT_S))
        while True:  # the first read is the only one when the job is already final
            # Registered before this read: a finish after it sets the event.
            try:
                job = get(job_id)
            except (redis.ConnectionError, redis.TimeoutError):
                if deadline - time.monotonic() <= 0:
                    raise
                time.sleep(UNSUBSCRIBED_RECHECK_S)  # Redis restarting: keep waiting
                continue
            remaining = deadline - time.monotonic()
            if job is None or job.status in FINAL_STATUSES or remaining <= 0:
                return job
            period = WAIT_RECHECK_S if listener.ready else UNSUBSCRIBED_RECHECK_S
            event.wait(min(remaining, period))
            event.clear()
    finally:
        listener.unregister(job_id, event)


def _wait_subscribed(get: Read, client: redis.Redis, job_id: str,
                     timeout_s: float) -> Job | None:
    """Subscribes to the job's channel first, then reads the record, so a finish between
    the two is never missed; wakes within a millisecond of the announcement."""
    deadline = time.monotonic() + timeout_s
    pubsub = client.pubsub()
    try:
        pubsub.subscribe(done_channel(job_id))
        # SUBSCRIBE is asynchronous: read its confirmation before reading the record,
        # or a finish published in between would be missed (and cost a recheck).
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=min(deadline - time.monotonic(), 1.0))
            if message is not None and message["type"] == "subscribe":
                break
        while True:
            job = get(job_id)
            remaining = deadline - time.monotonic()
            if job is None or job.status in FINAL_STATUSES or remaining <= 0:
                return job
            pubsub.get_message(ignore_subscribe_messages=True,
                               timeout=min(remaining, WAIT_RECHECK_S))
    finally:
        pubsub.close()
