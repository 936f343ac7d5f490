"""API-side metrics: request count and latency per route, jobs submitted, and the
``/metrics`` endpoint (merged over every gunicorn worker when ``PROMETHEUS_MULTIPROC_DIR``
is set, see ``monitoring.metrics``).

``init_app(app)`` is the one call ``api.create_app`` makes.  Every label taken from a
request is bucketed into a small fixed set, so no request can add series (an invented
method, a random path, an odd status would each add 17 lines to ``/metrics``):

- ``route``: the Flask URL rule (``/v1/jobs/<job_id>``), never the raw path; a request
  that matches no rule (404, or 405 for a method the rule does not take) is ``other``;
- ``method``: one of ``KNOWN_METHODS``, else ``other``;
- ``status``: the code itself when it is a registered HTTP status, else its class
  (``4xx``), so ``status=~"5.."`` still selects every server error.

Submitted jobs are counted on Celery's ``after_task_publish`` in the API process: every
way of creating a job (``/v1/jobs``, batches, DeepStack endpoints) ends in one publish,
so no handler needs a metrics line and a failed publish is never counted.

The metrics themselves are declared in ``monitoring.metrics``; this module only wires them
into Flask, so ``monitoring`` never imports ``api``.
"""

from __future__ import annotations

import logging
import time
from http import HTTPStatus
from typing import Any

from celery import signals
from flask import Blueprint, Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.routing import Rule

from monitoring.metrics import exposition_registry, metrics
from monitoring.record import record_submit
from monitoring.settings import metrics_enabled

log = logging.getLogger(f"visionq.{__name__}")

OTHER = "other"
UNMATCHED_ROUTE = OTHER
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
_KNOWN_STATUSES = frozenset(int(status) for status in HTTPStatus)

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    return Response(generate_latest(exposition_registry()), content_type=CONTENT_TYPE_LATEST)


def _before() -> None:
    g._visionq_started = time.perf_counter()


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else OTHER


def route_label(rule: Rule | None) -> str:
    return rule.rule if rule is not None else UNMATCHED_ROUTE


def status_label(status: int) -> str:
    if status in _KNOWN_STATUSES:
        return str(status)
    return f"{status // 100}xx" if 100 <= status <= 599 else OTHER


def _after(response: Response) -> Response:
    started = g.pop("_visionq_started", None)
    try:
        method, route = method_label(request.method), route_label(request.url_rule)
        m = metrics()
        m.http_requests.labels(method=method, route=route,
                               status=status_label(response.status_code)).inc()
        # An invented method never reaches a view (405): counted, but its latency would only
        # add a histogram's dozen lines for nothing (issue 30: at most 5 lines for 300).
        if started is not None and method != OTHER:
            m.http_latency.labels(method=method, route=route).observe(
                time.perf_counter() - started)
    except Exception:  # noqa: BLE001 - metrics never fail a request
        log.exception("request metrics failed")
    return response


def _on_publish(sender: str | None = None, **_: Any) -> None:
    """``sender`` is the task name (``visionq.face``); the job's task is its last part."""
    if sender and sender.startswith("visionq."):
        record_submit(sender.rpartition(".")[2])


def count_dead_letters(n: int) -> None:
    """Add ``n`` to this process's ``visionq_history_dead_letters_total`` (never raises):
    the API's history writers' ``on_dead_letter`` (``visionq.history.HistoryWriter``)."""
    try:
        if metrics_enabled():
            metrics().history_dead_letters.inc(n)
    except Exception:  # noqa: BLE001 - a metrics problem must not stop the history stream
        log.exception("could not count %d dead-lettered history rows", n)


def init_app(app: Flask) -> None:
    """Time every request, count published jobs and serve ``/metrics``; with
    ``VISIONQ_METRICS=0`` none of it (no per-request cost, ``/metrics`` is a 404)."""
    if not metrics_enabled():
        log.info("metrics off (VISIONQ_METRICS=0): no request hooks, no /metrics")
        return
    app.before_request(_before)
    app.after_request(_after)
    app.register_blueprint(bp)
    signals.after_task_publish.connect(_on_publish, weak=False,
                                       dispatch_uid="visionq-metrics-submitted")
    metrics()  # create the metrics (and the multiprocess directory) at start-up
