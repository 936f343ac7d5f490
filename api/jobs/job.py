"""``GET /v1/jobs/<id>`` (long-poll with ``?wait=``; from the durable history once its
Redis record expired) and ``DELETE /v1/jobs/<id>`` (revoke a queued job)."""

from __future__ import annotations

import contextlib

from flask import Response, jsonify

from api.errors import ApiError
from api.jobs.args import wait_arg
from api.jobs.history import history_unavailable
from api.security import admin_key_required, current_caller
from api.services import services
from visionq.callbacks.sender import read_log
from visionq.job_json import job_json
from visionq.jobs import REVOKE_FINAL, REVOKE_TOO_LATE, REVOKE_UNKNOWN, Job


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
            raise history_unavailable(exc) from exc
    if job is None or not caller.sees(job.submitter):
        raise ApiError(404, "job_not_found", f"no job {job_id!r} (unknown or expired)")
    return job


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


def get_job(job_id: str) -> Response:
    """The job; with a webhook (``callback_url``), its delivery attempts as ``callbacks``
    (``visionq.callbacks.sender``; ``VISIONQ_CALLBACK_URL``'s to admin keys only)."""
    job = _visible_job(job_id, wait_arg())
    body = job_json(job)
    svc = services()
    attempts = read_log(svc.redis, job.id)  # kept longer than a job in Redis may be
    if not current_caller().admin:  # VISIONQ_CALLBACK_URL is the operator's, not a tenant's
        attempts = [each for each in attempts if each.get("target") != "global"]
    if attempts or job.callback_url:
        body["callbacks"] = attempts
    return jsonify(body)
