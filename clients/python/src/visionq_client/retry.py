"""When a request is sent again, and how long to wait first.

A request is retried when the server could not have acted on it (the connection was
refused, or a 503 such as ``queue_full``, which the API answers before writing anything),
and also after a connection error mid-request when the request is safe to repeat: a GET,
or a submit carrying an ``Idempotency-Key`` (the API then answers a repeat with the first
request's jobs instead of new ones).  A 409 ``idempotency_in_progress`` (the first
request with that key is still being written) is retried with the same key."""

from __future__ import annotations

import random
from dataclasses import dataclass

import requests
from urllib3.exceptions import NewConnectionError

RETRY_STATUSES = frozenset({503})
RETRY_CODES = frozenset({"idempotency_in_progress", "idempotency_conflict"})


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` in all (1: never retry); waits of ``backoff_s`` × 2ⁿ (with jitter)
    capped at ``max_backoff_s``, or the server's ``Retry-After`` capped at
    ``max_retry_after_s`` (a longer one is raised to the caller instead)."""

    attempts: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    max_retry_after_s: float = 30.0

    def delay(self, attempt: int, retry_after_s: float | None = None) -> float | None:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1),
        or None when there is none left (or the server asks for too long a wait)."""
        if attempt >= self.attempts:
            return None
        if retry_after_s is not None:
            return retry_after_s if retry_after_s <= self.max_retry_after_s else None
        base = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        return base * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not a secret


NO_RETRY = RetryPolicy(attempts=1)


def never_connected(exc: requests.RequestException) -> bool:
    """True when the request cannot have reached the server (refused, connect timeout)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, NewConnectionError):
            return True
        reason = getattr(cause, "reason", None)
        cause = reason if isinstance(reason, BaseException) else cause.__context__
    return False


def retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the HTTP-date form is not used by visionq)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
