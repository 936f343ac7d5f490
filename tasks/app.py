"""The Celery application factory.

``make_celery(settings)`` builds an app from ``tasks.config``; the API calls it from
``create_app`` (Flask's ``celery_init_app`` pattern), one app per Flask app.  The
module-level ``app`` is the one ``celery -A tasks worker -Q face`` finds; it is built from
the environment's settings.  Nothing here imports worker code: the worker side
(``workers.app``) is listed in Celery's ``imports`` setting, which only a starting worker
(and Flower) imports.
"""

from __future__ import annotations

from celery import Celery

from tasks.config import celery_config
from visionq.settings import Settings, get_settings


def make_celery(settings: Settings) -> Celery:
    """A Celery app configured for ``settings`` (broker, limits, queues, JSON only)."""
    celery = Celery("visionq")
    celery.config_from_object(celery_config(settings))
    return celery


app = make_celery(get_settings())
