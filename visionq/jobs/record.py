"""A job's record: the ``Job`` a Redis hash holds (status, options, timings, result or
error), its statuses, its key, and how the hash is read."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from visionq.keys import JOB_KEY_PREFIX

FINAL_STATUSES = frozenset({"succeeded", "failed"})
STATUSES = ("queued", "running", "succeeded", "failed")


def job_key(job_id: str) -> str:
    return f"{JOB_KEY_PREFIX}{job_id}"


@dataclass
class Job:
    id: str
    task: str
    status: str
    blob: str
    options: dict[str, Any] = field(default_factory=dict)
    queued_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    result: Any = None
    error: str | None = None
    code: str | None = None
    worker: str | None = None
    attempts: int = 0
    blob_owned: bool = True
    """False: the blob is borrowed (a watched bucket's object, read in place) and must
    never be deleted by the worker, the finishing script or a revoke."""
    submitter: str | None = None
    """Who submitted it: the API caller's non-secret name (``key:<HMAC prefix>`` or
    ``ip:<address>``, ``api.security.Caller.who``), ``None`` when not recorded.  Callers
    with an API key see only their own jobs (``api.security.Caller.owner_filter``)."""
    callback_url: str | None = None
    """Where the finished job is POSTed (``visionq.callbacks``), checked at submit."""

    @property
    def queue_wait_ms(self) -> float | None:
        if self.queued_at is None or self.started_at is None:
            return None
        return round((self.started_at - self.queued_at) * 1000, 1)

    @property
    def inference_ms(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return round((self.finished_at - self.started_at) * 1000, 1)

    @property
    def total_ms(self) -> float | None:
        if self.queued_at is None or self.finished_at is None:
            return None
        return round((self.finished_at - self.queued_at) * 1000, 1)


def _float(value: bytes | None) -> float | None:
    return float(value) if value not in (None, b"") else None


def parse_job(job_id: str, raw: dict[bytes, bytes]) -> Job:
    """The ``Job`` of a record's hash (``HGETALL``)."""
    data = {k.decode(): v for k, v in raw.items()}

    def text(name: str) -> str | None:
        value = data.get(name)
        return value.decode() if value is not None else None

    result = text("result")
    return Job(
        id=job_id, task=text("task") or "", status=text("status") or "queued",
        blob=text("blob") or "", options=json.loads(text("options") or "{}"),
        queued_at=_float(data.get("queued_at")), started_at=_float(data.get("started_at")),
        finished_at=_float(data.get("finished_at")),
        result=json.loads(result) if result else None,
        error=text("error"), code=text("code"), worker=text("worker"),
        attempts=int(text("attempts") or 0), blob_owned=data.get("blob_owned") != b"0",
        submitter=text("submitter"), callback_url=text("callback_url"),
    )
