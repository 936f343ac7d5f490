"""``/metrics``: the API's Prometheus metrics, merged over every gunicorn worker when
``PROMETHEUS_MULTIPROC_DIR`` is set (see ``monitoring.metrics``)."""

from __future__ import annotations

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from monitoring.metrics import exposition_registry

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    return Response(generate_latest(exposition_registry()), content_type=CONTENT_TYPE_LATEST)
