"""The job routes' ``503`` when the durable history's store is down (a job as JSON is the
core's ``visionq.job_json``: the webhook's body too)."""

from __future__ import annotations

import logging

from api.errors import ApiError

log = logging.getLogger("visionq.api")


def history_unavailable(exc: Exception) -> ApiError:
    log.warning("job history unavailable: %s", exc)
    return ApiError(503, "history_unavailable", "the job history store is unavailable; "
                    "retry later", {"Retry-After": "10"})
