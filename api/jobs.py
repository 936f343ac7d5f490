"""``/v1/jobs``: submit an image (or a batch) for a task (202 + id), list recent jobs,
read a job (long-poll with ?wait), revoke a queued job."""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import json
import math
from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for

from api.errors import ApiError
from api.security import current_caller
from api.services import services
from api.submission import submit_jobs
from visionq.jobs import REVOKE_FINAL, REVOKE_TOO_LATE, REVOKE_UNKNOWN, STATUSES, Job
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
        except RecursionError as exc:  # "[[[[..." deeper than the parser's recursion limit
            raise ApiError(400, "invalid_options", "options is nested too deeply") from exc
    if not isinstance(raw, dict):
        raise ApiError(400, "invalid_options", "options must be a JSON object")
    return raw


def _decode_base64(encoded: Any, name: str) -> bytes:
    if not isinstance(encoded, str) or not encoded:
        raise ApiError(400, "missing_image", f'missing field "{name}" (base64-encoded image bytes)')
    if encoded.startswith("data:") and "," in encoded:
        encoded = encoded.split(",", 1)[1]
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, "invalid_base64", f'field "{name}" is not valid base64: {exc}') from exc


def _json_body() -> dict[str, Any]:
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # silent only covers ValueError; "[[[[..." recurses too deep
        body = None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the body is not a JSON object")
    return body


def _read_upload() -> tuple[bytes, str | None, dict[str, Any]]:
    """The image bytes, the task named in the body (if any) and the options."""
    if request.is_json:
        body = _json_body()
        task = body.get("task")
        return (_decode_base64(body.get("image"), "image"), task if isinstance(task, str) else None,
                _parse_options(body.get("options")))
    upload = request.files.get("image")
    if upload is None:
        raise ApiError(400, "missing_image",
                       'missing file field "image" (multipart/form-data) or JSON {"image": base64}')
    return upload.read(), request.form.get("task"), _parse_options(request.form.get("options"))


def _read_batch() -> tuple[list[bytes], str | None, dict[str, Any]]:
    """Every file in the form (any field names, in order), or JSON ``images`` (base64)."""
    if request.is_json:
        body = _json_body()
        images = body.get("images")
        if not isinstance(images, list) or not images:
            raise ApiError(400, "missing_image",
                           'missing field "images" (a list of base64-encoded images)')
        task = body.get("task")
        return ([_decode_base64(item, f"images[{i}]") for i, item in enumerate(images)],
                task if isinstance(task, str) else None, _parse_options(body.get("options")))
    files = [upload.read() for _, upload in request.files.items(multi=True)]
    if not files:
        raise ApiError(400, "missing_image", "no image files in the form (multipart/form-data)")
    return files, request.form.get("task"), _parse_options(request.form.get("options"))


def _accepted(job: Job) -> dict[str, Any]:
    status_url = url_for("jobs.get_job", job_id=job.id, _external=True)
    return {"id": job.id, "task": job.task, "status": job.status, "status_url": status_url}


def _idempotency() -> tuple[str | None, str]:
    return request.headers.get("Idempotency-Key") or None, current_caller().who


@bp.post("")
@bp.post("/")
def submit() -> tuple[Response, int, dict[str, str]]:
    data, body_task, options = _read_upload()
    key, owner = _idempotency()
    done = submit_jobs(request.args.get("task") or body_task, [data], options,
                       idempotency_key=key, owner=owner)
    body = _accepted(done.jobs[0])
    headers = {"Location": body["status_url"]}
    if done.replayed:
        headers["Idempotent-Replayed"] = "true"
    return jsonify(body), 202, headers


@bp.post("/batch")
def submit_batch() -> tuple[Response, int, dict[str, str]]:
    images, body_task, options = _read_batch()
    key, owner = _idempotency()
    done = submit_jobs(request.args.get("task") or body_task, images, options,
                       idempotency_key=key, owner=owner)
    headers = {"Idempotent-Replayed": "true"} if done.replayed else {}
    return jsonify({"jobs": [_accepted(job) for job in done.jobs]}), 202, headers


DEFAULT_PAGE = 50
MAX_PAGE = 500


@bp.get("")
@bp.get("/")
def list_jobs() -> Response:
    """Recent jobs, newest first; ``next`` is the URL of the following page (or null)."""
    svc = services()
    status, task = request.args.get("status") or None, request.args.get("task") or None
    if status is not None and status not in STATUSES:
        raise ApiError(400, "invalid_status", f"status must be one of: {', '.join(STATUSES)}")
    if task is not None and task not in QUEUES:
        raise ApiError(400, "unknown_task", f"task must be one of: {', '.join(QUEUES)}")
    try:
        limit = int(request.args.get("limit", DEFAULT_PAGE))
        before = float(request.args["before"]) if request.args.get("before") else None
    except ValueError as exc:
        raise ApiError(400, "invalid_page", "limit must be an integer and before a "
                       "number (the next URL gives it)") from exc
    if not 1 <= limit <= MAX_PAGE:
        raise ApiError(400, "invalid_page", f"limit must be between 1 and {MAX_PAGE}")
    if before is not None and not math.isfinite(before):
        raise ApiError(400, "invalid_page", "before must be a finite number")
    jobs = svc.jobs.recent(status=status, task=task, limit=limit, before=before)
    next_url = None
    if len(jobs) == limit and jobs[-1].queued_at is not None:
        args = {k: v for k, v in request.args.items() if k != "before"}
        next_url = url_for("jobs.list_jobs", **args, before=repr(jobs[-1].queued_at),
                           _external=True)
    return jsonify({"jobs": [job_json(job) for job in jobs], "next": next_url})


@bp.delete("/<job_id>")
def revoke_job(job_id: str) -> Response:
    """Revoke a queued job (admin): it is failed with code ``revoked`` at once, and the
    worker that later receives its message skips it."""
    svc = services()
    outcome = svc.jobs.revoke(job_id)
    if outcome == REVOKE_UNKNOWN:
        raise ApiError(404, "job_not_found", f"no job {job_id!r} (unknown or expired)")
    if outcome == REVOKE_TOO_LATE:
        raise ApiError(409, "job_running", "the job is already running; it cannot be revoked")
    if outcome == REVOKE_FINAL:
        raise ApiError(409, "job_finished", "the job has already finished")
    job = svc.jobs.get(job_id)
    assert job is not None
    if job.blob_owned:  # a borrowed blob (a watched bucket's object) is the user's
        with contextlib.suppress(Exception):  # the blob's TTL collects it otherwise
            svc.blobs.delete(job.blob)
    return jsonify(job_json(job))


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
