"""A Celery request class that keeps job records truthful when a pool child is killed.

A hard time limit kills the child in the middle of a job: the child can no longer write
the outcome, and Celery acks the message.  Without this the job record would say
``running`` until it expires.  ``on_timeout`` runs in the worker's main process, so the
job is failed there with a reason (the first final write wins; see visionq.jobs).
"""

from __future__ import annotations

import logging

from celery.worker.request import Request

from tasks.signatures import queue_of
from visionq.jobs import JobStore
from visionq.redis_conn import redis_client
from visionq.settings import get_settings
from visionq.shards import shard_map

log = logging.getLogger(f"visionq.{__name__}")


class JobRequest(Request):
    def on_timeout(self, soft: bool, timeout: float) -> None:
        super().on_timeout(soft, timeout)
        if soft:
            return  # the task itself catches SoftTimeLimitExceeded and fails the job
        settings = get_settings()
        queue = queue_of(self.task_name) or ""  # the job is on its queue's Redis
        try:
            JobStore(redis_client(shard_map(settings).url_for(queue)), settings.result_ttl_s).fail(
                self.id, "timeout",
                f"the job exceeded its hard time limit of {timeout:g} s; its worker process "
                "was replaced")
        except Exception:  # noqa: BLE001 - never break the worker's main loop
            log.exception("could not record the hard time limit of job %s", self.id)
