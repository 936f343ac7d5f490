"""CodeProject.AI Server's extra keys on every ``/v1/vision/*`` response.

CodeProject.AI Server (DeepStack's successor, and Blue Iris's default AI server) answers
in DeepStack's shape plus keys of its SDK's ``ModuleResponse`` (``src/SDK/NET/API/
ModuleResponses.cs``: moduleId, inferenceMs, processMs, analysisRoundTripMs) and of its
vision modules (message, count); clients written for it read them.  Each is added when the
body lacks it:

- ``message``: the endpoint's own message, else the error text, else a summary of what
  was found ("Found person, dog" / "No objects found").
- ``count``: how many predictions (or registered faces for ``face/list``).
- ``inferenceMs``: worker time of the request's jobs, summed (decode + model).
- ``processMs``: from the first job queued to the last one finished (queueing included).
- ``analysisRoundTripMs``: the whole HTTP request (DeepStack's ``duration``).
- ``moduleId``: the model(s) that served it (e.g. ``face_recognition``), else ``visionq``.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Response, current_app, g, request

from visionq.jobs import Job

JOBS_KEY = "visionq_sync_jobs"
STARTED_KEY = "visionq_sync_started"
DEFAULT_MODULE_ID = "visionq"
VISION_PREFIX = "/v1/vision/"


def start_clock() -> None:
    """``before_request``: when this request started (for ``analysisRoundTripMs``)."""
    setattr(g, STARTED_KEY, time.perf_counter())


def record_job(job: Job | None) -> None:
    """Remember a finished (or given-up) job of this request for the timing keys."""
    if job is not None:
        g.setdefault(JOBS_KEY, []).append(job)


def _summary(body: dict[str, Any]) -> str:
    predictions = body.get("predictions")
    if not isinstance(predictions, list) or not predictions:
        return "No objects found" if predictions is not None else ""
    names = [str(p.get("label") or p.get("userid") or "face") for p in predictions
             if isinstance(p, dict)]
    return "Found " + ", ".join(dict.fromkeys(names))


def _count(body: dict[str, Any]) -> int:
    for key in ("predictions", "faces"):
        if isinstance(body.get(key), list):
            return len(body[key])
    return 0


def _timings(jobs: list[Job]) -> dict[str, int]:
    inference = sum(job.inference_ms or 0.0 for job in jobs)
    queued = [job.queued_at for job in jobs if job.queued_at is not None]
    finished = [job.finished_at for job in jobs if job.finished_at is not None]
    process = (max(finished) - min(queued)) * 1000 if queued and finished else 0.0
    return {"inferenceMs": round(inference), "processMs": max(0, round(process))}


def _module_id(jobs: list[Job]) -> str:
    models = [job.result["model"] for job in jobs
              if isinstance(job.result, dict) and isinstance(job.result.get("model"), str)]
    return ",".join(dict.fromkeys(models)) or DEFAULT_MODULE_ID


def _round_trip(body: dict[str, Any]) -> int:
    if isinstance(body.get("duration"), int):
        return body["duration"]
    started = g.get(STARTED_KEY)
    return round((time.perf_counter() - started) * 1000) if started is not None else 0


def add_codeproject_keys(response: Response) -> Response:
    """App-wide ``after_request`` (registered by the DeepStack blueprint) for every path
    under ``/v1/vision/`` whichever blueprint serves it (custom models too), errors
    included."""
    if not request.path.startswith(VISION_PREFIX):
        return response
    if response.mimetype != "application/json" or response.direct_passthrough:
        return response
    body = response.get_json(silent=True)
    if not isinstance(body, dict):
        return response
    jobs: list[Job] = g.get(JOBS_KEY, [])
    message = body.get("error") if body.get("success") is False else _summary(body)
    extra: dict[str, Any] = {"message": message or "", "count": _count(body),
                             **_timings(jobs), "analysisRoundTripMs": _round_trip(body),
                             "moduleId": _module_id(jobs)}
    missing = {key: value for key, value in extra.items() if key not in body}
    if missing:
        response.set_data(current_app.json.dumps({**body, **missing}))
    return response
