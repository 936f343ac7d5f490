"""Celery app and task signatures (``celery -A tasks worker -Q face``)."""

from tasks.app import app
from tasks import inference  # noqa: F401  (registers the tasks)
import workers.signals  # noqa: F401,E402  (worker start-up: load models, heartbeats)

__all__ = ["app"]
