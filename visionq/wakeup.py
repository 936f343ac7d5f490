"""One pub/sub listener per process that wakes the threads waiting for jobs to finish.

Finishing (or revoking) a job publishes on ``visionq:done:<id>`` (``visionq.jobs``).  A
long-poll used to open a pub/sub connection of its own, SUBSCRIBE, wait for the
confirmation, then read the record: two extra round trips and a connection per request.
Here one background thread holds a single ``PSUBSCRIBE visionq:done:*`` connection for
the whole process and sets the ``threading.Event`` of whoever waits for that job.

No wake-up is missed: a waiter registers its event *before* it reads the job record, and
registration only counts once the listener's subscription is confirmed (``ready``).  A
finish published before the read is seen by the read; one published after it reaches the
listener, which is already subscribed.  While the listener is down (Redis restarting),
``ready`` is false and waiters fall back to re-reading the record on a short period.

Sharded by queue (``visionq.shards``), jobs finish on several Redis servers: the listener
then holds one subscription (and thread) per server, and is ``ready`` only while all of
them are confirmed.  With one server it is exactly one subscription, as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis

from visionq.keys import DONE_CHANNEL_PREFIX

log = logging.getLogger(__name__)

RECONNECT_DELAY_S = (0.1, 0.5, 1.0, 2.0)
"""Back-off between reconnection attempts after the connection drops."""
READY_TIMEOUT_S = 2.0
"""How long a first waiter waits for the subscription before it falls back to polling."""


@dataclass
class _Subscription:
    """One server's ``PSUBSCRIBE``: its client, the thread holding it, whether confirmed."""

    client: redis.Redis
    ready: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    pid: int = 0


class DoneListener:
    """Wakes waiting threads when their job is announced finished."""

    def __init__(self, client: redis.Redis | Sequence[redis.Redis]) -> None:
        """``client``: the Redis jobs finish on, or one per shard (``visionq.shards``)."""
        clients = [client] if isinstance(client, redis.Redis) else list(client)
        self._subs = [_Subscription(each) for each in clients]
        self._lock = threading.Lock()
        self._waiters: dict[str, set[threading.Event]] = {}
        self._stopping = threading.Event()

    @property
    def ready(self) -> bool:
        """True while every subscription is confirmed: no announcement can be missed."""
        return all(sub.ready.is_set() for sub in self._subs)

    def register(self, job_id: str, event: threading.Event | None = None) -> threading.Event:
        """An event set when ``job_id`` is announced (or when the listener reconnects).

        Call before reading the job record; ``unregister`` when done waiting.  ``event``:
        use this one (a stream passes one event for all of its jobs)."""
        event = threading.Event() if event is None else event
        with self._lock:  # one step: the listener cannot stop between these two
            self._start_locked()
            self._waiters.setdefault(job_id, set()).add(event)
        return event

    def unregister(self, job_id: str, event: threading.Event) -> None:
        with self._lock:
            events = self._waiters.get(job_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._waiters[job_id]

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> bool:
        self._ensure_started()
        deadline = time.monotonic() + timeout_s
        return all(sub.ready.wait(max(0.0, deadline - time.monotonic()))
                   for sub in self._subs)

    def stop(self) -> None:
        self._stopping.set()

    def waiting(self) -> int:
        """Jobs with at least one waiting thread (for tests and metrics)."""
        with self._lock:
            return len(self._waiters)

    def _ensure_started(self) -> None:
        # A thread does not survive fork(): a forked child starts a listener of its own.
        with self._lock:
            self._start_locked()

    def _start_locked(self) -> None:
        for sub in self._subs:
            if sub.thread is None or not sub.thread.is_alive() or sub.pid != os.getpid():
                sub.ready.clear()
                sub.pid = os.getpid()
                sub.thread = threading.Thread(target=self._run, args=(sub,),
                                              name="visionq-done-listener", daemon=True)
                sub.thread.start()

    def _run(self, sub: _Subscription) -> None:
        failures = 0
        while not self._stopping.is_set():
            pubsub = sub.client.pubsub(ignore_subscribe_messages=False)
            try:
                pubsub.psubscribe(f"{DONE_CHANNEL_PREFIX}*")
                while not self._stopping.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message["type"] == "psubscribe":
                        sub.ready.set()
                        failures = 0
                        # Anyone registered while we were down may have missed a finish.
                        self._wake_all()
                    elif message["type"] == "pmessage":
                        self._wake(message["channel"])
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                sub.ready.clear()
                self._wake_all()  # waiters re-read the record instead of trusting us
                with self._lock:
                    if not self._waiters:
                        # Nobody waits: stop here; the next ``register`` starts a new one
                        # (under the lock, so a register racing this exit sees no thread).
                        sub.thread = None
                        log.info("job wake-up listener lost Redis (%s); idle, stopping", exc)
                        return
                delay = RECONNECT_DELAY_S[min(failures, len(RECONNECT_DELAY_S) - 1)]
                failures += 1
                log.log(logging.WARNING if failures == 1 else logging.DEBUG,
                        "job wake-up listener lost Redis (%s); reconnecting in %.1f s",
                        exc, delay)
                self._stopping.wait(delay)
            except Exception:  # noqa: BLE001 - never let the listener die silently
                sub.ready.clear()
                self._wake_all()
                log.exception("job wake-up listener failed; restarting")
                self._stopping.wait(1.0)
            finally:
                with contextlib.suppress(Exception):
                    pubsub.close()
        sub.ready.clear()

    def _wake(self, channel: bytes | str) -> None:
        name = channel.decode() if isinstance(channel, bytes) else channel
        job_id = name[len(DONE_CHANNEL_PREFIX):]
        with self._lock:
            events = list(self._waiters.get(job_id, ()))
        for event in events:
            event.set()

    def _wake_all(self) -> None:
        with self._lock:
            events = [event for group in self._waiters.values() for event in group]
        for event in events:
            event.set()
