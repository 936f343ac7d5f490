"""Restart the children of ``visionq up`` that die: exponential backoff, then give up.

Two parts:

- ``RestartPolicy`` and ``RestartTracker``: the pure policy.  A role that exits is restarted
  after ``backoff_initial_s``, doubling for each further exit that follows a short run (up to
  ``backoff_max_s``).  After ``give_up_after`` short runs within ``window_s`` the role is
  given up: a crash loop (a port in use, a model that cannot load) is reported once instead
  of being retried for ever.  A run of at least ``stable_s`` resets both the backoff and that
  count.  The clock is an argument, so the policy is tested without processes
  (tests/launcher/test_supervisor.py).
- ``Supervisor``: the thin part that polls the children (``Popen.poll()``), says why one
  exited (exit code or signal name), kills what is left of its process group (and kills a
  child that ``hung`` reports as not answering, ``launcher.liveness``), restarts it
  when its backoff has passed, and hands the restart counts and given-up roles to a
  ``record`` callable (``visionq up`` writes them to Redis for ``/readyz`` and the
  exporter's ``visionq_process_restarts_total``).  It runs in the caller's loop: no thread.

Why our own rather than a library: ``supervisor`` (supervisord, PyPI 4.3.0) is a daemon
configured by an INI file and driven over XML-RPC, with no API to embed in a process that
already owns its children, their environment and their output; ``circus`` (0.19.0) is
embeddable but brings pyzmq, tornado and psutil for what is, here, one ``poll()`` per child
per second and a backoff rule.  Neither knows which of our roles ``/readyz`` depends on.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from visionq.settings import (  # the VISIONQ_SUPERVISOR_* defaults
    DEFAULT_BACKOFF_INITIAL_S,
    DEFAULT_BACKOFF_MAX_S,
    DEFAULT_GIVE_UP_AFTER,
    DEFAULT_WINDOW_S,
)

KILL_WAIT_S = 5.0
"""How long a hung child killed with SIGKILL is waited for (reaped) before moving on."""
DEFAULT_STABLE_S = 30.0
"""A run at least this long was not a crash loop: the next exit starts the backoff afresh.
Longer than any role's start-up (a worker loading its model takes ~5-10 s)."""


@dataclass(frozen=True)
class RestartPolicy:
    backoff_initial_s: float = DEFAULT_BACKOFF_INITIAL_S
    backoff_max_s: float = DEFAULT_BACKOFF_MAX_S
    give_up_after: int = DEFAULT_GIVE_UP_AFTER
    window_s: float = DEFAULT_WINDOW_S
    stable_s: float = DEFAULT_STABLE_S

    def __post_init__(self) -> None:
        if not 0 <= self.backoff_initial_s <= self.backoff_max_s:
            raise ValueError("need 0 <= backoff_initial_s <= backoff_max_s")
        if self.give_up_after < 1 or self.window_s <= 0 or self.stable_s < 0:
            raise ValueError("need give_up_after >= 1, window_s > 0, stable_s >= 0")


@dataclass(frozen=True)
class Decision:
    give_up: bool
    delay_s: float
    """Wait before the restart (0 when giving up)."""
    short_runs: int
    """Short runs within the window, this one included."""


class RestartTracker:
    """One role's restart history under a ``RestartPolicy``; times are the caller's clock."""

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        self.started_at: float | None = None
        self.consecutive = 0
        """Short runs since the last stable one: the backoff exponent."""
        self.short_exits: deque[float] = deque()

    def started(self, now: float) -> None:
        self.started_at = now

    def exited(self, now: float) -> Decision:
        policy = self.policy
        ran = now - self.started_at if self.started_at is not None else 0.0
        self.started_at = None
        if ran >= policy.stable_s:  # it was healthy: a new failure starts afresh
            self.consecutive = 0
            self.short_exits.clear()
        else:
            self.consecutive += 1
            self.short_exits.append(now)
        while self.short_exits and self.short_exits[0] <= now - policy.window_s:
            self.short_exits.popleft()
        short = len(self.short_exits)
        if short >= policy.give_up_after:
            return Decision(give_up=True, delay_s=0.0, short_runs=short)
        exponent = max(self.consecutive - 1, 0)
        delay = min(policy.backoff_initial_s * 2.0 ** min(exponent, 64), policy.backoff_max_s)
        return Decision(give_up=False, delay_s=delay, short_runs=short)


def describe_exit(returncode: int) -> str:
    """``exit code 3`` or ``killed by SIGKILL`` (Popen reports a signal as -signum)."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


class Child(Protocol):
    """What the supervisor needs of a role (``launcher.up.Service`` is one)."""

    name: str
    critical: bool
    ready_critical: bool
    process: subprocess.Popen | None


@dataclass(frozen=True)
class GaveUp:
    role: str
    reason: str
    critical: bool
    """The stack cannot run without it (Redis, the API): ``visionq up`` stops."""
    ready_critical: bool
    """``/readyz`` answers 503 while it is given up (also the workers)."""


@dataclass
class Snapshot:
    """What ``record`` is given after every change: restarts per role and the given up."""

    restarts: dict[str, int] = field(default_factory=dict)
    gave_up: dict[str, GaveUp] = field(default_factory=dict)


@dataclass
class _Role:
    tracker: RestartTracker
    restart_at: float | None = None


class Supervisor:
    def __init__(self, children: Sequence[Child], start: Callable[[Child], None],
                 say: Callable[[str], None], record: Callable[[Snapshot], bool],
                 policy: RestartPolicy, clock: Callable[[], float],
                 hung: Callable[[Child], str | None] | None = None) -> None:
        """``start`` (re)starts a child and sets its ``process``; ``record`` stores a
        snapshot and returns False if it could not (it is offered again next poll);
        ``hung`` says why a running child counts as hung (None: it does not)."""
        self.children = list(children)
        self._hung = hung
        self._start, self._say, self._record = start, say, record
        self.policy, self.clock = policy, clock
        self.snapshot = Snapshot(restarts={c.name: 0 for c in self.children})
        self._roles = {c.name: _Role(RestartTracker(policy)) for c in self.children}
        self._dirty = True

    def started(self, child: Child) -> None:
        """``child`` was started by the caller (the first start)."""
        self._roles[child.name].tracker.started(self.clock())

    def gave_up(self, name: str) -> bool:
        return name in self.snapshot.gave_up

    def fatal(self) -> list[GaveUp]:
        """Given-up roles the stack cannot run without."""
        return [g for g in self.snapshot.gave_up.values() if g.critical]

    def poll(self) -> None:
        """One pass: note exits, restart what is due, record changes."""
        for child in self.children:
            if child.name in self.snapshot.gave_up:
                continue
            role = self._roles[child.name]
            if role.restart_at is not None:
                if self.clock() >= role.restart_at:
                    self._restart(child, role)
                continue
            process = child.process
            if process is None:
                continue
            if process.poll() is None:
                reason = self._hung(child) if self._hung is not None else None
                if reason is not None:
                    self._kill_hung(child, role, process, reason)
                continue
            kill_group(process.pid)  # a worker's pool children outlive a killed main process
            self._exited(child, role, describe_exit(process.returncode))
        if self._dirty:
            self._dirty = not self._record(self.snapshot)

    def _kill_hung(self, child: Child, role: _Role, process: subprocess.Popen,
                   reason: str) -> None:
        """A running child that does not answer: SIGKILL its group, then as if it crashed."""
        kill_group(process.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(KILL_WAIT_S)
        self._exited(child, role, f"pid {process.pid}: {reason}", "was killed as hung")

    def _exited(self, child: Child, role: _Role, how: str,
                what: str = "exited unexpectedly") -> None:
        """Restart ``child`` after its backoff, or give it up; ``how`` says why it ended."""
        decision = role.tracker.exited(self.clock())
        if decision.give_up:
            reason = (f"{how}; {decision.short_runs} exits within "
                      f"{self.policy.window_s:g} s, each under {self.policy.stable_s:g} s "
                      "after its start")
            self.snapshot.gave_up[child.name] = GaveUp(
                child.name, reason, child.critical, child.ready_critical or child.critical)
            self._say(f"{child.name} {what} ({reason}): giving up on it. "
                      "Fix the cause shown in its log above, then restart `visionq up`"
                      + (" (stopping the stack: it cannot run without it)"
                         if child.critical else "; /readyz reports it under gave_up"))
            self._dirty = True
            return
        role.restart_at = self.clock() + decision.delay_s
        self._say(f"{child.name} {what} ({how}); restarting it in "
                  f"{decision.delay_s:g} s")

    def _restart(self, child: Child, role: _Role) -> None:
        role.restart_at = None
        self.snapshot.restarts[child.name] = self.snapshot.restarts.get(child.name, 0) + 1
        self._dirty = True
        self._say(f"restarting {child.name} (restart {self.snapshot.restarts[child.name]})")
        role.tracker.started(self.clock())
        try:
            self._start(child)
        except OSError as exc:  # the executable vanished, too many processes...
            child.process = None
            self._exited(child, role, f"could not be started: {exc}")


def kill_group(pgid: int) -> None:
    """SIGKILL what is left of a dead child's process group (each child leads its own)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
