"""What a soak starts, kills and checks (``bench soak``, ``bench watch-soak``): named roles,
each in a process group of its own with a log per generation, the timeline of what was done
to them, the jobs a worker was caught running, and job runs counted from the workers' logs
(a job that ran to the end twice is a duplicate, whatever its record says)."""

from __future__ import annotations

import collections
import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench.harness.common import REPO, say, stop_process
from bench.harness.procstat import children
from visionq.keys import JOB_KEY_PREFIX

DONE_LINE = re.compile(r"job ([0-9a-f]{32}) \((\w+)\) (succeeded|failed|duplicate) in")
"""A worker's line at the end of a run; ``duplicate`` is a delivery of a finished job."""
IGNORED_LINE = re.compile(r"job ([0-9a-f]{32}): already finished, duplicate delivery ignored")
SOAK_LIMITS = {"VISIONQ_SOFT_TIME_LIMIT_S": "20", "VISIONQ_HARD_TIME_LIMIT_S": "25",
               "VISIONQ_VISIBILITY_TIMEOUT_S": "30"}
"""Jobs take well under a second in a soak: a 30 s broker visibility timeout (above the 25 s
hard limit, as the settings require) brings back the jobs a killed worker held soon."""


@dataclass
class Event:
    """One entry of a run's timeline: ``t`` seconds after the start, what was done."""

    t: float
    what: str
    detail: dict[str, Any] = field(default_factory=dict)


class Processes:
    """``spawn(name, argv)`` starts role ``name`` (again: a new generation) in a session of
    its own, its output in ``<logs>/<name>.<generation>.log``; ``stop_all()`` stops every
    generation and kills what any of them left in its process group."""

    def __init__(self, logs: Path, env: Mapping[str, str]) -> None:
        self.logs = logs
        self.env = dict(env)
        self.procs: dict[str, subprocess.Popen] = {}
        self.stopped: list[subprocess.Popen] = []
        self.generation: collections.Counter = collections.Counter()
        self.events: list[Event] = []
        self.t0 = time.time()

    def log(self, name: str) -> Path:
        """The current generation's log of role ``name``."""
        return self.logs / f"{name}.{self.generation[name]}.log"

    def spawn(self, name: str, command: Sequence[str]) -> subprocess.Popen:
        self.generation[name] += 1
        with open(self.log(name), "ab") as log:
            process = subprocess.Popen(list(command), env=self.env, stdout=log,
                                       stderr=subprocess.STDOUT, cwd=REPO,
                                       start_new_session=True)
        if name in self.procs:
            self.stopped.append(self.procs[name])
        self.procs[name] = process
        return process

    def note(self, what: str, **detail: Any) -> Event:
        """Add ``what`` to the timeline (and say it)."""
        event = Event(time.time() - self.t0, what, detail)
        self.events.append(event)
        say(f"{what} {detail if detail else ''}".rstrip())
        return event

    def check_alive(self) -> None:
        for name, process in self.procs.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited ({process.returncode}); see {self.log(name)}")

    def kill_main(self, name: str) -> tuple[int, list[int]]:
        """SIGKILL role ``name``'s main process only, as a lost node would lose it, and
        reap it: its pid and its children (now orphans, left running)."""
        process = self.procs[name]
        orphans = children(process.pid)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        return process.pid, orphans

    def stop_all(self, order: Sequence[str] = (), sig: int = signal.SIGTERM,
                 timeout_s: float = 20) -> None:
        """Stop the roles (``order`` first, then the rest, newest first) with ``sig``, SIGKILL
        after ``timeout_s``; before that, kill what exited ones left in their groups."""
        for process in self.stopped + list(self.procs.values()):
            if process.poll() is not None:
                kill_group(process.pid)
        for process in self.stopped:
            stop_process(process, timeout_s=10)
        rest = [name for name in reversed(self.procs) if name not in order]
        for name in [*order, *rest]:
            stop_process(self.procs.get(name), sig, timeout_s)


def kill_group(pgid: int) -> None:
    """SIGKILL process group ``pgid`` if anything is left in it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def job_fields(client: redis.Redis, ids: Sequence[str],
               fields: Sequence[str]) -> list[list[bytes | None]]:
    """``fields`` of each job's record, in one pipeline."""
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hmget(f"{JOB_KEY_PREFIX}{job_id}", *fields)
    return pipe.execute()


def catch_running(client: redis.Redis, candidates: Callable[[], Sequence[str]],
                  timeout_s: float, hostname: str = "",
                  refresh_s: float = 0.0) -> tuple[str | None, float]:
    """Wait (up to ``timeout_s``) until a worker (whose name contains ``hostname``) runs one
    of the jobs ``candidates()`` names (asked again every ``refresh_s``), so that a kill
    interrupts one: its id (``None`` if none was caught) and the seconds waited."""
    started = time.monotonic()
    ids: Sequence[str] = []
    refresh_at = 0.0
    while (waited := time.monotonic() - started) < timeout_s:
        if waited >= refresh_at:
            ids = candidates()
            refresh_at = waited + refresh_s
        with contextlib.suppress(redis.RedisError):
            for job_id, (status, worker) in zip(
                    ids, job_fields(client, ids, ("status", "worker")), strict=True):
                if status == b"running" and hostname in (worker or b"").decode():
                    return job_id, round(time.monotonic() - started, 2)
        time.sleep(0.005)
    return None, round(time.monotonic() - started, 2)


def worker_runs(logs: Iterable[str]) -> tuple[collections.Counter, collections.Counter,
                                              collections.Counter]:
    """From the workers' log texts: runs to the end per job, runs per outcome
    (``succeeded``, ``failed``, ``duplicate``), duplicate deliveries ignored per job."""
    runs: collections.Counter = collections.Counter()
    outcomes: collections.Counter = collections.Counter()
    ignored: collections.Counter = collections.Counter()
    for text in logs:
        for match in DONE_LINE.finditer(text):
            outcomes[match.group(3)] += 1
            if match.group(3) != "duplicate":
                runs[match.group(1)] += 1
        ignored.update(match.group(1) for match in IGNORED_LINE.finditer(text))
    return runs, outcomes, ignored
