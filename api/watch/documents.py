"""The result files the watcher writes: a finished job's, or the error of an object that
never became a job."""

from __future__ import annotations

from typing import Any

from visionq.jobs import Job


def _source(entry: dict[str, Any], task: str) -> dict[str, Any]:
    return {"bucket": entry["bucket"], "key": entry["key"], "etag": entry["etag"],
            "task": task}


def job_document(entry: dict[str, Any], job: Job) -> dict[str, Any]:
    """The result file of a finished job: the source, the job id and status, the result
    (or the error and its code) and the timings."""
    document = _source(entry, job.task)
    document.update({"job_id": job.id, "status": job.status})
    if job.status == "succeeded":
        document["result"] = job.result
    else:
        document.update({"code": job.code, "error": job.error})
    document["timings"] = {"queued_at": job.queued_at, "started_at": job.started_at,
                           "finished_at": job.finished_at, "queue_wait_ms": job.queue_wait_ms,
                           "inference_ms": job.inference_ms, "total_ms": job.total_ms}
    return document


def error_document(entry: dict[str, Any], task: str, code: str,
                   message: str) -> dict[str, Any]:
    """The result file of an object that never became a job."""
    document = _source(entry, task)
    document.update({"job_id": None, "status": "failed", "code": code, "error": message})
    return document
