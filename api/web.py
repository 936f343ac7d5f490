"""The web page at ``/`` (plain HTML/JS in ``api/static``, no build step) and the small
``/v1/stats`` board it polls: per queue, the backlog, running jobs, totals, workers."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, send_from_directory

from api.services import services
from visionq.broker import workers_by_queue
from visionq.settings import QUEUES

bp = Blueprint("web", __name__)


@bp.get("/")
def index() -> Response:
    response = send_from_directory(current_app.static_folder or "static", "index.html")
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/v1/stats")
def stats() -> Response:
    svc = services()
    lengths = svc.queue_lengths(list(QUEUES))  # each on its queue's Redis (visionq.shards)
    counts = svc.jobs.counts()
    workers = workers_by_queue(svc.redis)
    queues = {}
    for queue, length in zip(QUEUES, lengths, strict=True):
        row = counts.get(queue, {})
        queues[queue] = {
            "length": int(length),
            "running": row.get("running", 0),
            "succeeded": row.get("succeeded", 0),
            "failed": row.get("failed", 0),
            "workers": len(workers.get(queue, [])),
            "max_backlog": svc.settings.max_backlog_for(queue),
        }
    return jsonify({"queues": queues, "flower_port": svc.settings.flower_port,
                    "auth": bool(svc.settings.api_key_list or svc.settings.admin_key_list)})
