"""A job's Celery message as bytes, for the admit script to push with the job itself.

``tasks.signatures.enqueue`` publishes through Celery and kombu: ≈ 0.6 ms of CPU per job
in the API (a Redis client object built per publish, bindings, signals) and one more Redis
round trip after the job's record is written — a window in which a crash leaves a queued
job with no message.  ``celery_message`` builds the very bytes kombu's Redis transport
would ``LPUSH`` (Celery's task protocol 2, as ``app.amqp.as_task_v2`` makes it, in kombu's
JSON envelope with a base64 body: ``visionq.kombu_redis.envelope``), so ``JobStore.admit``
can push it in the same script that writes the record: one round trip, all or nothing.
``tests/tasks/test_message.py`` compares it with what ``enqueue`` writes, and the
end-to-end tests run every job through it.
"""

from __future__ import annotations

from celery import Celery

from tasks.signatures import TASK_NAMES
from visionq import kombu_redis


def celery_message(celery: Celery, queue: str, job_id: str) -> tuple[str, bytes]:
    """``(list key, payload)``: what publishing job ``job_id`` to ``queue`` pushes.

    The routing is the one ``tasks.config`` declares (direct to the queue's own list,
    priority 0); kombu's envelope around Celery's message is ``kombu_redis.envelope``."""
    message = celery.amqp.as_task_v2(job_id, TASK_NAMES[queue], args=[job_id],
                                     ignore_result=True, reply_to=celery.thread_oid)
    return kombu_redis.envelope(message, queue)
