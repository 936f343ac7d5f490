"""``GET /v1/jobs``: jobs newest first, a page at a time, from Redis (``?before=``) and,
when those run out or a history-only filter is given, from the durable history
(``?cursor=``); ``next`` is the URL of the following page."""

from __future__ import annotations

import logging
import math

from flask import Response, jsonify, request, url_for

from api.errors import ApiError
from api.jobs.args import filters as read_filters
from api.jobs.history import history_unavailable
from api.services import services
from visionq.history import Filters
from visionq.job_json import job_json
from visionq.jobs import FINAL_STATUSES, Job

log = logging.getLogger("visionq.api")

DEFAULT_PAGE = 50
MAX_PAGE = 500


SOURCES = ("auto", "live", "history")
HISTORY_ARGS = ("key", "since", "until", "cursor")
"""Filters only the history can apply: any of them makes ``GET /v1/jobs`` read it alone."""


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
        raise history_unavailable(exc) from exc


def list_jobs() -> Response:
    """Jobs, newest first; ``next`` is the URL of the following page (or null).

    ``source=live``: the jobs in Redis only; ``history``: the durable history only (also
    whenever ``key``, ``since``, ``until`` or ``cursor`` is given); ``auto`` (default): the
    jobs in Redis, and when those run out the page goes on with the history's older jobs."""
    svc = services()
    filters = read_filters()
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
