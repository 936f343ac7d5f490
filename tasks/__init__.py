"""Celery app and task signatures (``celery -A tasks worker -Q face``)."""

import monitoring.celery_hooks  # noqa: F401  (metrics via Celery signals)
import workers.signals  # noqa: F401,E402  (worker start-up: load models, heartbeats)
from tasks import inference  # noqa: F401  (registers the tasks)
from tasks.app import app

__all__ = ["app"]
