"""Worker heartbeats in Redis: which workers are online for which queue.

Each worker's main process refreshes ``visionq:worker:<hostname>`` (JSON, short TTL) so
the API's ``/readyz``, the autoscaler and the metrics see live workers per queue in one
cheap read, without a broadcast ``inspect`` round trip.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable

import redis

log = logging.getLogger(__name__)

WORKER_KEY_PREFIX = "visionq:worker:"
HEARTBEAT_INTERVAL_S = 5.0
HEARTBEAT_TTL_S = 15


def beat(client: redis.Redis, hostname: str, queues: list[str], started_at: float) -> None:
    payload = {"hostname": hostname, "queues": queues, "pid": os.getpid(),
               "started_at": started_at, "seen_at": time.time()}
    client.set(f"{WORKER_KEY_PREFIX}{hostname}", json.dumps(payload), ex=HEARTBEAT_TTL_S)


def workers_by_queue(client: redis.Redis) -> dict[str, list[str]]:
    """Online workers for each queue, from their heartbeats."""
    found: dict[str, list[str]] = {}
    for key in client.scan_iter(match=f"{WORKER_KEY_PREFIX}*", count=200):
        raw = client.get(key)
        if raw is None:
            continue
        info = json.loads(raw)
        for queue in info.get("queues", []):
            found.setdefault(queue, []).append(info["hostname"])
    return found


class Heartbeat(threading.Thread):
    def __init__(self, client: redis.Redis, hostname: str, queues: list[str],
                 on_beat: Callable[[], object] | None = None) -> None:
        super().__init__(name="visionq-heartbeat", daemon=True)
        self._client, self._hostname, self._queues = client, hostname, queues
        self._on_beat = on_beat
        self._stop_event = threading.Event()
        self._started_at = time.time()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                beat(self._client, self._hostname, self._queues, self._started_at)
                if self._on_beat is not None:
                    self._on_beat()
            except redis.RedisError as exc:
                log.warning("heartbeat failed (%s); retrying", exc)
            except Exception:  # noqa: BLE001 - the heartbeat must outlive any sweep bug
                log.exception("heartbeat task failed")
            self._stop_event.wait(HEARTBEAT_INTERVAL_S)

    def stop(self) -> None:
        self._stop_event.set()
        with contextlib.suppress(redis.RedisError):
            self._client.delete(f"{WORKER_KEY_PREFIX}{self._hostname}")
