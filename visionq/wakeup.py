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
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading

import redis

from visionq.keys import DONE_CHANNEL_PREFIX

log = logging.getLogger(__name__)

RECONNECT_DELAY_S = (0.1, 0.5, 1.0, 2.0)
"""Back-off between reconnection attempts after the connection drops."""
READY_TIMEOUT_S = 2.0
"""How long a first waiter waits for the subscription before it falls back to polling."""


class DoneListener:
    """Wakes waiting threads when their job is announced finished."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._waiters: dict[str, set[threading.Event]] = {}
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._pid = 0

    @property
    def ready(self) -> bool:
        """True while the subscription is confirmed: no announcement can be missed."""
        return self._ready.is_set()

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
        return self._ready.wait(timeout_s)

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
        if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
            self._ready.clear()
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="visionq-done-listener",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            pubsub = self._client.pubsub(ignore_subscribe_messages=False)
            try:
                pubsub.psubscribe(f"{DONE_CHANNEL_PREFIX}*")
                while not self._stopping.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message["type"] == "psubscribe":
                        self._ready.set()
                        failures = 0
                        # Anyone registered while we were down may have missed a finish.
                        self._wake_all()
                    elif message["type"] == "pmessage":
                        self._wake(message["channel"])
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                self._ready.clear()
                self._wake_all()  # waiters re-read the record instead of trusting us
                with self._lock:
                    if not self._waiters:
                        # Nobody waits: stop here; the next ``register`` starts a new one
                        # (under the lock, so a register racing this exit sees no thread).
                        self._thread = None
                        log.info("job wake-up listener lost Redis (%s); idle, stopping", exc)
                        return
                delay = RECONNECT_DELAY_S[min(failures, len(RECONNECT_DELAY_S) - 1)]
                failures += 1
                log.log(logging.WARNING if failures == 1 else logging.DEBUG,
                        "job wake-up listener lost Redis (%s); reconnecting in %.1f s",
                        exc, delay)
                self._stopping.wait(delay)
            except Exception:  # noqa: BLE001 - never let the listener die silently
                self._ready.clear()
                self._wake_all()
                log.exception("job wake-up listener failed; restarting")
                self._stopping.wait(1.0)
            finally:
                with contextlib.suppress(Exception):
                    pubsub.close()
        self._ready.clear()

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
