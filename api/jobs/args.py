"""The query arguments several job routes share, each checked before any work is done:
``?wait=`` (long-poll), and the filters of the list and the export."""

from __future__ import annotations

import datetime as dt
import math

from flask import request

from api.errors import ApiError
from api.security import current_caller
from api.services import services
from visionq.custom_models import is_custom_task
from visionq.history import Filters
from visionq.jobs import STATUSES
from visionq.settings import QUEUES


def wait_arg() -> float | None:
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


def time_arg(name: str) -> float | None:
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


def filters() -> Filters:
    status, task = request.args.get("status") or None, request.args.get("task") or None
    if status is not None and status not in STATUSES:
        raise ApiError(400, "invalid_status", f"status must be one of: {', '.join(STATUSES)}")
    if task is not None and task not in QUEUES and not is_custom_task(task):
        raise ApiError(400, "unknown_task", f"task must be one of: {', '.join(QUEUES)}, "
                       "custom/<model>")
    return Filters(status=status, task=task, submitter=request.args.get("key") or None,
                   since=time_arg("since"), until=time_arg("until"),
                   owner=current_caller().owner_filter)
