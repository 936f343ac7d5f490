"""The HTTP API: ``api.create_app(overrides)`` is the app factory (gunicorn
``'api:create_app()'``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask

from api.backup import bp as backup_bp
from api.callbacks import bp as callbacks_bp
from api.custom import bp as custom_bp
from api.deepstack import bp as deepstack_bp
from api.docs import bp as docs_bp
from api.errors import register_error_handlers
from api.health import bp as health_bp
from api.jobs import bp as jobs_bp
from api.metrics import count_dead_letters
from api.metrics import init_app as init_monitoring
from api.security import init_security
from api.services import EXTENSION_KEY, build_services
from api.stream import init_stream
from api.web import bp as web_bp
from tasks import make_celery
from visionq import kombu_redis
from visionq.history import HistoryWriter
from visionq.settings import Settings

MULTIPART_OVERHEAD_BYTES = 1024 * 1024
HISTORY_WRITER_KEY = "visionq_history_writer"
SHARD_HISTORY_WRITERS_KEY = "visionq_shard_history_writers"


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    """Settings come from defaults, then ``VISIONQ_*`` environment variables, then
    ``overrides`` (field names of ``visionq.settings.Settings``)."""
    settings = Settings(**dict(overrides or {}))
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_bytes * 4 // 3 + MULTIPART_OVERHEAD_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]
    celery = make_celery(settings)  # this app's producer, on this app's Redis
    # kombu's Redis layout is written by hand (visionq.kombu_redis): refuse an unverified
    # kombu/Celery or a key prefix before anything is queued.
    kombu_redis.check_installed(celery.conf.broker_transport_options)
    app.extensions["celery"] = celery
    svc = app.extensions[EXTENSION_KEY] = build_services(settings, celery)
    if settings.history_writer:  # drains finished jobs into the history (visionq.history)
        app.extensions[HISTORY_WRITER_KEY] = HistoryWriter(
            svc.redis, svc.history, max_age_s=settings.history_days * 86400 or None,
            max_rows=settings.history_max_rows or None,
            on_dead_letter=count_dead_letters).start()
        # Sharded by queue, jobs finish on their queue's Redis: one more writer per shard
        # (retention is applied once, by the main Redis's writer above).
        app.extensions[SHARD_HISTORY_WRITERS_KEY] = [
            HistoryWriter(store.client, svc.history, on_dead_letter=count_dead_letters).start()
            for store in svc.jobs.stores[1:]]
    register_error_handlers(app)
    init_monitoring(app)  # /metrics, request timings

    init_security(app, settings)
    for blueprint in (health_bp, jobs_bp, deepstack_bp, custom_bp, backup_bp, docs_bp, web_bp,
                      callbacks_bp):
        app.register_blueprint(blueprint)
    init_stream(app)  # /v1/stream (WebSocket), ahead of the request hooks
    logging.getLogger("visionq").setLevel(logging.INFO)
    return app
