"""Job records in Redis: status, options, timings, result or error, with an expiry.

A job moves ``queued -> running -> succeeded | failed``.  Finishing is atomic and
idempotent: the first ``finish`` wins, so a message delivered twice (a worker killed
after finishing but before acking) still yields exactly one result.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis

JOB_KEY_PREFIX = "visionq:job:"
FINAL_STATUSES = frozenset({"succeeded", "failed"})
STATUSES = ("queued", "running", "succeeded", "failed")

# KEYS[1] job key; ARGV: ttl, then field/value pairs.  Returns 1 when this call finished
# the job, 0 when it was already final (a duplicate delivery).
_FINISH_SCRIPT = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return -1 end
if status == 'succeeded' or status == 'failed' then return 0 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
"""

# Mark running unless final; returns the attempt number, 0 if final, -1 if unknown.
_START_SCRIPT = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return -1 end
if status == 'succeeded' or status == 'failed' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[1], 'worker', ARGV[2])
return redis.call('HINCRBY', KEYS[1], 'attempts', 1)
"""


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


class JobStore:
    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self._client = client
        self._ttl_s = ttl_s
        self._finish = client.register_script(_FINISH_SCRIPT)
        self._start = client.register_script(_START_SCRIPT)

    @staticmethod
    def key(job_id: str) -> str:
        return f"{JOB_KEY_PREFIX}{job_id}"

    def create(self, task: str, blob: str, options: dict[str, Any] | None = None,
               job_id: str | None = None) -> Job:
        job = Job(id=job_id or uuid.uuid4().hex, task=task, status="queued", blob=blob,
                  options=options or {}, queued_at=time.time())
        self._client.hset(self.key(job.id), mapping={
            "task": task, "status": "queued", "blob": blob,
            "options": json.dumps(job.options), "queued_at": repr(job.queued_at),
            "attempts": 0,
        })
        self._client.expire(self.key(job.id), self._ttl_s)
        return job

    def get(self, job_id: str) -> Job | None:
        raw = self._client.hgetall(self.key(job_id))
        if not raw:
            return None
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
            attempts=int(text("attempts") or 0),
        )

    def start(self, job_id: str, worker: str) -> int:
        """Mark running; the attempt number, 0 if already final, -1 if the job is unknown."""
        return int(self._start(keys=[self.key(job_id)], args=[repr(time.time()), worker]))

    def succeed(self, job_id: str, result: Any) -> bool:
        return self._finish_with(job_id, status="succeeded", result=json.dumps(result))

    def fail(self, job_id: str, code: str, error: str) -> bool:
        return self._finish_with(job_id, status="failed", code=code, error=error)

    def _finish_with(self, job_id: str, **fields: str) -> bool:
        fields["finished_at"] = repr(time.time())
        args: list[Any] = [self._ttl_s]
        for name, value in fields.items():
            args += [name, value]
        return int(self._finish(keys=[self.key(job_id)], args=args)) == 1

    def wait(self, job_id: str, timeout_s: float) -> Job | None:
        """Long-poll until the job is final or ``timeout_s`` passes."""
        deadline = time.monotonic() + timeout_s
        delay = 0.01
        while True:
            job = self.get(job_id)
            if job is None or job.status in FINAL_STATUSES or time.monotonic() >= deadline:
                return job
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 1.5, 0.2)
