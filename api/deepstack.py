"""DeepStack / CodeProject.AI compatible synchronous endpoints under ``/v1/vision``.

Each request becomes ordinary jobs (``api.submission.submit_jobs``: same validation,
limits and queues as ``/v1/jobs``), then waits for them on the job store and answers in
DeepStack's shape: ``{"success": true, "predictions": [...], "duration": <ms>}`` with
integer ``x_min, y_min, x_max, y_max`` and predictions sorted by confidence, highest first.
Errors are ``{"success": false, "error": "...", "code": "..."}``.

``duration`` is the server-side time of the whole request in milliseconds (queueing
included), not only inference.  dlib's HOG face detector gives no probability, so face
boxes have ``confidence`` 1.0; recognition confidence comes from the encoding distance
(``visionq.faces_registry.distance_to_confidence``).  A job that does not finish within
``VISIONQ_SYNC_TIMEOUT_S`` is a 504 and is revoked if it has not started, so a caller that
gave up costs no worker time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, jsonify, request

from api.errors import ApiError
from api.services import services
from api.submission import submit_jobs
from visionq import imaging
from visionq.jobs import FINAL_STATUSES, REVOKE_FINAL, Job

bp = Blueprint("deepstack", __name__, url_prefix="/v1/vision")

DETECTION_MIN_CONFIDENCE = 0.4
RECOGNITION_MIN_CONFIDENCE = 0.67
FACE_CONFIDENCE = 1.0
"""HOG has no calibrated score: every face it reports gets this confidence."""
UNKNOWN = "unknown"

# Failed-job codes -> HTTP status.  Image problems keep the status the API gives at submit.
_IMAGE_STATUS = {cls.code: cls.status for cls in (
    imaging.ImageError, imaging.EmptyImageError, imaging.NotAnImageError,
    imaging.TruncatedImageError, imaging.ImageTooLargeError, imaging.PayloadTooLargeError,
    imaging.UnsupportedFormatError)}
_JOB_STATUS = {"timeout": 504, "revoked": 409, **_IMAGE_STATUS}


def route(rule: str, methods: tuple[str, ...] = ("POST",)) -> Callable:
    """A trailing slash works too (``strict_slashes=False``), as with DeepStack."""
    return bp.route(rule, methods=list(methods), strict_slashes=False)


def _ok(started: float, **body: Any) -> Response:
    return jsonify({"success": True, **body,
                    "duration": round((time.perf_counter() - started) * 1000)})


def _min_confidence(default: float) -> float:
    raw = request.form.get("min_confidence")
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise ApiError(400, "invalid_min_confidence",
                       f"min_confidence must be a number between 0 and 1, got {raw!r}")
    return value


def _image(field: str = "image") -> bytes:
    upload = request.files.get(field)
    if upload is None:
        raise ApiError(400, "missing_image",
                       f'missing file field "{field}" (multipart/form-data)')
    return upload.read()


def _userid(required: bool = True) -> str:
    userid = (request.form.get("userid") or request.form.get("userId") or "").strip()
    if required and not userid:
        raise ApiError(400, "missing_userid", 'missing form field "userid"')
    if len(userid) > 256:
        raise ApiError(400, "invalid_userid", "userid is longer than 256 characters")
    return userid


def run(task: str, images: list[bytes], options: dict[str, Any]) -> list[dict[str, Any]]:
    """Submit one job per image, wait for all of them, return their results in order."""
    svc = services()
    jobs = submit_jobs(task, images, options).jobs
    deadline = time.monotonic() + svc.settings.sync_timeout_s
    results = []
    for job in jobs:
        finished = svc.jobs.wait(job.id, max(0.0, deadline - time.monotonic()))
        results.append(_result(finished, job.id))
    return results


def _result(job: Job | None, job_id: str) -> dict[str, Any]:
    svc = services()
    if job is None:
        raise ApiError(500, "job_lost", f"job {job_id} disappeared (expired?)")
    if job.status not in FINAL_STATUSES:
        if svc.jobs.revoke(job_id, "the synchronous caller timed out") == REVOKE_FINAL:
            return _result(svc.jobs.get(job_id), job_id)  # finished just now
        raise ApiError(504, "timeout", f"no result within {svc.settings.sync_timeout_s:g} s "
                       f"(job {job_id} is {job.status}); the workers are busy or offline")
    if job.status == "failed":
        raise ApiError(_JOB_STATUS.get(job.code or "", 500), job.code or "job_failed",
                       job.error or "the job failed")
    return job.result or {}


def _box(item: dict[str, Any]) -> dict[str, int]:
    return {name: int(round(item[name])) for name in ("x_min", "y_min", "x_max", "y_max")}


def _sorted(predictions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(predictions, key=lambda p: -p["confidence"])


@route("/detection")
def detection() -> Response:
    started = time.perf_counter()
    min_confidence = _min_confidence(DETECTION_MIN_CONFIDENCE)
    result = run("detect", [_image()], {"min_confidence": min_confidence})[0]
    predictions = [{"label": p["label"], "confidence": float(p["confidence"]), **_box(p)}
                   for p in result.get("predictions", [])
                   if float(p["confidence"]) >= min_confidence]
    return _ok(started, predictions=_sorted(predictions))


@route("/face")
def face_detection() -> Response:
    started = time.perf_counter()
    min_confidence = _min_confidence(DETECTION_MIN_CONFIDENCE)
    result = run("face", [_image()], {"landmarks": "none"})[0]
    predictions = [{"confidence": FACE_CONFIDENCE, **_box(f)} for f in result.get("faces", [])
                   if min_confidence <= FACE_CONFIDENCE]
    return _ok(started, predictions=predictions)


_ENCODE = {"encodings": True, "landmarks": "none"}


@route("/face/recognize")
def face_recognize() -> Response:
    started = time.perf_counter()
    min_confidence = _min_confidence(RECOGNITION_MIN_CONFIDENCE)
    faces = run("face", [_image()], _ENCODE)[0].get("faces", [])
    matches = services().faces.identify([f["encoding"] for f in faces])
    predictions = []
    for face, match in zip(faces, matches, strict=True):
        if match is not None and match.confidence >= min_confidence:
            who = {"userid": match.userid, "confidence": round(match.confidence, 4)}
        else:
            who = {"userid": UNKNOWN, "confidence": 0.0}
        predictions.append({**who, **_box(face)})
    return _ok(started, predictions=_sorted(predictions))


@route("/face/register")
def face_register() -> Response:
    """``userid`` and one or more images under any field names, one face in each."""
    started = time.perf_counter()
    userid = _userid()
    uploads = list(request.files.items(multi=True))
    if not uploads:
        raise ApiError(400, "missing_image", "no image files in the form (any field name)")
    results = run("face", [upload.read() for _, upload in uploads], _ENCODE)
    encodings = []
    for (field, _), result in zip(uploads, results, strict=True):
        faces = result.get("faces", [])
        if len(faces) != 1:
            raise ApiError(400, "not_one_face", f'image "{field}" has {len(faces)} faces; '
                           "register needs exactly one face per image")
        encodings.append(faces[0]["encoding"])
    total = services().faces.add(userid, encodings)
    return _ok(started, message="face added", userid=userid, encodings=total)


@route("/face/list", methods=("POST", "GET"))
def face_list() -> Response:
    started = time.perf_counter()
    return _ok(started, faces=services().faces.users())


@route("/face/delete")
def face_delete() -> Response:
    started = time.perf_counter()
    userid = _userid()
    if not services().faces.delete(userid):
        raise ApiError(404, "userid_not_found", f"no registered face for userid {userid!r}")
    return _ok(started, message="face deleted", userid=userid)


def _largest(faces: list[dict[str, Any]], field: str) -> dict[str, Any]:
    if not faces:
        raise ApiError(400, "no_face", f'no face found in "{field}"')
    return max(faces, key=lambda f: (f["x_max"] - f["x_min"]) * (f["y_max"] - f["y_min"]))


@route("/face/match")
def face_match() -> Response:
    """``similarity`` 0..1 between the largest face of ``image1`` and of ``image2``."""
    started = time.perf_counter()
    first, second = run("face", [_image("image1"), _image("image2")], _ENCODE)
    one = _largest(first.get("faces", []), "image1")
    two = _largest(second.get("faces", []), "image2")
    similarity = services().faces.similarity(one["encoding"], two["encoding"])
    return _ok(started, similarity=round(similarity, 4))


@route("/classify")
def classify() -> Response:
    """ImageNet labels (our extension; DeepStack has none): ``label``/``confidence`` of the
    best one plus ``predictions`` (top ``top_k``, default 5) without boxes."""
    started = time.perf_counter()
    min_confidence = _min_confidence(0.0)
    options: dict[str, Any] = {}
    if request.form.get("top_k"):
        try:
            options["top_k"] = int(request.form["top_k"])
        except ValueError as exc:
            raise ApiError(400, "invalid_options", "top_k must be an integer") from exc
    result = run("classify", [_image()], options)[0]
    predictions = _sorted([{"label": p["label"], "confidence": float(p["confidence"])}
                           for p in result.get("predictions", [])
                           if float(p["confidence"]) >= min_confidence])
    best = predictions[0] if predictions else {"label": None, "confidence": 0.0}
    return _ok(started, label=best["label"], confidence=best["confidence"],
               predictions=predictions)


@route("/scene")
def scene() -> Response:
    raise ApiError(501, "scene_not_available",
                   "scene recognition (Places365) is not available in visionq; use "
                   "/v1/vision/classify for ImageNet labels or /v1/vision/detection for objects")
