"""``visionq up``'s children do not outlive it, whatever kills it.

- ``die_with_parent``: a ``preexec_fn`` that sets ``PR_SET_PDEATHSIG`` (Linux), so the kernel
  sends the child SIGKILL when ``visionq up`` dies, even by SIGKILL (the OOM killer, a
  closed terminal).  The signal fires when the *thread* that forked the child exits: the
  children are started from the main thread (``Stack.run`` and the supervisor's poll).  It is
  not inherited by grandchildren; those die with their own parent: Celery's pool children
  set it themselves (``celery.concurrency.prefork.process_initializer``), gunicorn's workers
  exit once their parent changes (``is_parent_alive``), Redis, the exporter, Flower and
  Prometheus have none that outlive them.
- ``ChildrenFile``: the children's PIDs and start times in the state directory.  At the next
  start, ``sweep`` kills what is left of a previous run (a child, or its process group once
  the leader is gone) and only that: a PID now used by another process has another start
  time and is left alone.
- ``port_holder``: who listens on a port (``/proc/net/tcp*`` and ``/proc/*/fd``), for a clear
  message at start instead of a crash loop on "Address already in use".
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

PR_SET_PDEATHSIG = 1
SWEEP_WAIT_S = 10.0
"""How long ``sweep`` waits for the processes it killed to be gone (their ports free)."""
TCP_LISTEN = "0A"


def _prctl() -> Callable[..., int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not Linux
        return None


_PRCTL = _prctl()


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A ``preexec_fn`` (None where prctl is missing): the child gets ``sig`` when the thread
    that started it exits.  If the parent is already gone when it runs, the child ends."""
    prctl = _PRCTL
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died between fork and prctl
            os.kill(os.getpid(), sig)

    return preexec


def _stat(pid: int) -> list[str] | None:
    """``/proc/<pid>/stat``'s fields from the state on (field 3); None if there is no such
    process or it is a zombie (dead, not yet reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] in ("Z", "X") else fields


def start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot, ``/proc/<pid>/stat`` field 22)."""
    fields = _stat(pid)
    return int(fields[19]) if fields is not None else None


def _group_and_session(pid: int) -> tuple[int, int] | None:
    fields = _stat(pid)
    return (int(fields[2]), int(fields[3])) if fields is not None else None


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def group_members(pgid: int) -> list[int]:
    """Live processes of the process group and session ``pgid`` (a child started with
    ``start_new_session`` leads both; its pool children or gunicorn workers are members)."""
    return [pid for pid in _pids() if _group_and_session(pid) == (pgid, pgid)]


def command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip() or "?"


@dataclass(frozen=True)
class Recorded:
    pid: int
    start: int


class AnotherUp(RuntimeError):
    """A ``visionq up`` recorded in the same state directory is still running."""


class ChildrenFile:
    """``<state>/up-children.json``: this ``visionq up`` and its current child per role."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.children: dict[str, Recorded] = {}

    def record(self, role: str, pid: int) -> None:
        start = start_time(pid)
        if start is None:
            return
        self.children[role] = Recorded(pid, start)
        me = Recorded(os.getpid(), start_time(os.getpid()) or 0)
        body = {"up": asdict(me), "children": {r: asdict(c) for r, c in self.children.items()}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(body))
        temporary.replace(self.path)

    def remove(self) -> None:
        self.children.clear()
        self.path.unlink(missing_ok=True)

    def _previous(self) -> tuple[Recorded | None, dict[str, Recorded]]:
        try:
            body = json.loads(self.path.read_text())
            up = Recorded(**body["up"]) if body.get("up") else None
            return up, {r: Recorded(**c) for r, c in body.get("children", {}).items()}
        except FileNotFoundError:
            return None, {}
        except (ValueError, TypeError, KeyError, AttributeError):
            return None, {}  # unreadable: nothing we can prove is ours

    def sweep(self, say: Callable[[str], None]) -> list[int]:
        """Kill what a previous ``visionq up`` left running (its recorded children and their
        process groups) and wait until it is gone; the killed PIDs.  Raises ``AnotherUp``
        if that ``visionq up`` is itself still running."""
        up, previous = self._previous()
        if up is not None and up.pid != os.getpid() and start_time(up.pid) == up.start:
            raise AnotherUp(f"another `visionq up` (pid {up.pid}) is running with this state "
                            f"directory ({self.path.parent}): stop it first")
        killed: list[int] = []
        for role, child in previous.items():
            leader = start_time(child.pid)
            if leader not in (child.start, None):
                continue  # the PID now belongs to another process: not ours
            members = group_members(child.pid)  # the leader (if alive) and what it left
            if leader is not None and child.pid not in members:
                members.insert(0, child.pid)  # it left its session: still ours
            if not members:
                continue
            say(f"killing what a previous `visionq up` left running: {role} "
                f"(pids {', '.join(map(str, members))}: {command_line(members[0])})")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(child.pid, signal.SIGKILL)
            killed += members
        deadline = time.monotonic() + SWEEP_WAIT_S
        while any(start_time(pid) is not None for pid in killed) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.path.unlink(missing_ok=True)
        return killed


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == TCP_LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
                    inodes.add(inode)
    return inodes


def port_holder(port: int) -> str | None:
    """None if nothing listens on TCP ``port``; else who does: ``pid 123 (command line)``,
    or a note that the holder is not visible to this user."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    holders: list[str] = []
    for pid in _pids():
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                        holders.append(f"pid {pid} ({command_line(pid)[:120]})")
                        break
    if not holders:
        return "a process this user cannot see (another user's, or another container's)"
    return ", ".join(holders)
