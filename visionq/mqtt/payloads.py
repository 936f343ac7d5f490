"""What is published, from a job history stream entry (the job's final Redis hash).

Face encodings (128 numbers per face, enough to recognise the person elsewhere) are never
published.  A job message larger than ``VISIONQ_MQTT_MAX_PAYLOAD_BYTES`` carries
``"result": {"truncated": true}`` instead of its result (the result stays readable through
``GET /v1/jobs/<id>`` and the history)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

JOB_FIELDS = ("id", "task", "status", "code", "error", "attempts", "worker", "submitter")
TIME_FIELDS = ("queued_at", "started_at", "finished_at")
ERROR_MAX = 1000
"""Characters of a failed job's error message published."""

Identify = Callable[[Sequence[Sequence[float]], Sequence[Any]], Sequence[Any]]
"""``FaceRegistry.identify(encodings, qualities)``: for each encoding (and the face's
``quality``, for the size/sharpness gate), a match (``userid``, ``confidence``) or None."""


def iso(ts: float | None) -> str | None:
    """Unix time as ISO 8601 with its offset (Home Assistant's ``timestamp`` class)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None  # type: ignore[arg-type]
    except ValueError:
        return None


def _result(fields: Mapping[str, str]) -> Any:
    raw = fields.get("result")
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _without_encodings(result: Any) -> Any:
    if isinstance(result, dict) and isinstance(result.get("faces"), list):
        faces = [{k: v for k, v in face.items() if k != "encoding"}
                 if isinstance(face, dict) else face for face in result["faces"]]
        return {**result, "faces": faces}
    return result


def source(fields: Mapping[str, str]) -> dict[str, str | None]:
    """Where the job came from: who submitted it (``key:<HMAC prefix>`` or
    ``ip:<address>``, never a key) and, for a watched bucket's object read in place, its
    key (the camera's upload)."""
    borrowed = fields.get("blob_owned") == "0"
    return {"source": fields.get("submitter") or None,
            "image": (fields.get("blob") or None) if borrowed else None}


def encode(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode("utf-8", "replace")


def job_message(fields: Mapping[str, str], max_bytes: int) -> bytes:
    """The JSON published to ``<prefix>/<task>/<status>``."""
    payload: dict[str, Any] = {name: fields.get(name) or None for name in JOB_FIELDS}
    payload["attempts"] = int(_float(fields.get("attempts")) or 0)
    if payload["error"]:
        payload["error"] = payload["error"][:ERROR_MAX]
    for name in TIME_FIELDS:
        payload[name] = _float(fields.get(name))
    payload["time"] = iso(payload["finished_at"])
    payload.update(source(fields))
    payload["result"] = _without_encodings(_result(fields))
    body = encode(payload)
    if len(body) > max_bytes:
        payload["result"] = {"truncated": True, "bytes": len(body)}
        body = encode(payload)
    return body


def sightings(fields: Mapping[str, str], identify: Identify,
              min_confidence: float) -> dict[str, dict[str, Any]]:
    """userid -> the message for ``<prefix>/face/<userid>``, for each registered person
    recognised in a succeeded face job that asked for encodings (``/v1/vision/face/
    recognize``, or a job with ``"encodings": true``) at ``min_confidence`` or more: the
    surest of their faces in the image."""
    if fields.get("task") != "face" or fields.get("status") != "succeeded":
        return {}
    result = _result(fields)
    faces = result.get("faces") if isinstance(result, dict) else None
    if not isinstance(faces, list):
        return {}
    found = [f for f in faces if isinstance(f, dict) and isinstance(f.get("encoding"), list)]
    if not found:
        return {}
    seen: dict[str, dict[str, Any]] = {}
    finished = _float(fields.get("finished_at"))
    for face, match in zip(found, identify([f["encoding"] for f in found],
                                                  [f.get("quality") for f in found]),
                           strict=True):
        if match is None or match.confidence < min_confidence:
            continue
        confidence = round(float(match.confidence), 4)
        if match.userid in seen and seen[match.userid]["confidence"] >= confidence:
            continue
        seen[match.userid] = {
            "userid": match.userid, "confidence": confidence, "time": iso(finished),
            "timestamp": finished, "job_id": fields.get("id"), **source(fields),
            "box": {k: face[k] for k in ("x_min", "y_min", "x_max", "y_max") if k in face}}
    return seen


def backlog_message(queue: str, length: int, now: float) -> bytes:
    return encode({"queue": queue, "length": length, "time": iso(now)})
