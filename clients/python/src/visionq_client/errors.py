"""The errors a call raises: the API's JSON error shape, or a stream the server closed."""

from __future__ import annotations


class VisionqError(RuntimeError):
    """A 4xx/5xx answer: ``status`` (HTTP), ``code`` and ``message`` from the API's JSON
    error body (``{"error", "code"}``); ``retry_after_s`` when the server sent one."""

    def __init__(self, status: int, code: str, message: str,
                 retry_after_s: float | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.retry_after_s = retry_after_s


class StreamClosedError(RuntimeError):
    """The server closed a stream (close codes: 4000 + the matching HTTP status, e.g. 4401
    unauthorized, 4429 credit exceeded, 4503 too many streams)."""

    def __init__(self, code: int | None, reason: str | None) -> None:
        super().__init__(f"stream closed ({code}): {reason or ''}")
        self.code, self.reason = code, reason
