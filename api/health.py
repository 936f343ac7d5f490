"""``/healthz`` (the process is up) and ``/readyz`` (Redis reachable, a worker per queue,
no critical role given up by ``visionq up``'s supervisor).

Sharded by queue (``visionq.shards``), ``shards`` lists every Redis with its queues and
whether it answers; ``redis`` is ``ok`` only when all of them do.

``/readyz?scope=api`` is the API's own readiness (a Kubernetes readinessProbe): ready while
Redis answers, because the API can then accept and queue jobs; the workers and given-up
roles are still reported.  Taking every API pod out of its Service because a queue has no
worker would turn queued jobs into refused connections.
"""

from __future__ import annotations

import json

import redis
from flask import Blueprint, Response, jsonify, request

from api.services import services
from visionq.broker import workers_by_queue
from visionq.keys import SUPERVISOR_GAVE_UP_KEY
from visionq.settings import QUEUES
from visionq.shards import ShardMap, redact

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    svc = services()
    detail: dict[str, object] = {}
    gave_up: dict[str, bool] = {}
    try:
        svc.redis.ping()
        detail["redis"] = "ok"
        workers = workers_by_queue(svc.redis)
        gave_up = given_up_roles(svc.redis)
    except redis.RedisError as exc:
        detail["redis"] = f"unreachable: {exc}"
        workers = {}
    if svc.shards.sharded:
        detail["shards"] = shard_health(svc.shards)
        if detail["redis"] == "ok" and any(v["redis"] != "ok" for v in detail["shards"]):
            detail["redis"] = "a shard is unreachable"
    detail["workers"] = {queue: len(workers.get(queue, [])) for queue in QUEUES}
    missing = [queue for queue in QUEUES if not workers.get(queue)]
    ready = detail["redis"] == "ok"
    if request.args.get("scope") != "api":
        ready = ready and not missing and not any(gave_up.values())
    if missing and detail["redis"] == "ok":
        detail["missing_workers"] = missing
    if gave_up:
        detail["gave_up"] = sorted(gave_up)
    return jsonify({"status": "ready" if ready else "not_ready", **detail}), 200 if ready else 503


def shard_health(shards: ShardMap) -> list[dict[str, object]]:
    """Each Redis (password redacted), its queues, and whether it answers a PING: a
    sharded deployment is ready only when every queue's Redis is."""
    report: list[dict[str, object]] = []
    for url, client in shards.clients().items():
        try:
            client.ping()
            status = "ok"
        except redis.RedisError as exc:
            status = f"unreachable: {exc}"
        report.append({"url": redact(url), "queues": shards.queues_on(url), "redis": status})
    return report


def given_up_roles(conn: redis.Redis) -> dict[str, bool]:
    """Roles ``visionq up`` stopped restarting -> whether readiness depends on them."""
    found = {}
    for role, raw in conn.hgetall(SUPERVISOR_GAVE_UP_KEY).items():
        try:
            critical = bool(json.loads(raw).get("critical", True))
        except (ValueError, AttributeError):
            critical = True
        found[role.decode() if isinstance(role, bytes) else str(role)] = critical
    return found
