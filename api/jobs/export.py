"""``GET /v1/jobs/export``: the durable history (finished jobs), newest first, streamed as
CSV or JSON lines, with the list's filters."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from flask import Response, request, stream_with_context

from api.errors import ApiError
from api.jobs.args import filters as read_filters
from api.jobs.history import history_unavailable
from api.services import services
from visionq.job_json import iso
from visionq.jobs import FINAL_STATUSES, Job

EXPORT_FORMATS = ("csv", "jsonl")
EXPORT_FIELDS = ("id", "task", "status", "code", "error", "queued_at", "started_at",
                 "finished_at", "total_ms", "attempts", "worker", "model_version", "submitter",
                 "result")


def _export_row(job: Job) -> dict[str, Any]:
    result = job.result
    version = result.get("model_version") if isinstance(result, dict) else None
    return {"id": job.id, "task": job.task, "status": job.status, "code": job.code,
            "error": job.error, "queued_at": iso(job.queued_at),
            "started_at": iso(job.started_at), "finished_at": iso(job.finished_at),
            "total_ms": job.total_ms, "attempts": job.attempts, "worker": job.worker,
            "model_version": version, "submitter": job.submitter, "result": result}


def export_jobs() -> Response:
    """The history (finished jobs), newest first, as CSV or JSON lines, streamed; the
    same filters as the list (``status``, ``task``, ``key``, ``since``, ``until``)."""
    svc = services()
    fmt = request.args.get("format") or "jsonl"
    if fmt not in EXPORT_FORMATS:
        raise ApiError(400, "invalid_format", f"format must be one of: {', '.join(EXPORT_FORMATS)}")
    filters = read_filters()
    rows = iter(()) if filters.status not in (None, *FINAL_STATUSES) else (
        svc.history.iterate(filters))
    try:
        first = next(rows, None)  # a store that is down fails here, before the 200 is sent
    except Exception as exc:
        raise history_unavailable(exc) from exc

    def lines() -> Iterator[str]:
        jobs = rows if first is None else _chain(first, rows)
        if fmt == "csv":
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=EXPORT_FIELDS)
            writer.writeheader()
            for job in jobs:
                row = _export_row(job)
                row["result"] = json.dumps(row["result"]) if row["result"] is not None else ""
                writer.writerow(row)
                if buffer.tell() > 64 * 1024:
                    yield buffer.getvalue()
                    buffer.seek(0)
                    buffer.truncate()
            yield buffer.getvalue()
        else:
            for job in jobs:
                yield json.dumps(_export_row(job)) + "\n"

    media = "text/csv" if fmt == "csv" else "application/x-ndjson"
    return Response(stream_with_context(lines()), mimetype=media, headers={
        "Content-Disposition": f'attachment; filename="visionq-jobs.{fmt}"'})


def _chain(first: Job, rest: Iterator[Job]) -> Iterator[Job]:
    yield first
    yield from rest
