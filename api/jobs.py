"""``/v1/jobs``: submit an image for a task (202 + id), read a job (long-poll with ?wait)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for

from api.errors import ApiError
from api.services import services
from visionq.jobs import Job
from visionq.settings import QUEUES

bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")


def _iso(timestamp: float | None) -> str | None:
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
        "timings": {
            "queued_at": _iso(job.queued_at),
            "started_at": _iso(job.started_at),
            "finished_at": _iso(job.finished_at),
            "queue_wait_ms": job.queue_wait_ms,
            "inference_ms": job.inference_ms,
            "total_ms": job.total_ms,
        },
    }


def _parse_options(raw: Any) -> dict[str, Any]:
    if raw in (None, ""):
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ApiError(400, "invalid_options", f"options is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ApiError(400, "invalid_options", "options must be a JSON object")
    return raw


def _read_upload() -> tuple[bytes, str | None, dict[str, Any]]:
    """The image bytes, the task named in the body (if any) and the options."""
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_json", "the body is not a JSON object")
        encoded = body.get("image")
        if not isinstance(encoded, str) or not encoded:
            raise ApiError(400, "missing_image",
                           'missing field "image" (base64-encoded image bytes)')
        if encoded.startswith("data:") and "," in encoded:
            encoded = encoded.split(",", 1)[1]
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ApiError(400, "invalid_base64",
                           f'field "image" is not valid base64: {exc}') from exc
        task = body.get("task")
        return data, task if isinstance(task, str) else None, _parse_options(body.get("options"))
    upload = request.files.get("image")
    if upload is None:
        raise ApiError(400, "missing_image",
                       'missing file field "image" (multipart/form-data) or JSON {"image": base64}')
    return upload.read(), request.form.get("task"), _parse_options(request.form.get("options"))


@bp.post("")
@bp.post("/")
def submit() -> tuple[Response, int, dict[str, str]]:
    svc = services()
    data, body_task, options = _read_upload()
    task = request.args.get("task") or body_task
    if not task:
        raise ApiError(400, "missing_task", f"missing task; one of: {', '.join(QUEUES)}")
    if task not in QUEUES:
        raise ApiError(400, "unknown_task", f"unknown task {task!r}; one of: {', '.join(QUEUES)}")
    from visionq.imaging import probe

    probe(data, svc.limits)  # reject what is clearly not an image before enqueueing
    blob = svc.blobs.put(data)
    job = svc.jobs.create(task, blob, options)
    try:
        svc.enqueue(task, job.id)
    except Exception:
        svc.blobs.delete(blob)
        svc.redis.delete(svc.jobs.key(job.id))
        raise
    status_url = url_for("jobs.get_job", job_id=job.id, _external=True)
    body = {"id": job.id, "task": task, "status": job.status, "status_url": status_url}
    return jsonify(body), 202, {"Location": status_url}


@bp.get("/<job_id>")
def get_job(job_id: str) -> Response:
    svc = services()
    wait_arg = request.args.get("wait")
    if wait_arg is None:
        job = svc.jobs.get(job_id)
    else:
        try:
            wait = float(wait_arg)
        except ValueError as exc:
            raise ApiError(400, "invalid_wait", "wait must be a number of seconds") from exc
        if not 0 <= wait <= svc.settings.max_wait_s:
            raise ApiError(400, "invalid_wait",
                           f"wait must be between 0 and {svc.settings.max_wait_s:g} seconds")
        job = svc.jobs.wait(job_id, wait)
    if job is None:
        raise ApiError(404, "job_not_found", f"no job {job_id!r} (unknown or expired)")
    return jsonify(job_json(job))
