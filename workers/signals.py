"""Worker life cycle, hooked into Celery signals: load each consumed queue's model once
at start-up (a broken model stops the worker with a clear message, not at the first
job), reload in each prefork child when the model is not fork-safe, and heartbeats."""

from __future__ import annotations

import logging
from typing import Any

from celery import signals

from visionq.redis_conn import redis_client
from visionq.settings import QUEUES, get_settings
from workers import runtime
from workers.heartbeat import Heartbeat

log = logging.getLogger("visionq.worker")

_state: dict[str, Any] = {"queues": [], "heartbeat": None}


def consumed_queues(worker: Any) -> list[str]:
    selected = worker.app.amqp.queues.consume_from
    names = list(selected) if selected else list(QUEUES)
    return [name for name in names if name in QUEUES]


@signals.worker_init.connect
def _load_models(sender: Any = None, **_: Any) -> None:
    queues = consumed_queues(sender)
    _state["queues"] = queues
    for queue in queues:
        try:
            model = runtime.load_model(queue)
        except Exception as exc:
            message = (f"visionq: cannot start a worker for queue {queue!r}: model "
                       f"{get_settings().model_for(queue)!r} failed to load: {exc}")
            log.critical(message)
            raise SystemExit(message) from exc
        if not getattr(model, "fork_safe", True):
            runtime.forget(queue)  # each child loads its own copy after the fork


@signals.worker_process_init.connect
def _load_in_child(**_: Any) -> None:
    for queue in _state["queues"]:
        if queue not in runtime.loaded():
            runtime.load_model(queue)


@signals.worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    hostname = getattr(sender, "hostname", "worker")
    heartbeat = Heartbeat(redis_client(get_settings().redis_url), hostname, _state["queues"])
    heartbeat.start()
    _state["heartbeat"] = heartbeat
    log.info("visionq worker %s ready for queues %s", hostname, ", ".join(_state["queues"]))


@signals.worker_shutdown.connect
def _stop_heartbeat(**_: Any) -> None:
    if _state["heartbeat"] is not None:
        _state["heartbeat"].stop()
