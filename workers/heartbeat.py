"""The worker's heartbeat thread: keeps ``visionq:worker:<hostname>`` fresh.

What is written and how it is read (``workers_by_queue``, for the API's ``/readyz``, the
autoscaler and the metrics) lives in ``visionq.broker``; this is only the worker's loop.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

import redis

from visionq.broker import HEARTBEAT_INTERVAL_S, beat, forget_worker

log = logging.getLogger(f"visionq.{__name__}")


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
            forget_worker(self._client, self._hostname)
