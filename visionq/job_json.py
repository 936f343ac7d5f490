"""A job as JSON: what ``GET /v1/jobs/<id>`` answers, the webhook's body
(``visionq.callbacks.sender``) and the stream's messages, one shape for all three."""

from __future__ import annotations

import datetime as dt
from typing import Any

from visionq.jobs import Job


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
