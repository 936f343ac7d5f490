"""Local backend: worker processes on this machine, one pool per queue.

Scale-in sends SIGTERM, which for Celery is a warm shutdown: stop consuming, finish the
tasks in hand, exit. Never SIGKILL. A stopping process counts as *draining*, not as
capacity, until it exits and is reaped.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from autoscale.backends import Capacity

log = logging.getLogger(f"visionq.{__name__}")

#: ``{queue}`` and ``{index}`` are substituted in every argument (plain replacement, so
#: other braces, e.g. in ``python -c`` code, are left alone).
DEFAULT_COMMAND: tuple[str, ...] = (
    sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", "{queue}", "-c", "1",
    "-n", "local-{queue}-{index}@%h",
)


@dataclass
class Worker:
    queue: str
    index: int
    proc: subprocess.Popen[bytes]
    started: float
    draining: bool = False

    @property
    def id(self) -> str:
        return str(self.proc.pid)


def render(command: Sequence[str], queue: str, index: int) -> list[str]:
    return [a.replace("{queue}", queue).replace("{index}", str(index)) for a in command]


class LocalBackend:
    def __init__(
        self,
        queues: Iterable[str],
        command: Sequence[str] = DEFAULT_COMMAND,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> None:
        self.queues = list(queues)
        self.command = list(command)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.workers: list[Worker] = []
        self._protected: set[str] = set()

    def _reap(self) -> None:
        for w in list(self.workers):
            code = w.proc.poll()
            if code is not None:
                log.info("worker %s (%s #%d) exited with %s%s", w.id, w.queue, w.index, code,
                         "" if w.draining else " unexpectedly")
                self.workers.remove(w)

    def _pool(self, queue: str, draining: bool = False) -> list[Worker]:
        return [w for w in self.workers if w.queue == queue and w.draining == draining]

    def current(self) -> dict[str, Capacity]:
        self._reap()
        return {
            q: Capacity(
                current=len(self._pool(q)),
                draining=len(self._pool(q, draining=True)),
                ids=tuple(w.id for w in self._pool(q)),
            )
            for q in self.queues
        }

    def _start(self, queue: str) -> Worker:
        used = {w.index for w in self.workers if w.queue == queue}
        index = next(i for i in range(len(used) + 1) if i not in used)
        argv = render(self.command, queue, index)
        env = {**os.environ, **self.env} if self.env is not None else None
        # Own session: a Ctrl-C meant for the autoscaler must not reach the workers.
        # The operator's own worker command (--command), as an argv list: no shell.
        proc = subprocess.Popen(argv, env=env, cwd=self.cwd,  # noqa: S603
                                start_new_session=True)
        worker = Worker(queue, index, proc, time.monotonic())
        self.workers.append(worker)
        log.info("started worker %s (%s #%d): %s", worker.id, queue, index, " ".join(argv))
        return worker

    def _stop(self, worker: Worker) -> None:
        worker.draining = True
        try:
            worker.proc.send_signal(signal.SIGTERM)  # warm shutdown; never SIGKILL
        except ProcessLookupError:
            return
        log.info("sent SIGTERM to worker %s (%s #%d)", worker.id, worker.queue, worker.index)

    def apply(self, desired: Mapping[str, int]) -> dict[str, int]:
        self._reap()
        for queue, n in desired.items():
            n = max(0, n)
            pool = self._pool(queue)
            for _ in range(n - len(pool)):
                self._start(queue)
            if n < len(pool):
                # idle before busy, then newest first
                order = sorted(pool, key=lambda w: (w.id in self._protected, -w.started))
                for w in order[: len(pool) - n]:
                    self._stop(w)
        return {q: max(0, n) for q, n in desired.items()}

    def protect(self, ids: Iterable[str]) -> None:
        """Busy workers (pids) are stopped last; SIGTERM lets them finish anyway."""
        self._protected = set(ids)

    def close(self, timeout: float = 60.0) -> list[int]:
        """Warm-stop every worker and wait up to ``timeout``; pids still running are returned
        (and left running: no SIGKILL)."""
        for w in self.workers:
            if not w.draining:
                self._stop(w)
        deadline = time.monotonic() + timeout
        while self.workers and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        left = [w.proc.pid for w in self.workers]
        if left:
            log.warning("workers still finishing after %.0fs: %s", timeout, left)
        return left
