"""Worker life cycle, hooked into Celery signals: load each consumed queue's model once
at start-up (a broken model stops the worker with a clear message, not at the first
job), reload in each prefork child when the model is not fork-safe, and heartbeats."""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

from celery import signals

from visionq.broker import mark_busy, mark_idle, record_service_time
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
    settings = get_settings()
    client = redis_client(settings.redis_url)
    heartbeat = Heartbeat(client, hostname, _state["queues"],
                          on_beat=lambda: _sweep_lost_messages(client, hostname))
    heartbeat.start()
    _state["heartbeat"] = heartbeat
    log.info("visionq worker %s ready for queues %s", hostname, ", ".join(_state["queues"]))


@signals.worker_shutdown.connect
def _stop_heartbeat(**_: Any) -> None:
    if _state["heartbeat"] is not None:
        _state["heartbeat"].stop()


# -- what the autoscaler reads: service times and which hosts are busy ------------------

_task_started: dict[str, float] = {}


def _instance_id() -> str:
    """The EC2 instance id (set by autoscale/user-data.sh) or this host's name."""
    return os.environ.get("VISIONQ_INSTANCE_ID") or socket.gethostname()


def _queue_of(task: Any) -> str | None:
    name = getattr(task, "name", "") or ""
    queue = name.rpartition(".")[2]
    return queue if queue in QUEUES else None


@signals.task_prerun.connect
def _mark_busy(task_id: str = "", task: Any = None, **_: Any) -> None:
    _task_started[task_id] = time.monotonic()
    try:
        mark_busy(redis_client(get_settings().redis_url), _instance_id(), task_id)
    except Exception as exc:  # noqa: BLE001 - scaling hints must never fail a job
        log.warning("could not mark %s busy: %s", task_id, exc)


@signals.task_postrun.connect
def _record_service_time(task_id: str = "", task: Any = None, **_: Any) -> None:
    started = _task_started.pop(task_id, None)
    queue = _queue_of(task)
    try:
        client = redis_client(get_settings().redis_url)
        mark_idle(client, _instance_id(), task_id)
        if started is not None and queue:
            record_service_time(client, queue, time.monotonic() - started)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not record service time of %s: %s", task_id, exc)


def _sweep_lost_messages(client: Any, hostname: str) -> None:
    from tasks.inference import enqueue
    from visionq.jobs import JobStore
    from workers.reaper import maybe_sweep

    settings = get_settings()
    maybe_sweep(client, JobStore(client, settings.result_ttl_s), enqueue,
                settings.visibility_timeout_s + settings.reaper_grace_s, hostname)
