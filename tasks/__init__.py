"""Celery app factory, configuration and task signatures: the producer's side.

``celery -A tasks worker -Q face`` finds ``app`` here; the worker's side (task
implementations, model loading, heartbeats, metrics) is ``workers.app``, which Celery
imports when a worker starts (``imports`` in ``tasks.config``).
"""

from tasks.app import app, make_celery
from tasks.signatures import TASK_NAMES, enqueue

__all__ = ["TASK_NAMES", "app", "enqueue", "make_celery"]
