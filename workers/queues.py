"""The visionq queues a Celery worker consumes: read by the worker's hooks (``workers.app``)
and by the start-up broker check (``workers.shard_check``)."""

from __future__ import annotations

from typing import Any

from visionq.custom_models import CUSTOM_QUEUE
from visionq.settings import QUEUES


def consumed_queues(worker: Any) -> list[str]:
    """The visionq queues a worker consumes (``-Q``; the built-in ones without it, though such
    a worker takes custom jobs too)."""
    selected = worker.app.amqp.queues.consume_from
    names = list(selected) if selected else list(QUEUES)
    return [name for name in names if name in (*QUEUES, CUSTOM_QUEUE)]
