"""Typed results.  Each keeps the JSON it came from in ``raw`` (printed as is by
``visionq submit``), so a field the server adds later is never lost."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FINAL_STATUSES = frozenset({"succeeded", "failed"})


@dataclass(frozen=True)
class Timings:
    queued_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    queue_wait_ms: float | None = None
    inference_ms: float | None = None
    total_ms: float | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Timings:
        data = data or {}
        return cls(**{name: data.get(name) for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Job:
    """A job as ``GET /v1/jobs/<id>`` shows it (``submit`` returns one with status
    ``queued`` and no result yet)."""

    id: str
    task: str
    status: str
    result: dict[str, Any] | None = None
    error: str | None = None
    code: str | None = None
    attempts: int = 0
    timings: Timings = field(default_factory=Timings)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def done(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        return cls(id=data["id"], task=data.get("task", ""), status=data["status"],
                   result=data.get("result"), error=data.get("error"), code=data.get("code"),
                   attempts=data.get("attempts") or 0,
                   timings=Timings.from_json(data.get("timings")), raw=data)


@dataclass(frozen=True)
class StreamResult:
    """An image's last frame on the stream: ``succeeded``/``failed`` (a job, ``id`` set)
    or ``rejected`` (refused before it became a job: ``id`` is None, ``http_status`` the
    REST API's status for the same refusal).  ``ref`` is the reference it was sent with."""

    ref: str | None
    id: str | None
    status: str
    result: dict[str, Any] | None = None
    error: str | None = None
    code: str | None = None
    http_status: int | None = None
    attempts: int = 0
    timings: Timings = field(default_factory=Timings)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StreamResult:
        return cls(ref=data.get("ref"), id=data.get("id"), status=data["status"],
                   result=data.get("result"), error=data.get("error"), code=data.get("code"),
                   http_status=data.get("http_status"), attempts=data.get("attempts") or 0,
                   timings=Timings.from_json(data.get("timings")), raw=data)


# -- DeepStack-compatible endpoints (/v1/vision/*) -------------------------------------

def _box(data: dict[str, Any]) -> dict[str, int]:
    return {name: int(data[name]) for name in ("x_min", "y_min", "x_max", "y_max")}


@dataclass(frozen=True)
class ObjectPrediction:
    """``/v1/vision/detection``: a COCO object."""

    label: str
    confidence: float
    x_min: int
    y_min: int
    x_max: int
    y_max: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ObjectPrediction:
        return cls(label=data["label"], confidence=float(data["confidence"]), **_box(data))


@dataclass(frozen=True)
class FacePrediction:
    """``/v1/vision/face``: a face's box."""

    confidence: float
    x_min: int
    y_min: int
    x_max: int
    y_max: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FacePrediction:
        return cls(confidence=float(data["confidence"]), **_box(data))


@dataclass(frozen=True)
class FaceMatch:
    """``/v1/vision/face/recognize``: a face and who it is (``userid`` ``"unknown"`` with
    confidence 0 below ``min_confidence``)."""

    userid: str
    confidence: float
    x_min: int
    y_min: int
    x_max: int
    y_max: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaceMatch:
        return cls(userid=data["userid"], confidence=float(data["confidence"]), **_box(data))


@dataclass(frozen=True)
class Registration:
    """``/v1/vision/face/register``: ``encodings`` now held for ``userid``; ``skipped``
    images had no face."""

    userid: str
    message: str
    encodings: int
    skipped: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Registration:
        return cls(userid=data["userid"], message=data.get("message", ""),
                   encodings=int(data.get("encodings", 0)), skipped=int(data.get("skipped", 0)))


@dataclass(frozen=True)
class Label:
    """``/v1/vision/classify``: an ImageNet label."""

    label: str
    confidence: float

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Label:
        return cls(label=data["label"], confidence=float(data["confidence"]))
