"""``/healthz`` (the process is up) and ``/readyz`` (Redis reachable, a worker per queue)."""

from __future__ import annotations

import redis
from flask import Blueprint, Response, jsonify

from api.services import services
from visionq.broker import workers_by_queue
from visionq.settings import QUEUES

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    svc = services()
    detail: dict[str, object] = {}
    try:
        svc.redis.ping()
        detail["redis"] = "ok"
        workers = workers_by_queue(svc.redis)
    except redis.RedisError as exc:
        detail["redis"] = f"unreachable: {exc}"
        workers = {}
    detail["workers"] = {queue: len(workers.get(queue, [])) for queue in QUEUES}
    missing = [queue for queue in QUEUES if not workers.get(queue)]
    ready = detail["redis"] == "ok" and not missing
    if missing and detail["redis"] == "ok":
        detail["missing_workers"] = missing
    return jsonify({"status": "ready" if ready else "not_ready", **detail}), 200 if ready else 503
