"""Task signatures, one per queue, and how a producer publishes a job.

A message carries only the job id: the job record holds the image's blob key and the
options (images travel by reference).  Producers send by name, so they need no task
objects; the implementations are registered on the worker side (``workers.app``).
"""

from __future__ import annotations

from celery import Celery

from visionq.custom_models import CUSTOM_QUEUE, queue_of_task
from visionq.settings import QUEUES

TASK_NAMES = {queue: f"visionq.{queue}" for queue in (*QUEUES, CUSTOM_QUEUE)}
"""Queue -> task name; the ``custom`` queue carries every custom model's jobs (job task
``custom/<name>``; the worker reads the model's name from the job record)."""


def queue_of(task_name: str) -> str | None:
    """The queue (= job task) a task name belongs to; ``None`` for anything else."""
    queue = task_name.rpartition(".")[2]
    return queue if TASK_NAMES.get(queue) == task_name else None


def enqueue(celery: Celery, task: str, job_id: str) -> None:
    """Publish job ``job_id`` to the ``task`` queue (routing is declared in tasks.config).

    ``ignore_result``: results live in the job record, so the producer must not subscribe
    to Celery's result channel for every message (a pub/sub round trip per submit, and a
    broken result connection — a Redis restart — would fail the submit with a 500).  A
    custom model's task (``custom/<name>``) goes to the ``custom`` queue."""
    celery.send_task(TASK_NAMES[queue_of_task(task)], args=[job_id], task_id=job_id,
                     ignore_result=True)
