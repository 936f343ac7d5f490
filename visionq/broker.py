"""The broker's hints as visionq keeps them: worker heartbeats, service times, busy marks.

kombu's own Redis layout (queues, priorities, delivered messages, bindings) is in
``visionq.kombu_redis``, the one module that knows it.

The ``visionq:autoscale:*`` and ``visionq:worker:*`` keys below are ours (``visionq.keys``):
workers write them (``record_service_time``, ``mark_busy``, ``beat``); the API's
``/readyz``, the metrics collector and the autoscaler read them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from typing import Any

from redis import Redis

from visionq.keys import BUSY_KEY, DONE_KEY, SERVICE_KEY, WORKER_KEY_PREFIX

#: How many service-time samples per queue we keep (enough for a stable mean, small
#: enough that reading them all costs microseconds).
SERVICE_SAMPLES = 200
#: Samples older than this are ignored: a model change or a new instance type should
#: show within minutes.
SERVICE_MAX_AGE_SECONDS = 900.0
#: Fallback expiry of a busy mark if a worker dies before clearing it.
DEFAULT_BUSY_TTL_SECONDS = 3600.0


def as_text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# -- service times: written by workers, read by the autoscaler -----------------------


def record_service_time(
    conn: Redis, queue: str, seconds: float, now: float | None = None
) -> None:
    """Record that a task from ``queue`` took ``seconds``; call from ``task_postrun``.

    Keeps the last ``SERVICE_SAMPLES`` samples in the list
    ``visionq:autoscale:service:<queue>`` (entries ``"<unix time>:<seconds>"``, newest
    first) and counts completions in ``visionq:autoscale:done:<queue>`` (the autoscaler
    derives the arrival rate from it). One pipelined round trip.
    """
    pipe = conn.pipeline(transaction=False)
    _add_service_time(pipe, queue, seconds, time.time() if now is None else now)
    pipe.execute()


def _add_service_time(pipe: Any, queue: str, seconds: float, now: float) -> None:
    for command in service_time_commands(queue, seconds, now):
        pipe.execute_command(*command)


Command = tuple[str, ...]
"""A Redis command as its words, to be pipelined with another round trip (the worker's job
scripts carry the scaling hints this way: ``workers.runner``)."""


def service_time_commands(queue: str, seconds: float, now: float) -> list[Command]:
    """What ``record_service_time`` sends."""
    key = SERVICE_KEY.format(queue=queue)
    return [("LPUSH", key, f"{now:.3f}:{float(seconds):.6f}"),
            ("LTRIM", key, "0", str(SERVICE_SAMPLES - 1)),
            ("INCR", DONE_KEY.format(queue=queue))]


def mean_recent(entries: Iterable[bytes | str], now: float) -> float | None:
    values = []
    for entry in entries:
        try:
            stamp, seconds = as_text(entry).split(":", 1)
            if now - float(stamp) <= SERVICE_MAX_AGE_SECONDS:
                values.append(float(seconds))
        except ValueError:
            continue
    return sum(values) / len(values) if values else None


def recent_service_time(conn: Redis, queue: str, now: float | None = None) -> float | None:
    """Mean seconds per task over the recent samples of ``queue``, ``None`` if none."""
    now = time.time() if now is None else now
    return mean_recent(conn.lrange(SERVICE_KEY.format(queue=queue), 0, SERVICE_SAMPLES - 1), now)


def completed(conn: Redis, queue: str) -> int:
    """Tasks of ``queue`` completed since the counter was created (monotonic)."""
    return int(conn.get(DONE_KEY.format(queue=queue)) or 0)


# -- busy marks: which worker hosts (EC2 instance ids) hold a running task -----------


def mark_busy(
    conn: Redis, worker: str, task_id: str, ttl: float = DEFAULT_BUSY_TTL_SECONDS,
    now: float | None = None,
) -> None:
    """Mark ``worker`` (on EC2: its instance id) busy with ``task_id``; ``task_prerun``."""
    conn.execute_command(*busy_command(worker, task_id, ttl, now))


def busy_command(worker: str, task_id: str, ttl: float = DEFAULT_BUSY_TTL_SECONDS,
                 now: float | None = None) -> Command:
    """What ``mark_busy`` sends."""
    now = time.time() if now is None else now
    return ("ZADD", BUSY_KEY, repr(now + ttl), f"{worker}/{task_id}")


def mark_idle(conn: Redis, worker: str, task_id: str) -> None:
    """Clear the mark of ``mark_busy``; call from ``task_postrun``."""
    conn.zrem(BUSY_KEY, f"{worker}/{task_id}")


def mark_done(conn: Redis, worker: str, task_id: str, queue: str, seconds: float | None,
              now: float | None = None) -> None:
    """``mark_idle`` and (with ``seconds``) ``record_service_time`` in one round trip:
    what a worker does after every task."""
    send(conn, done_commands(worker, task_id, queue, seconds, now))


def send(conn: Redis, commands: Iterable[Command]) -> None:
    """``commands`` pipelined: one round trip."""
    pipe = conn.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    pipe.execute()


def done_commands(worker: str, task_id: str, queue: str, seconds: float | None,
                  now: float | None = None) -> list[Command]:
    """What ``mark_done`` sends."""
    commands: list[Command] = [("ZREM", BUSY_KEY, f"{worker}/{task_id}")]
    if seconds is not None:
        commands += service_time_commands(queue, seconds, time.time() if now is None else now)
    return commands


def busy_workers(conn: Redis, now: float | None = None) -> frozenset[str]:
    """Workers with at least one unexpired busy mark (expired marks are pruned)."""
    now = time.time() if now is None else now
    pipe = conn.pipeline(transaction=False)
    pipe.zremrangebyscore(BUSY_KEY, "-inf", f"({now}")
    pipe.zrange(BUSY_KEY, 0, -1)
    members = pipe.execute()[1]
    return frozenset(as_text(m).split("/", 1)[0] for m in members)


# -- worker heartbeats: which workers are online for which queue ----------------------

HEARTBEAT_INTERVAL_S = 5.0
HEARTBEAT_TTL_S = 15


def beat(conn: Redis, hostname: str, queues: list[str], started_at: float) -> None:
    """Refresh ``visionq:worker:<hostname>`` (JSON, short TTL) for a live worker."""
    payload = {"hostname": hostname, "queues": queues, "pid": os.getpid(),
               "started_at": started_at, "seen_at": time.time()}
    conn.set(f"{WORKER_KEY_PREFIX}{hostname}", json.dumps(payload), ex=HEARTBEAT_TTL_S)


def forget_worker(conn: Redis, hostname: str) -> None:
    """Drop a worker's heartbeat at a clean shutdown."""
    conn.delete(f"{WORKER_KEY_PREFIX}{hostname}")


def workers_by_queue(conn: Redis) -> dict[str, list[str]]:
    """Online workers for each queue, from their heartbeats."""
    found: dict[str, list[str]] = {}
    for key in conn.scan_iter(match=f"{WORKER_KEY_PREFIX}*", count=200):
        raw = conn.get(key)
        if raw is None:
            continue
        info = json.loads(raw)
        for queue in info.get("queues", []):
            found.setdefault(queue, []).append(info["hostname"])
    return found
