"""The job routes' ``503`` when the durable history's store is down (list, export and a
job whose Redis record expired read it)."""

from __future__ import annotations

import logging

from api.errors import ApiError

log = logging.getLogger("visionq.api")


def history_unavailable(exc: Exception) -> ApiError:
    log.warning("job history unavailable: %s", exc)
    return ApiError(503, "history_unavailable", "the job history store is unavailable; "
                    "retry later", {"Retry-After": "10"})
