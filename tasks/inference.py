"""Task signatures, one per queue.  A message carries only the job id: the job record
holds the image's blob key and the options (images travel by reference)."""

from __future__ import annotations

from typing import Any

from celery import Task

from tasks.app import app
from tasks.request import JobRequest
from visionq.settings import QUEUES

TASK_NAMES = {queue: f"visionq.{queue}" for queue in QUEUES}


class JobTask(Task):
    """Base class of visionq's tasks: its requests fail the job on a hard time limit."""

    Request = JobRequest


def _run(task: str, job_id: str, hostname: str | None) -> dict[str, Any]:
    from workers.runner import run_job  # workers import model code lazily

    return run_job(job_id, task, hostname or "unknown")


@app.task(name=TASK_NAMES["face"], bind=True, base=JobTask)
def face(self, job_id: str) -> dict[str, Any]:
    return _run("face", job_id, self.request.hostname)


@app.task(name=TASK_NAMES["detect"], bind=True, base=JobTask)
def detect(self, job_id: str) -> dict[str, Any]:
    return _run("detect", job_id, self.request.hostname)


@app.task(name=TASK_NAMES["classify"], bind=True, base=JobTask)
def classify(self, job_id: str) -> dict[str, Any]:
    return _run("classify", job_id, self.request.hostname)


def enqueue(task: str, job_id: str) -> None:
    """Publish one job to its queue (routing is declared once, in tasks.config).

    ``ignore_result``: results live in the job record, so the producer must not subscribe
    to Celery's result channel for every message (a pub/sub round trip per submit, and a
    broken result connection — a Redis restart — would fail the submit with a 500)."""
    app.send_task(TASK_NAMES[task], args=[job_id], task_id=job_id, ignore_result=True)
