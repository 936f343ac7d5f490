"""The ``/v1/stream`` WebSocket protocol, shared by the server (``api.stream``) and the
clients (``visionq.client.StreamClient``, the web page).  Schema: ``api/stream.schema.json``.

Client -> server, in this order:

- optionally ``{"auth": "<key>"}`` (text) when the upgrade request carried no key header
  (browsers cannot set headers on a WebSocket); with keys configured it must be first;
- per image: a text frame ``{"task", "options"?, "ref"?, "idempotent"?, "callback_url"?}``
  (``callback_url``: a webhook for the job, as on ``POST /v1/jobs``) then exactly one
  binary frame with the image bytes.  Each image spends one credit.

Server -> client (text, JSON):

- ``{"credit": n}``: n more images may be sent (grants add up).  The first grant is the
  window; one credit comes back per image answered, later when a queue is full;
- ``{"ref", "id", "status": "queued"}``: the image is a job (readable by id over REST);
- ``{"ref", "id", "status": "succeeded" | "failed", "result", "error", "code", "timings",
  "attempts"}``: the job finished (completion order, not submission order);
- ``{"ref", "id": null, "status": "rejected", "error", "code", "http_status"}``: the image
  was refused with the REST API's error code; the connection stays open.

Close codes (4000 + the matching HTTP status) are ``CLOSE_*`` below.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

STREAM_PATH = "/v1/stream"

CLOSE_NORMAL = 1000
CLOSE_TOO_BIG = 1009
"""A frame larger than ``VISIONQ_STREAM_MAX_FRAME_BYTES`` (sent by the WebSocket layer)."""
CLOSE_MALFORMED = 4400
"""A frame the protocol does not allow: not JSON, not an object, no ``task``, a binary
frame without a header before it, a text frame where the image was expected."""
CLOSE_UNAUTHORIZED = 4401
"""No valid key: none in the upgrade request's headers and the first frame is not a valid
``{"auth": key}``, or no frame within ``VISIONQ_STREAM_AUTH_TIMEOUT_S`` (until then the
connection holds one of ``VISIONQ_MAX_STREAMS``)."""
CLOSE_IDLE = 4408
"""No frame received and no job pending for ``VISIONQ_STREAM_IDLE_TIMEOUT_S``."""
CLOSE_CREDIT_EXCEEDED = 4429
"""An image sent with no credit left: the client ignored flow control."""
CLOSE_INTERNAL = 4500
"""An unexpected server error (see the API log)."""
CLOSE_TOO_MANY_STREAMS = 4503
"""The key authenticated by its first frame already has ``VISIONQ_MAX_STREAMS_PER_KEY``
streams open (a key sent in the headers gets an HTTP 503 before the upgrade instead)."""

CLOSE_REASONS = {
    CLOSE_MALFORMED: "malformed_frame",
    CLOSE_UNAUTHORIZED: "unauthorized",
    CLOSE_IDLE: "idle_timeout",
    CLOSE_CREDIT_EXCEEDED: "credit_exceeded",
    CLOSE_INTERNAL: "internal_error",
    CLOSE_TOO_MANY_STREAMS: "too_many_streams",
}

MAX_REF_LENGTH = 255
HEADER_KEYS = frozenset({"task", "options", "ref", "idempotent", "callback_url"})


class ProtocolError(Exception):
    """A malformed frame: the connection is closed with ``CLOSE_MALFORMED``."""


@dataclass(frozen=True)
class ImageHeader:
    task: str
    options: dict[str, Any] = field(default_factory=dict)
    ref: str | None = None
    idempotent: bool = False
    """Use ``ref`` as an idempotency key: the same ref again (same key) is the same job."""
    callback_url: str | None = None
    """Where the finished job is POSTed (checked like ``POST /v1/jobs``'s; a refused one is a
    ``rejected`` frame)."""


def parse_json_frame(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError(f"text frame is not JSON: {str(exc)[:100]}") from None
    if not isinstance(value, dict):
        raise ProtocolError("text frame is not a JSON object")
    return value


def parse_header(frame: dict[str, Any]) -> ImageHeader:
    unknown = set(frame) - HEADER_KEYS
    if unknown:
        raise ProtocolError(f"unknown header field(s): {', '.join(sorted(unknown))}")
    task, options = frame.get("task"), frame.get("options", {})
    ref, idempotent = frame.get("ref"), frame.get("idempotent", False)
    if not isinstance(task, str) or not task:
        raise ProtocolError('header needs "task" (a string)')
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise ProtocolError('header "options" must be an object')
    if ref is not None and (not isinstance(ref, str) or len(ref) > MAX_REF_LENGTH):
        raise ProtocolError(f'header "ref" must be a string of at most {MAX_REF_LENGTH} chars')
    if not isinstance(idempotent, bool) or (idempotent and not ref):
        raise ProtocolError('header "idempotent" must be a boolean, and true needs a "ref"')
    callback_url = frame.get("callback_url")
    if callback_url is not None and not isinstance(callback_url, str):
        raise ProtocolError('header "callback_url" must be a string')
    return ImageHeader(task=task, options=options, ref=ref, idempotent=idempotent,
                       callback_url=callback_url or None)


def header_frame(task: str, options: dict[str, Any] | None = None, ref: str | None = None,
                 idempotent: bool = False, callback_url: str | None = None) -> str:
    frame: dict[str, Any] = {"task": task}
    if callback_url:
        frame["callback_url"] = callback_url
    if options:
        frame["options"] = options
    if ref is not None:
        frame["ref"] = ref
    if idempotent:
        frame["idempotent"] = True
    return json.dumps(frame)


def is_final(frame: dict[str, Any]) -> bool:
    """A job's last frame: its result, its failure or its rejection."""
    return frame.get("status") in ("succeeded", "failed", "rejected")
