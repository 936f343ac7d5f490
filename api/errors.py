"""One error shape for every failure: ``{"success": false, "error": "...", "code": "..."}``.

Every exception becomes JSON with the right status: typed API and image errors keep
their status and code, Werkzeug's HTTP errors (404, 405, 413...) keep theirs, a down
Redis is a 503 with ``Retry-After``, anything else a 500 without a traceback.
"""

from __future__ import annotations

import logging

import kombu.exceptions
import redis
from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from visionq.imaging import ImageError

log = logging.getLogger("visionq.api")

REDIS_RETRY_AFTER_S = 5


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> Response:
    response = jsonify({"success": False, "error": message, "code": code})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _http_code(exc: HTTPException) -> str:
    return (exc.name or "error").lower().replace(" ", "_").replace("'", "")


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.errorhandler(ImageError)
    def _image_error(exc: ImageError) -> Response:
        return error_response(exc.status, exc.code, exc.message)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            message = "request too large: the upload exceeds the size limit"
        headers = {"Allow": ", ".join(exc.valid_methods)} if getattr(
            exc, "valid_methods", None) else None
        return error_response(status, _http_code(exc), message, headers)

    @app.errorhandler(redis.exceptions.ConnectionError)
    @app.errorhandler(redis.exceptions.TimeoutError)
    @app.errorhandler(kombu.exceptions.OperationalError)
    def _redis_down(exc: Exception) -> Response:
        log.warning("Redis unavailable: %s", exc)
        return error_response(503, "redis_unavailable",
                              "the queue (Redis) is unavailable; retry shortly",
                              {"Retry-After": str(REDIS_RETRY_AFTER_S)})

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "internal_error",
                              f"internal error ({type(exc).__name__}); see the server log")
