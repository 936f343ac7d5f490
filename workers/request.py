"""A Celery request class that keeps job records truthful when a pool child is killed.

A hard time limit kills the child in the middle of a job: the child can no longer write
the outcome, and Celery acks the message.  Without this the job record would say
``running`` until it expires.  ``on_timeout`` runs in the worker's main process, so the
job is failed there with a reason (the first final write wins; see visionq.jobs).

A pool process that dies also takes the jobs its delivery had claimed (``workers.claim``):
they go back to the queue at once, from here, to run under time limits of their own (a
job that was running among them counts the attempt, like any job whose worker died).
"""

from __future__ import annotations

import logging
from typing import Any

from billiard.exceptions import WorkerLostError
from celery.worker.request import Request

from tasks.signatures import queue_of
from visionq.jobs import JobStore
from visionq.redis_conn import redis_client
from visionq.settings import get_settings
from visionq.shards import shard_map
from workers.claim import give_back
from workers.stores import claim_host, queue_client

log = logging.getLogger(f"visionq.{__name__}")


class JobRequest(Request):
    def on_timeout(self, soft: bool, timeout: float) -> None:
        super().on_timeout(soft, timeout)
        if soft:
            return  # the task itself catches SoftTimeLimitExceeded and fails the job
        settings = get_settings()
        queue = queue_of(self.task_name) or ""  # the job is on its queue's Redis
        try:
            client = redis_client(shard_map(settings).url_for(queue))
            JobStore(client, settings.result_ttl_s).fail(
                self.id, "timeout",
                f"the job exceeded its hard time limit of {timeout:g} s; its worker process "
                "was replaced")
        except Exception:  # noqa: BLE001 - never break the worker's main loop
            log.exception("could not record the hard time limit of job %s", self.id)
        self._give_back_claimed()

    def on_failure(self, exc_info: Any, send_failed_event: bool = True,
                   return_ok: bool = False) -> None:
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)
        exc = getattr(exc_info, "exception", None)
        if isinstance(getattr(exc, "exc", exc), WorkerLostError):  # maybe wrapped by billiard
            self._give_back_claimed()

    def _give_back_claimed(self) -> None:
        """The jobs this delivery claimed and had not finished, back to the queue now."""
        queue = queue_of(self.task_name)
        if queue is None:
            return
        try:
            back = give_back(queue_client(queue), queue, self.id, host=claim_host(queue))
        except Exception:  # noqa: BLE001 - kombu restores them after the visibility timeout
            log.exception("could not give back the jobs claimed by job %s", self.id)
            return
        if back:
            log.warning("job %s: its pool process died; %d job(s) it had claimed went back "
                        "to %s", self.id, back, queue)
