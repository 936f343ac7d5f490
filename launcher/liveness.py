"""Is a child of ``visionq up`` still answering?  A hung process (stopped, deadlocked,
swapping) does not exit, so the supervisor's ``poll()`` never sees it; this does.

Each watched role has a ``Probe`` (Redis: ``PING``; the API: ``GET /healthz``; a worker: a
new heartbeat from its main process in Redis, ``workers.heartbeat``) run once a second by a
thread of its own.  ``Liveness.hung`` tells the supervisor when the role's current process has
not answered for ``timeout_s`` (or, before its first answer, for ``STARTUP_GRACE_S``: a
worker loading its model); the supervisor then kills it and restarts it like one that
crashed.  The probes only read: they start no process (``PR_SET_PDEATHSIG`` is tied to the
thread that forks, see ``launcher.children``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
import requests

from visionq.broker import HEARTBEAT_INTERVAL_S, WORKER_KEY_PREFIX

PROBE_INTERVAL_S = 1.0
STARTUP_GRACE_S = 120.0
"""Before its first answer a child may take this long (or ``timeout_s`` if longer)."""


@dataclass(frozen=True)
class Probe:
    what: str
    """For the log: ``GET /healthz``, ``PING``, ``heartbeat``."""
    check: Callable[[int], bool | None]
    """Given the child's PID: True it answered, False it did not, None cannot tell (the
    Redis a heartbeat is read from is down): not held against it."""
    min_timeout_s: float = 0.0
    """A floor under ``timeout_s`` (a heartbeat comes every 5 s)."""


def probe_timeout(timeout_s: float) -> float:
    """Each check's own timeout: a third of the liveness timeout, within 1-5 s."""
    return min(5.0, max(1.0, timeout_s / 3))


def http_probe(url: str, timeout_s: float) -> Probe:
    def check(_pid: int) -> bool:
        try:
            return requests.get(url, timeout=timeout_s).status_code == 200
        except requests.RequestException:
            return False
    return Probe("GET /healthz", check)


def redis_probe(url: str, timeout_s: float) -> Probe:
    client = redis.Redis.from_url(url, socket_timeout=timeout_s,
                                  socket_connect_timeout=timeout_s)

    def check(_pid: int) -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
    return Probe("PING", check)


def heartbeat_probe(url: str, queue: str, timeout_s: float) -> Probe:
    """A new heartbeat (``seen_at`` changed) from the worker whose main process is the PID."""
    client = redis.Redis.from_url(url, socket_timeout=timeout_s,
                                  socket_connect_timeout=timeout_s)
    last_seen: dict[int, float] = {}

    def check(pid: int) -> bool | None:
        try:
            for key in client.scan_iter(match=f"{WORKER_KEY_PREFIX}*", count=200):
                raw = client.get(key)
                info = json.loads(raw) if raw else {}
                if info.get("pid") == pid and queue in info.get("queues", []):
                    seen = float(info.get("seen_at", 0))
                    fresh = last_seen.get(pid) != seen
                    last_seen.clear()
                    last_seen[pid] = seen
                    return fresh
        except redis.RedisError:
            return None
        except (ValueError, TypeError, AttributeError):
            return False
        return False
    return Probe("heartbeat", check, min_timeout_s=2 * HEARTBEAT_INTERVAL_S)


@dataclass
class _Watched:
    pid: int
    started_at: float
    last_ok: float | None = None


class Liveness:
    def __init__(self, probes: dict[str, Probe], timeout_s: float,
                 clock: Callable[[], float] = time.monotonic,
                 startup_grace_s: float = STARTUP_GRACE_S) -> None:
        """``timeout_s`` 0: off (``hung`` is always None, no thread runs)."""
        self.probes, self.timeout_s, self.clock = probes, timeout_s, clock
        self.startup_grace_s = startup_grace_s
        self._watched: dict[str, _Watched] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def started(self, role: str, pid: int) -> None:
        """``role``'s new process is ``pid``: watch it (from now)."""
        if self.timeout_s <= 0 or role not in self.probes:
            return
        with self._lock:
            self._watched[role] = _Watched(pid, self.clock())
        if role not in self._threads:
            thread = threading.Thread(target=self._probe_loop, args=(role,),
                                      name=f"liveness-{role}", daemon=True)
            self._threads[role] = thread
            thread.start()

    def timeout_for(self, role: str) -> float:
        return max(self.timeout_s, self.probes[role].min_timeout_s)

    def hung(self, role: str, pid: int) -> str | None:
        """Why ``role``'s process ``pid`` counts as hung, or None."""
        with self._lock:
            watched = self._watched.get(role)
            if self.timeout_s <= 0 or watched is None or watched.pid != pid:
                return None
            now, timeout = self.clock(), self.timeout_for(role)
            what = self.probes[role].what
            if watched.last_ok is None:
                allowed = max(timeout, self.startup_grace_s)
                if now - watched.started_at > allowed:
                    return f"no answer to its liveness check ({what}) within {allowed:g} s " \
                           "of its start"
                return None
            if now - watched.last_ok > timeout:
                return f"no answer to its liveness check ({what}) for {timeout:g} s"
            return None

    def stop(self) -> None:
        self._stopping.set()

    def _probe_loop(self, role: str) -> None:
        probe = self.probes[role]
        while not self._stopping.wait(PROBE_INTERVAL_S):
            with self._lock:
                watched = self._watched.get(role)
                pid = watched.pid if watched else None
            if pid is None:
                continue
            answered = probe.check(pid)
            if answered is not False:
                with self._lock:
                    watched = self._watched.get(role)
                    if watched is not None and watched.pid == pid:
                        watched.last_ok = self.clock()
