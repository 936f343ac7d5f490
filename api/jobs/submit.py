"""``POST /v1/jobs`` and ``POST /v1/jobs/batch``: read the image(s), the task and the
options from a form or a JSON body, and hand them to ``api.submission.submit_jobs``
(202 + id; with ``?wait=``, the finished job)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from flask import Response, jsonify, request, url_for

from api.errors import ApiError
from api.jobs.args import wait_arg
from api.options import check_options_text
from api.security import current_caller
from api.services import services
from api.submission import submit_jobs
from visionq.job_json import job_json
from visionq.jobs import FINAL_STATUSES, Job


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


def submit() -> tuple[Response, int, dict[str, str]]:
    """``202`` with the job's id; with ``?wait=N``, ``200`` with the finished job when it
    finishes within N seconds (one request instead of a submit and a long-poll: the
    cheapest way to get a result synchronously), else the ``202`` once N seconds pass."""
    data, body_task, options = _read_upload()
    wait = wait_arg()  # checked before anything is written
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


def submit_batch() -> tuple[Response, int, dict[str, str]]:
    images, body_task, options = _read_batch()
    key, owner = _idempotency()
    done = submit_jobs(request.args.get("task") or body_task, images, options,
                       idempotency_key=key, owner=owner, callback_url=_callback_url())
    headers = {"Idempotent-Replayed": "true"} if done.replayed else {}
    return jsonify({"jobs": [_accepted(job) for job in done.jobs]}), 202, headers
