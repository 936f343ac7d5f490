"""``/v1/jobs``: submit an image (or a batch) for a task (202 + id), list recent jobs,
read a job (long-poll with ?wait), revoke a queued job; jobs whose Redis record expired
come from the durable history (``visionq.history``), which ``/v1/jobs/export`` dumps."""

from __future__ import annotations

import base64
import binascii
import contextlib
import csv
import datetime as dt
import io
import json
import logging
import math
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, jsonify, request, stream_with_context, url_for

from api.errors import ApiError
from api.options import check_options_text
from api.security import admin_key_required, current_caller
from api.services import services
from api.submission import submit_jobs
from visionq.callbacks.sender import read_log
from visionq.custom_models import is_custom_task
from visionq.history import Filters
from visionq.jobs import (
    FINAL_STATUSES,
    REVOKE_FINAL,
    REVOKE_TOO_LATE,
    REVOKE_UNKNOWN,
    STATUSES,
    Job,
)
from visionq.settings import QUEUES

bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")
log = logging.getLogger("visionq.api")


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
        "submitter": job.submitter,
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
        check_options_text(raw)  # before parsing: 4 KiB, not the body's 20 MiB
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


def _callback_url() -> str | None:
    """``callback_url`` from the JSON body, the form or the query (checked in
    ``submit_jobs``)."""
    if request.is_json:
        value = _json_body().get("callback_url")
        if value is not None and not isinstance(value, str):
            raise ApiError(400, "invalid_callback_url", "callback_url must be a string")
    else:
        value = request.form.get("callback_url")
    return value or request.args.get("callback_url") or None


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
    """``202`` with the job's id; with ``?wait=N``, ``200`` with the finished job when it
    finishes within N seconds (one request instead of a submit and a long-poll: the
    cheapest way to get a result synchronously), else the ``202`` once N seconds pass."""
    data, body_task, options = _read_upload()
    wait = _wait_arg()  # checked before anything is written
    key, owner = _idempotency()
    done = submit_jobs(request.args.get("task") or body_task, [data], options,
                       idempotency_key=key, owner=owner, callback_url=_callback_url())
    job = done.jobs[0]
    body = _accepted(job)
    headers = {"Location": body["status_url"]}
    if done.replayed:
        headers["Idempotent-Replayed"] = "true"
    if wait:
        finished = services().jobs.wait(job.id, wait)
        if finished is not None and finished.status in FINAL_STATUSES:
            return jsonify(job_json(finished)), 200, headers
    return jsonify(body), 202, headers


def _wait_arg() -> float | None:
    """``?wait=`` in seconds (0 to ``VISIONQ_MAX_WAIT_S``), ``None`` when absent."""
    raw = request.args.get("wait")
    if raw is None:
        return None
    try:
        wait = float(raw)
    except ValueError as exc:
        raise ApiError(400, "invalid_wait", "wait must be a number of seconds") from exc
    limit = services().settings.max_wait_s
    if not 0 <= wait <= limit:  # also refuses nan
        raise ApiError(400, "invalid_wait", f"wait must be between 0 and {limit:g} seconds")
    return wait


@bp.post("/batch")
def submit_batch() -> tuple[Response, int, dict[str, str]]:
    images, body_task, options = _read_batch()
    key, owner = _idempotency()
    done = submit_jobs(request.args.get("task") or body_task, images, options,
                       idempotency_key=key, owner=owner, callback_url=_callback_url())
    headers = {"Idempotent-Replayed": "true"} if done.replayed else {}
    return jsonify({"jobs": [_accepted(job) for job in done.jobs]}), 202, headers


DEFAULT_PAGE = 50
MAX_PAGE = 500


SOURCES = ("auto", "live", "history")
HISTORY_ARGS = ("key", "since", "until", "cursor")
"""Filters only the history can apply: any of them makes ``GET /v1/jobs`` read it alone."""


def _history_unavailable(exc: Exception) -> ApiError:
    log.warning("job history unavailable: %s", exc)
    return ApiError(503, "history_unavailable", "the job history store is unavailable; "
                    "retry later", {"Retry-After": "10"})


def _time_arg(name: str) -> float | None:
    """Unix seconds or an ISO 8601 date/time (UTC unless it says otherwise)."""
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        try:
            parsed = dt.datetime.fromisoformat(raw)
        except ValueError as exc:
            raise ApiError(400, "invalid_time", f"{name} must be Unix seconds or an ISO 8601 "
                           "date/time") from exc
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        value = parsed.timestamp()
    if not math.isfinite(value):
        raise ApiError(400, "invalid_time", f"{name} must be a finite number")
    return value


def _filters() -> Filters:
    status, task = request.args.get("status") or None, request.args.get("task") or None
    if status is not None and status not in STATUSES:
        raise ApiError(400, "invalid_status", f"status must be one of: {', '.join(STATUSES)}")
    if task is not None and task not in QUEUES and not is_custom_task(task):
        raise ApiError(400, "unknown_task", f"task must be one of: {', '.join(QUEUES)}, "
                       "custom/<model>")
    return Filters(status=status, task=task, submitter=request.args.get("key") or None,
                   since=_time_arg("since"), until=_time_arg("until"),
                   owner=current_caller().owner_filter)


def _cursor() -> tuple[float, str] | None:
    raw = request.args.get("cursor")
    if not raw:
        return None
    at, sep, job_id = raw.partition(":")
    try:
        value = float(at)
    except ValueError:
        value = math.nan
    if not sep or not math.isfinite(value):
        raise ApiError(400, "invalid_page", "cursor is not valid (the next URL gives it)")
    return value, job_id


def _page_from_history(filters: Filters, limit: int,
                       before: tuple[float, str] | None) -> list[Job]:
    if filters.status is not None and filters.status not in FINAL_STATUSES:
        return []  # the history holds finished jobs only
    try:
        return services().history.page(filters, limit=limit, before=before)
    except Exception as exc:
        raise _history_unavailable(exc) from exc


@bp.get("")
@bp.get("/")
def list_jobs() -> Response:
    """Jobs, newest first; ``next`` is the URL of the following page (or null).

    ``source=live``: the jobs in Redis only; ``history``: the durable history only (also
    whenever ``key``, ``since``, ``until`` or ``cursor`` is given); ``auto`` (default): the
    jobs in Redis, and when those run out the page goes on with the history's older jobs."""
    svc = services()
    filters = _filters()
    status, task = filters.status, filters.task
    source = request.args.get("source") or "auto"
    if source not in SOURCES:
        raise ApiError(400, "invalid_source", f"source must be one of: {', '.join(SOURCES)}")
    if source == "auto" and any(request.args.get(name) for name in HISTORY_ARGS):
        source = "history"
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
    if source == "history":
        jobs = _page_from_history(filters, limit, _cursor())
        return jsonify({"jobs": [job_json(job) for job in jobs],
                        "next": _history_next(jobs, limit)})
    if filters.owner is not None and filters.submitter not in (None, filters.owner):
        return jsonify({"jobs": [], "next": None})  # another caller's jobs: none of ours
    jobs = svc.jobs.recent(status=status, task=task, limit=limit, before=before,
                           submitter=filters.owner)
    next_url = None
    if len(jobs) == limit and jobs[-1].queued_at is not None:
        args = {k: v for k, v in request.args.items() if k != "before"}
        next_url = url_for("jobs.list_jobs", **args, before=repr(jobs[-1].queued_at),
                           _external=True)
    elif source == "auto" and (status is None or status in FINAL_STATUSES):
        # Redis ran out: go on with older jobs from the history (queued no later than the
        # last one shown; those shown already are skipped).
        upper = jobs[-1].queued_at if jobs else before
        shown = {job.id for job in jobs}
        try:
            older = svc.history.page(filters, limit=limit,
                                     before=(upper, "\uffff") if upper is not None else None)
        except Exception as exc:  # the live jobs are still worth answering with
            log.warning("job history unavailable: %s", exc)
            older = []
        older = [job for job in older if job.id not in shown][:limit - len(jobs)]
        jobs += older
        if older:
            next_url = _history_next(jobs, limit, drop=("before",))
    return jsonify({"jobs": [job_json(job) for job in jobs], "next": next_url})


def _history_next(jobs: list[Job], limit: int, drop: tuple[str, ...] = ()) -> str | None:
    if len(jobs) < limit:
        return None
    last = jobs[-1]
    args = {k: v for k, v in request.args.items() if k not in ("cursor", "source", *drop)}
    return url_for("jobs.list_jobs", **args, source="history",
                   cursor=f"{(last.queued_at or 0.0)!r}:{last.id}", _external=True)


EXPORT_FORMATS = ("csv", "jsonl")
EXPORT_FIELDS = ("id", "task", "status", "code", "error", "queued_at", "started_at",
                 "finished_at", "total_ms", "attempts", "worker", "model_version", "submitter",
                 "result")


def _export_row(job: Job) -> dict[str, Any]:
    result = job.result
    version = result.get("model_version") if isinstance(result, dict) else None
    return {"id": job.id, "task": job.task, "status": job.status, "code": job.code,
            "error": job.error, "queued_at": _iso(job.queued_at),
            "started_at": _iso(job.started_at), "finished_at": _iso(job.finished_at),
            "total_ms": job.total_ms, "attempts": job.attempts, "worker": job.worker,
            "model_version": version, "submitter": job.submitter, "result": result}


@bp.get("/export")
def export_jobs() -> Response:
    """The history (finished jobs), newest first, as CSV or JSON lines, streamed; the
    same filters as the list (``status``, ``task``, ``key``, ``since``, ``until``)."""
    svc = services()
    fmt = request.args.get("format") or "jsonl"
    if fmt not in EXPORT_FORMATS:
        raise ApiError(400, "invalid_format", f"format must be one of: {', '.join(EXPORT_FORMATS)}")
    filters = _filters()
    rows = iter(()) if filters.status not in (None, *FINAL_STATUSES) else (
        svc.history.iterate(filters))
    try:
        first = next(rows, None)  # a store that is down fails here, before the 200 is sent
    except Exception as exc:
        raise _history_unavailable(exc) from exc

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


def _visible_job(job_id: str, wait: float | None = None) -> Job:
    """The job if the caller may see it (``api.security.Caller.sees``): from Redis (after
    up to ``wait`` seconds), else from the history; 404 otherwise, the same answer whether
    it does not exist or is another tenant's."""
    svc = services()
    caller = current_caller()
    job = svc.jobs.get(job_id)
    if job is not None and wait and caller.sees(job.submitter):
        job = svc.jobs.wait(job_id, wait)
    if job is None:  # expired from Redis (or never existed): the history may have it
        try:
            job = svc.history.get(job_id)
        except Exception as exc:
            raise _history_unavailable(exc) from exc
    if job is None or not caller.sees(job.submitter):
        raise ApiError(404, "job_not_found", f"no job {job_id!r} (unknown or expired)")
    return job


@bp.delete("/<job_id>")
def revoke_job(job_id: str) -> Response:
    """Revoke a queued job (its submitter, or an admin): it is failed with code
    ``revoked`` at once, and the worker that later receives its message skips it."""
    svc = services()
    job = svc.jobs.get(job_id)
    caller = current_caller()
    if job is None or not caller.sees(job.submitter):
        raise ApiError(404, "job_not_found", f"no job {job_id!r} (unknown or expired)")
    if not caller.admin and job.submitter != caller.who:
        raise admin_key_required("revoking another caller's job")
    outcome = svc.jobs.revoke(job_id)
    if outcome == REVOKE_UNKNOWN:
        raise ApiError(404, "job_not_found", f"no job {job_id!r} (unknown or expired)")
    if outcome == REVOKE_TOO_LATE:
        raise ApiError(409, "job_running", "the job is already running; it cannot be revoked")
    if outcome == REVOKE_FINAL:
        raise ApiError(409, "job_finished", "the job has already finished")
    job = svc.jobs.get(job_id)
    if job is None:  # expired in the instant since the revoke
        raise ApiError(404, "job_not_found", f"no job {job_id!r} (unknown or expired)")
    if job.blob_owned:  # a borrowed blob (a watched bucket's object) is the user's
        with contextlib.suppress(Exception):  # the blob's TTL collects it otherwise
            svc.blobs.delete(job.blob)
    return jsonify(job_json(job))


@bp.get("/<job_id>")
def get_job(job_id: str) -> Response:
    """The job; with a webhook (``callback_url`` or ``VISIONQ_CALLBACK_URL``), its delivery
    attempts as ``callbacks`` (``visionq.callbacks.sender``)."""
    job = _visible_job(job_id, _wait_arg())
    body = job_json(job)
    svc = services()
    attempts = read_log(svc.redis, job.id)  # kept longer than a job in Redis may be
    if not current_caller().admin:  # VISIONQ_CALLBACK_URL is the operator's, not a tenant's
        attempts = [each for each in attempts if each.get("target") != "global"]
    if attempts or job.callback_url:
        body["callbacks"] = attempts
    return jsonify(body)
