"""Local backend with a stand-in worker that, like Celery, finishes its task on SIGTERM."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoscale.backends import Backend
from autoscale.backends.local import DEFAULT_COMMAND, LocalBackend, render

# On SIGTERM: stop taking work, finish the current "task" (0.3 s), log it, exit 0.
WORKER = r"""
import signal, sys, time
log = open(sys.argv[1], "a", buffering=1)
stopping = False
def term(*_):
    global stopping
    stopping = True
signal.signal(signal.SIGTERM, term)
log.write(f"start {sys.argv[2]} {sys.argv[3]}\n")
while not stopping:
    time.sleep(0.02)
time.sleep(0.3)
log.write(f"finished {sys.argv[2]} {sys.argv[3]}\n")
"""


WAIT_S = 120.0
"""Bound of the waits below; each returns as soon as its condition holds."""


def wait_until(cond, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[tuple[LocalBackend, Path]]:
    log = tmp_path / "workers.log"
    b = LocalBackend(["face", "detect"],
                     command=[sys.executable, "-c", WORKER, str(log), "{queue}", "{index}"])
    try:
        yield b, log
    finally:
        assert b.close(timeout=WAIT_S) == []


def lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_default_command_renders_queue_and_index() -> None:
    argv = render(DEFAULT_COMMAND, "face", 2)
    assert argv[1:] == ["-m", "celery", "-A", "tasks", "worker", "-Q", "face", "-c", "1",
                        "-n", "local-face-2@%h"]


def test_scale_out_and_warm_scale_in(backend) -> None:
    b, log = backend
    assert isinstance(b, Backend)
    assert b.apply({"face": 2, "detect": 1}) == {"face": 2, "detect": 1}
    wait_until(lambda: len(lines(log)) == 3)
    assert sorted(lines(log)) == ["start detect 0", "start face 0", "start face 1"]
    cap = b.current()
    assert (cap["face"].current, cap["detect"].current) == (2, 1)
    procs = {w.index: w.proc for w in b.workers if w.queue == "face"}

    b.apply({"face": 1})  # newest (index 1) is stopped with SIGTERM
    cap = b.current()["face"]
    assert (cap.current, cap.draining) == (1, 1)
    assert procs[1].wait(timeout=WAIT_S) == 0  # finished its task and exited cleanly
    assert "finished face 1" in lines(log)
    assert procs[0].poll() is None
    cap = b.current()["face"]
    assert (cap.current, cap.draining) == (1, 0)  # reaped

    b.apply({"face": 2})  # index 1 is free again
    wait_until(lambda: lines(log).count("start face 1") == 2)


def test_scale_in_spares_protected_workers(backend) -> None:
    b, log = backend
    b.apply({"face": 3})
    wait_until(lambda: len(lines(log)) == 3)
    by_index = {w.index: w for w in b.workers}
    b.protect({by_index[2].id, by_index[1].id})  # the two newest are busy
    b.apply({"face": 2})
    assert [w.index for w in b.workers if w.draining] == [0]
    assert by_index[0].proc.wait(timeout=WAIT_S) == 0


def test_crashed_workers_are_reaped_and_replaced(tmp_path: Path) -> None:
    b = LocalBackend(["face"], command=[sys.executable, "-c", "raise SystemExit(3)"])
    try:
        b.apply({"face": 1})
        b.workers[0].proc.wait(timeout=WAIT_S)
        assert b.current()["face"].current == 0
        b.apply({"face": 1})
        assert b.current()["face"].ids != ()
    finally:
        b.close(timeout=WAIT_S)


def test_close_never_kills(tmp_path: Path) -> None:
    ready = tmp_path / "ready"  # touched once SIGTERM is ignored
    stubborn = ("import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, "
                "signal.SIG_IGN); pathlib.Path(sys.argv[1]).touch(); time.sleep(300)")
    b = LocalBackend(["face"], command=[sys.executable, "-c", stubborn, str(ready)])
    b.apply({"face": 1})
    proc = b.workers[0].proc
    try:
        wait_until(ready.exists)
        assert b.close(timeout=0.5) == [proc.pid]
        assert proc.poll() is None  # still alive: no SIGKILL from us
    finally:
        proc.kill()  # the test cleans up its own stand-in
        proc.wait(timeout=WAIT_S)
