"""How the job routes answer: a job as JSON (also the webhook's body and the stream's
messages) and the ``503`` when the durable history's store is down."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from api.errors import ApiError
from visionq.jobs import Job

log = logging.getLogger("visionq.api")


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC).isoformat(timespec="milliseconds")


def job_json(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "task": job.task,
        "status": job.status,
        "result": job.result,
        "error": job.error,
        "code": job.code,
        "attempts": job.attempts,
        "submitter": job.submitter,
        "timings": {
            "queued_at": iso(job.queued_at),
            "started_at": iso(job.started_at),
            "finished_at": iso(job.finished_at),
            "queue_wait_ms": job.queue_wait_ms,
            "inference_ms": job.inference_ms,
            "total_ms": job.total_ms,
        },
    }


def history_unavailable(exc: Exception) -> ApiError:
    log.warning("job history unavailable: %s", exc)
    return ApiError(503, "history_unavailable", "the job history store is unavailable; "
                    "retry later", {"Retry-After": "10"})
