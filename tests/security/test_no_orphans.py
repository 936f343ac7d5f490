"""Issue 30, "No orphans": ``visionq up``'s children die with it whatever kills it, what a
previous run left is swept at start, a port held by something else is named, and a child
that hangs (SIGSTOP) is killed and restarted like a crashed one.

Real stacks (``visionq up --queues classify`` with the test-only ``SleepyModel``, the
embedded Redis on a port of their own), as in tests/test_supervised_up.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from launcher.children import start_time
from tests.conftest import free_port
from tests.monitoring.live import until
from tests.test_supervised_up import WAIT_S, Up

LIVENESS_S = 10
"""The hung-child test's VISIONQ_LIVENESS_TIMEOUT_S (a worker beats every 5 s)."""


class Ports:
    def __init__(self) -> None:
        self.api, self.redis, self.exporter = (free_port() for _ in range(3))

    def all(self) -> list[int]:
        return [self.api, self.redis, self.exporter]


def alive(pid: int) -> bool:
    return start_time(pid) is not None  # zombies (dead, unreaped) are not alive


def descendants(root: int) -> dict[int, str]:
    """Every live process under ``root``: pid -> command line."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat[stat.rindex(")") + 2:].split()[1])
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                with contextlib.suppress(OSError):
                    found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(
                        b"\0", b" ").decode(errors="replace")
                    frontier.append(pid)
    return found


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def kill_leftovers(pids: Iterator[int] | list[int]) -> None:
    """Clean up after a failing run (the old code left the whole stack running)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture()
def stacks() -> Iterator[Callable[..., Up]]:
    made: list[Up] = []

    def make(state: Path, ports: Ports, **env: str) -> Up:
        """``Up`` with ``state`` as its state directory (``<run>/state``) on ``ports``."""
        up = Up(state.parent, ports.all(), **env)
        made.append(up)
        return up

    yield make
    for up in made:
        up.close()


def test_kill_9_of_up_leaves_no_child_and_frees_its_ports(
        tmp_path: Path, stacks: Callable[..., Up]) -> None:
    ports = Ports()
    state = tmp_path / "run" / "state"
    up = stacks(state, ports)
    up.wait_for_line("Ctrl-C stops everything")
    tree = descendants(up.process.pid)
    assert len(tree) >= 4, tree  # redis, gunicorn + workers, celery + pool child, exporter
    try:
        os.kill(up.process.pid, signal.SIGKILL)  # what the OOM killer does
        killed_at = time.monotonic()
        up.process.wait()

        def gone() -> bool:
            return not any(map(alive, tree)) and all(map(port_free, ports.all()))
        until(gone, lambda: "still alive: " + str({p: c for p, c in tree.items() if alive(p)})
              + f"; ports held: {[p for p in ports.all() if not port_free(p)]}", WAIT_S)
        print(f"{len(tree)} processes gone, ports {ports.all()} free "
              f"{time.monotonic() - killed_at:.2f} s after the kill -9")
    finally:
        kill_leftovers([pid for pid in tree if alive(pid)])

    again = stacks(state, ports)  # same ports, same state directory
    again.wait_for_line("Ctrl-C stops everything")
    assert requests.get(f"{again.api}/healthz", timeout=30).status_code == 200
    assert again.interrupt() == 0, again.tail()


def test_what_a_dead_up_left_is_swept_at_start(
        tmp_path: Path, stacks: Callable[..., Up]) -> None:
    ports = Ports()
    state = tmp_path / "run" / "state"
    listen = ("import socket, time; s = socket.socket(); "
              "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
              f"s.bind(('127.0.0.1', {ports.api})); s.listen(); time.sleep(600)")
    # An orphaned API of a previous run, holding the port, and an unrelated process whose PID
    # the record names with another start time (its PID was reused): only the first is ours.
    orphan = subprocess.Popen([sys.executable, "-c", listen], start_new_session=True)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                                start_new_session=True)
    try:
        until(lambda: not port_free(ports.api), "the orphan did not listen")
        state.mkdir(parents=True)
        (state / "up-children.json").write_text(json.dumps({
            "up": {"pid": orphan.pid, "start": 0},  # the dead `visionq up`: another start time
            "children": {"api": {"pid": orphan.pid, "start": start_time(orphan.pid)},
                         "worker-classify": {"pid": stranger.pid,
                                             "start": start_time(stranger.pid) - 1}}}))
        up = stacks(state, ports)
        up.wait_for_line("Ctrl-C stops everything")
        assert orphan.poll() == -signal.SIGKILL, up.tail()
        assert stranger.poll() is None, "a reused PID was killed"
        assert f"killing what a previous `visionq up` left running: api (pids {orphan.pid}" \
            in up.output(), up.tail()
        assert requests.get(f"{up.api}/healthz", timeout=30).status_code == 200

        # A second `visionq up` on the same state directory sweeps nothing of the first's.
        running = up.children()
        second = stacks(state, Ports())
        assert second.process.wait(WAIT_S) == 1, second.tail()
        assert f"another `visionq up` (pid {up.process.pid}) is running with this state " \
            "directory" in second.output(), second.tail()
        assert up.children() == running
        assert up.interrupt() == 0, up.tail()
    finally:
        kill_leftovers([orphan.pid, stranger.pid])
        orphan.wait()
        stranger.wait()


def test_a_port_held_by_something_else_is_named_at_start(
        tmp_path: Path, stacks: Callable[..., Up]) -> None:
    ports = Ports()
    with socket.socket() as held:
        held.bind(("127.0.0.1", ports.api))
        held.listen()
        up = stacks(tmp_path / "run" / "state", ports)
        try:
            code = up.process.wait(WAIT_S)
        finally:
            up.output()
    output = up.output()
    assert code == 1, output
    assert f"port {ports.api} (the API) is in use by pid {os.getpid()}" in output, output
    assert "Traceback" not in output and "[api]" not in output, output  # nothing started


def test_a_hung_worker_and_a_hung_api_are_killed_and_restarted(
        tmp_path: Path, stacks: Callable[..., Up]) -> None:
    up = stacks(tmp_path / "run" / "state", Ports(),
                VISIONQ_LIVENESS_TIMEOUT_S=str(LIVENESS_S))
    up.wait_for_line("Ctrl-C stops everything")

    worker = up.worker_main()
    assert worker is not None, up.children()
    os.kill(worker, signal.SIGSTOP)  # hung, not exited: poll() alone never sees it
    stopped_at = time.monotonic()
    until(lambda: (pid := up.worker_main()) and pid != worker,
          lambda: f"hung worker not restarted:\n{up.tail()}", WAIT_S)
    print(f"hung worker replaced {time.monotonic() - stopped_at:.1f} s after its SIGSTOP")
    assert not alive(worker)
    assert f"worker-classify was killed as hung (pid {worker}: no answer to its liveness " \
        "check (heartbeat)" in up.output(), up.tail()

    def worker_online() -> bool:
        ready = requests.get(f"{up.api}/readyz", timeout=30).json()
        return ready.get("workers", {}).get("classify") == 1
    until(worker_online, lambda: f"no worker online:\n{up.tail()}", WAIT_S)

    api = next(pid for pid, cmd in up.children().items() if "gunicorn" in cmd)
    os.killpg(api, signal.SIGSTOP)  # the master and its workers: /healthz stops answering
    stopped_at = time.monotonic()

    def api_back() -> bool:
        pids = [pid for pid, cmd in up.children().items() if "gunicorn" in cmd]
        if pids in ([], [api]):
            return False
        with contextlib.suppress(requests.RequestException):
            return requests.get(f"{up.api}/healthz", timeout=2).status_code == 200
        return False
    until(api_back, lambda: f"hung API not restarted:\n{up.tail()}", WAIT_S)
    print(f"hung API answering again {time.monotonic() - stopped_at:.1f} s after its SIGSTOP")
    assert not alive(api)
    assert f"api was killed as hung (pid {api}: no answer to its liveness check " \
        "(GET /healthz)" in up.output(), up.tail()
    assert up.interrupt() == 0, up.tail()
