"""DeepStack / CodeProject.AI compatible synchronous endpoints under ``/v1/vision``.

Each request becomes ordinary jobs (``api.submission.submit_jobs``: same validation,
limits and queues as ``/v1/jobs``), then waits for them on the job store and answers in
DeepStack's shape: ``{"success": true, "predictions": [...], "duration": <ms>}`` with
integer ``x_min, y_min, x_max, y_max`` and predictions sorted by confidence, highest first.
Errors are ``{"success": false, "error": "...", "code": "..."}``.

``duration`` is the server-side time of the whole request in milliseconds (queueing
included), not only inference.  Face boxes carry the face worker's ``confidence`` (1.0 when
the worker gives none); recognition confidence comes from the encoding distance
(``visionq.faces_registry.distance_to_confidence``).  A job that does not finish within
``VISIONQ_SYNC_TIMEOUT_S`` is a 504 and is revoked if it has not started, so a caller that
gave up costs no worker time.

DeepStack's own behaviour is the default here (each point is cited in
tests/api/test_deepstack_behaviour.py): ``min_confidence`` below 0.1 is raised to 0.1 on
detection, a negative one is accepted; ``face/register`` keeps one face per image, skips
images without one and replaces the userid's faces (``append=true`` adds to them instead);
``face/delete`` of an unknown userid is a 200; ``face/match`` takes any two files and
answers ``success: false`` in a 200 when one has no face.  Every response also carries
CodeProject.AI's keys (``api.codeproject``).  The face endpoints take an extra
``face_detector`` form field (``yunet``, ``hog`` or ``cnn``; absent: ``VISIONQ_FACE_DETECTOR``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, jsonify, request

from api import client_gone
from api.codeproject import add_codeproject_keys, record_job, start_clock
from api.errors import ApiError
from api.services import services
from api.submission import submit_jobs
from visionq import imaging
from visionq.faces_registry import recognition_fields
from visionq.jobs import FINAL_STATUSES, REVOKE_FINAL, Job
from visionq.options import FACE_DETECTORS, MAX_FACE_LIMIT, MAX_PREDICTION_COUNT

log = logging.getLogger(__name__)
bp = Blueprint("deepstack", __name__, url_prefix="/v1/vision")
bp.before_app_request(start_clock)
bp.after_app_request(add_codeproject_keys)  # every /v1/vision/* response, custom models too

DETECTION_MIN_CONFIDENCE = 0.4
RECOGNITION_MIN_CONFIDENCE = 0.67
MIN_CONFIDENCE_FLOOR = 0.1
"""DeepStack's detector raises any lower threshold to this (``YOLODetector.predict``)."""
FACE_CONFIDENCE = 1.0
"""A face result without a ``confidence`` of its own counts as this."""
UNKNOWN = "unknown"
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})

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


def _min_confidence(default: float, floor: float = 0.0) -> float:
    """DeepStack's ``CheckConfidence``: a number not above 1 (negative accepted), raised to
    ``floor``.  Departure: NaN is refused too (Go's ParseFloat takes it)."""
    raw = request.form.get("min_confidence")
    if raw in (None, ""):
        return max(floor, default)
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if math.isnan(value) or value > 1:
        raise ApiError(400, "invalid_min_confidence",
                       f"min_confidence must be a number not above 1, got {raw!r}")
    return max(floor, value)


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
        finished, left = _wait_while_connected(job.id, deadline)
        if finished is not None and finished.status not in FINAL_STATUSES:
            _revoke_unread(job.id, [j.id for j in jobs])  # the caller left, or time is up
            if left and svc.jobs.revoke(job.id, "the synchronous caller left") != REVOKE_FINAL:
                raise ApiError(499, "client_closed_request", f"the caller closed the "
                               f"connection before job {job.id} finished: revoked")
            finished = svc.jobs.get(job.id) if left else finished
        record_job(finished)
        results.append(_result(finished, job.id))
    return results


def _wait_while_connected(job_id: str, deadline: float) -> tuple[Job | None, bool]:
    """Wait for the job until ``deadline``, looking every ``client_gone.POLL_S`` whether the
    caller hung up; the job (maybe not final) and whether the caller left."""
    svc = services()
    while True:
        remaining = deadline - time.monotonic()
        job = svc.jobs.wait(job_id, max(0.0, min(remaining, client_gone.POLL_S)))
        if job is None or job.status in FINAL_STATUSES or remaining <= client_gone.POLL_S:
            return job, False
        if client_gone.gone(request.environ):
            log.info("the caller of %s left before job %s finished: revoking what has not "
                     "started", request.path, job_id)
            return job, True


def _revoke_unread(job_id: str, ids: list[str]) -> None:
    """Revoke the request's other jobs that have not started: nobody will read them."""
    svc = services()
    for other in ids[ids.index(job_id) + 1:]:
        svc.jobs.revoke(other, "the synchronous caller left or timed out")


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
    min_confidence = _min_confidence(DETECTION_MIN_CONFIDENCE, MIN_CONFIDENCE_FLOOR)
    result = run("detect", [_image()], {"min_confidence": min_confidence})[0]
    predictions = [{"label": p["label"], "confidence": float(p["confidence"]), **_box(p)}
                   for p in result.get("predictions", [])
                   if float(p["confidence"]) >= min_confidence]
    limit = services().settings.deepstack_max_predictions
    return _ok(started, predictions=_sorted(predictions)[:limit])


def _face_confidence(face: dict[str, Any]) -> float:
    return float(face.get("confidence", FACE_CONFIDENCE))


@route("/face")
def face_detection() -> Response:
    """Faces scored at least ``min_confidence`` (their ``confidence`` field)."""
    started = time.perf_counter()
    min_confidence = _min_confidence(DETECTION_MIN_CONFIDENCE, MIN_CONFIDENCE_FLOOR)
    result = run("face", [_image()], {"landmarks": "none", **_face_detector()})[0]
    predictions = [{"confidence": _face_confidence(f), **_box(f)}
                   for f in result.get("faces", []) if _face_confidence(f) >= min_confidence]
    return _ok(started, predictions=_sorted(predictions))


_ENCODE = {"encodings": True, "landmarks": "none"}


def _face_detector() -> dict[str, str]:
    """Form field ``face_detector`` as the face job's option (absent: the server's
    ``VISIONQ_FACE_DETECTOR``); one of ``FACE_DETECTORS``, else 400 before any job."""
    raw = (request.form.get("face_detector") or "").strip()
    if not raw:
        return {}
    if raw not in FACE_DETECTORS:
        raise ApiError(400, "invalid_options", f"face_detector must be one of "
                       f"{', '.join(FACE_DETECTORS)}, got {raw[:40]!r}")
    return {"face_detector": raw}


def _form_number(name: str, kind: type, low: float, high: float) -> Any:
    """Form field ``name`` as ``kind`` within [low, high], ``None`` when absent; else 400."""
    raw = (request.form.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or (isinstance(value, float) and math.isnan(value)) \
            or not low <= value <= high:
        raise ApiError(400, "invalid_options",
                       f"{name} must be {'an integer' if kind is int else 'a number'} "
                       f"from {low:g} to {high:g}, got {raw!r}")
    return value


def _compreface_options() -> tuple[dict[str, Any], int | None]:
    """CompreFace's recognition parameters as extra form fields (absent: DeepStack's
    behaviour): ``limit`` and ``det_prob_threshold`` become the face job's options,
    ``prediction_count`` is returned."""
    options: dict[str, Any] = {}
    limit = _form_number("limit", int, 0, MAX_FACE_LIMIT)
    if limit is not None:
        options["limit"] = limit
    threshold = _form_number("det_prob_threshold", float, 0.0, 1.0)
    if threshold is not None:
        options["det_prob_threshold"] = threshold
    return options, _form_number("prediction_count", int, 1, MAX_PREDICTION_COUNT)


@route("/face/recognize")
def face_recognize() -> Response:
    """DeepStack's answer per face (``userid`` or "unknown", ``confidence``, box) plus
    ``distance`` to the nearest registered person and the face's ``quality``, and with
    ``prediction_count`` CompreFace's ``subjects`` (the N nearest people)."""
    started = time.perf_counter()
    min_confidence = _min_confidence(RECOGNITION_MIN_CONFIDENCE)
    options, prediction_count = _compreface_options()
    faces = run("face", [_image()], {**_ENCODE, **options, **_face_detector()})[0].get(
        "faces", [])
    found = services().faces.recognize([f["encoding"] for f in faces],
                                       [f.get("quality") for f in faces], prediction_count or 1)
    predictions = []
    for face, identification in zip(faces, found, strict=True):
        match = identification.match
        if match is not None and match.confidence >= min_confidence:
            who = {"userid": match.userid, "confidence": round(match.confidence, 4)}
        else:
            who = {"userid": UNKNOWN, "confidence": 0.0}
        fields = recognition_fields(identification)
        extra = {"distance": fields["distance"], "quality": face.get("quality")}
        if prediction_count is not None:
            extra["subjects"] = fields["subjects"]
        predictions.append({**who, **_box(face), **extra})
    return _ok(started, predictions=_sorted(predictions))


def _largest(faces: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not faces:
        return None
    return max(faces, key=lambda f: (f["x_max"] - f["x_min"]) * (f["y_max"] - f["y_min"]))


def _uploads() -> list[bytes]:
    return [upload.read() for _, upload in request.files.items(multi=True)]


@route("/face/register")
def face_register() -> Response:
    """``userid`` and one or more images under any field names.  As DeepStack: one face per
    image (the largest), images without a face are skipped, 400 only when none has one, and
    the userid's faces are replaced ("face updated").  ``append=true`` keeps the faces
    already registered and adds these (visionq's multi-encoding registry)."""
    started = time.perf_counter()
    images = _uploads()
    if not images:
        raise ApiError(400, "missing_image", "no image files in the form (any field name)")
    userid = _userid()
    append = (request.form.get("append") or "").strip().lower() in TRUE_WORDS
    results = run("face", images, {**_ENCODE, **_face_detector()})
    encodings = [face["encoding"] for result in results
                 if (face := _largest(result.get("faces", []))) is not None]
    if not encodings:
        raise ApiError(400, "no_face", "no face detected")
    faces = services().faces
    if append:
        total, message = faces.add(userid, encodings), "face added"
    else:
        total, existed = faces.replace(userid, encodings)
        message = "face updated" if existed else "face added"
    return _ok(started, message=message, userid=userid, encodings=total,
               skipped=len(images) - len(encodings))


@route("/face/list", methods=("POST", "GET"))
def face_list() -> Response:
    started = time.perf_counter()
    return _ok(started, faces=services().faces.users())


@route("/face/delete")
def face_delete() -> Response:
    """As DeepStack: 200 ``success: true`` whether or not the userid was registered
    (``deleted`` says which)."""
    started = time.perf_counter()
    userid = _userid()
    deleted = services().faces.delete(userid)
    return _ok(started, message="face deleted" if deleted else "userid not registered",
               userid=userid, deleted=deleted)


@route("/face/match")
def face_match() -> Response:
    """``similarity`` 0..1 between the largest faces of exactly two images, under any field
    names (DeepStack's ``CheckFaceMatch``).  No face in one of them: ``success: false`` in a
    200, as DeepStack answers."""
    started = time.perf_counter()
    images = _uploads()
    if len(images) != 2:
        messages = {0: "No valid image file found",
                    1: "expected two image files, only one found"}
        raise ApiError(400, "missing_image" if len(images) < 2 else "too_many_images",
                       messages.get(len(images), "only two images allowed"))
    first, second = (_largest(r.get("faces", []))
                     for r in run("face", images, {**_ENCODE, **_face_detector()}))
    if first is None or second is None:
        return jsonify({"success": False, "error": "no face found", "code": "no_face",
                        "duration": round((time.perf_counter() - started) * 1000)})
    similarity = services().faces.similarity(first["encoding"], second["encoding"])
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
