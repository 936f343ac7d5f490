"""``visionq up`` supervises its children, with real processes: a worker's main Celery
process killed with SIGKILL mid-load is restarted within 10 s and every accepted job
finishes exactly once; a role that keeps failing is given up and ``/readyz`` says so;
Ctrl-C stops everything with exit code 0 and no restart.

The stacks run the test-only ``SleepyModel`` (tests/workers/sleepy_model.py) on the
``classify`` queue, with the embedded Redis on a port of their own.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import BIN, REPO, free_port
from tests.helpers import children
from tests.monitoring.live import until
from tests.workers.sleepy_model import image_bytes
from visionq.jobs import JobStore
from visionq.keys import SUPERVISOR_GAVE_UP_KEY

WAIT_S = 120.0
"""Bound of every wait below; each polls its condition and returns once it holds."""
RESTART_BOUND_S = 10.0
"""The issue's promise: a killed worker is back (a new main process) within 10 s."""
SLEEPY = {"VISIONQ_MODEL_CLASSIFY": "tests.workers.sleepy_model:SleepyModel"}
SHORT_LIMITS = {"VISIONQ_SOFT_TIME_LIMIT_S": "4", "VISIONQ_HARD_TIME_LIMIT_S": "6",
                "VISIONQ_VISIBILITY_TIMEOUT_S": "8", "VISIONQ_REAPER_GRACE_S": "5"}
"""The killed worker's unacknowledged jobs come back after 8 s, not 90."""
JOBS = 8


class Up:
    """``visionq up --queues classify`` as a subprocess, its output collected."""

    def __init__(self, tmp_path: Path, ports: tuple[int, int, int] | None = None,
                 **env: str) -> None:
        """State in ``tmp_path / "state"``; ``ports`` (API, Redis, exporter): free ones
        unless given (a second run on the first's)."""
        self.api_port, self.redis_port, self.exporter_port = ports or tuple(
            free_port() for _ in range(3))
        full = {k: v for k, v in os.environ.items()
                if k not in ("REDIS_URL", "VISIONQ_REDIS_URL")}
        full.update({"VISIONQ_REDIS_PORT": str(self.redis_port),
                     "VISIONQ_EXPORTER_PORT": str(self.exporter_port),
                     "VISIONQ_STATE_DIR": str(tmp_path / "state"), "C_FORCE_ROOT": "1",
                     **SLEEPY, **env})
        self.process = subprocess.Popen(
            [str(BIN / "visionq"), "up", "--port", str(self.api_port), "--queues",
             "classify", "--no-flower", "--no-prometheus"],
            env=full, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.api = f"http://127.0.0.1:{self.api_port}"
        self.redis = redis.Redis.from_url(f"redis://127.0.0.1:{self.redis_port}/0")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in iter(self.process.stdout.readline, ""):
            self._queue.put(line)

    def output(self) -> str:
        while True:
            try:
                self.lines.append(self._queue.get_nowait())
            except queue.Empty:
                return "".join(self.lines)

    def tail(self) -> str:
        return "".join(self.output().splitlines(keepends=True)[-60:])

    def wait_for_line(self, text: str) -> None:
        def seen() -> bool:
            assert self.process.poll() is None, self.tail()
            return text in self.output()
        until(seen, lambda: f"no {text!r} in the output:\n{self.tail()}")

    def children(self) -> dict[int, str]:
        """pid -> command line of `visionq up`'s direct children."""
        found = {}
        for pid in children(self.process.pid):
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                found[pid] = cmdline.decode(errors="replace")
        return found

    def worker_main(self) -> int | None:
        mains = [pid for pid, cmd in self.children().items()
                 if " worker " in cmd and "-Q classify" in cmd]
        return mains[0] if len(mains) == 1 else None

    def submit(self, width: int) -> str:
        response = requests.post(f"{self.api}/v1/jobs", params={"task": "classify"},
                                 files={"image": ("i.png", image_bytes(width))}, timeout=30)
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def metric(self, name: str, **labels: str) -> float | None:
        """A sample of the exporter's /metrics, None while it has none."""
        body = requests.get(f"http://127.0.0.1:{self.exporter_port}/metrics", timeout=30).text
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v
                                               for k, v in labels.items()):
                    return sample.value
        return None

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT to `visionq up` (its children run in their own sessions, as a
        terminal's Ctrl-C reaches only the foreground process group)."""
        os.kill(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(WAIT_S)
        finally:
            self.output()

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        for pid in self.children():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


@pytest.fixture()
def up_factory(tmp_path: Path) -> Iterator[Callable[..., Up]]:
    made: list[Up] = []

    def make(**env: str) -> Up:
        up = Up(tmp_path / str(len(made)), **env)
        made.append(up)
        return up

    yield make
    for up in made:
        up.close()


def test_a_killed_worker_main_process_is_restarted_and_no_job_is_lost_or_run_twice(
        up_factory: Callable[..., Up]) -> None:
    up = up_factory(**SHORT_LIMITS)
    up.wait_for_line("Ctrl-C stops everything")
    store = JobStore(up.redis, 3600)
    ids = [up.submit(100) for _ in range(JOBS)]  # 1 s each, one at a time
    until(lambda: any(j and j.status == "running" for j in map(store.get, ids)),
          lambda: f"no job started:\n{up.tail()}")
    main = up.worker_main()
    assert main is not None, up.children()
    os.kill(main, signal.SIGKILL)  # the `celery ... worker` parent, not its pool child
    killed_at = time.monotonic()
    new_main = until(lambda: (pid := up.worker_main()) and pid != main and pid,
                     lambda: f"worker not restarted:\n{up.tail()}")
    restarted_in = time.monotonic() - killed_at
    print(f"worker main process restarted {restarted_in:.2f} s after its SIGKILL")
    assert restarted_in < RESTART_BOUND_S, up.tail()
    assert new_main != main
    assert "worker-classify exited unexpectedly (killed by SIGKILL); restarting it in" \
        in up.output(), up.tail()

    def finished() -> bool:
        return all(j and j.status in ("succeeded", "failed") for j in map(store.get, ids))
    until(finished, lambda: f"jobs not finished: "
          f"{[(i, j and j.status) for i, j in zip(ids, map(store.get, ids), strict=True)]}")
    jobs = [store.get(i) for i in ids]
    assert [j.status for j in jobs if j] == ["succeeded"] * JOBS
    assert store.counts()["classify"]["succeeded"] == JOBS, store.counts()
    def completed() -> float | None:
        return up.metric("visionq_jobs_completed_total", task="classify", outcome="succeeded")
    until(lambda: completed() == JOBS, lambda: f"exporter: {completed()} completed, not {JOBS}")
    assert up.metric("visionq_process_restarts_total", role="worker-classify") == 1.0
    assert up.metric("visionq_process_restarts_total", role="api") == 0.0
    ready = requests.get(f"{up.api}/readyz", timeout=30).json()
    assert "gave_up" not in ready and ready["workers"]["classify"] == 1, ready

    # Ctrl-C with a job in hand: the worker finishes it, nothing is restarted, exit 0.
    in_hand = up.submit(200)
    until(lambda: (job := store.get(in_hand)) and job.status == "running",
          lambda: f"last job not running:\n{up.tail()}")
    running = up.children()
    before = len(up.output())
    assert up.interrupt() == 0, up.tail()
    after = up.output()[before:]
    assert "exited unexpectedly" not in after and "restarting" not in after, after
    assert f"[{in_hand}] succeeded in" in after, after
    assert "visionq: stopped" in after
    alive = [pid for pid in running if Path(f"/proc/{pid}").exists()
             and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]]
    assert not alive, {pid: running[pid] for pid in alive}


def test_a_role_that_keeps_failing_is_given_up_and_readyz_says_so(
        up_factory: Callable[..., Up]) -> None:
    with socket.socket() as taken:  # the exporter's port is in use: it cannot start
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        up = up_factory(SLEEPY_FAIL_LOAD="weights file is corrupt",  # nor can the worker
                        VISIONQ_EXPORTER_PORT=str(taken.getsockname()[1]),
                        VISIONQ_SUPERVISOR_GIVE_UP_AFTER="2",
                        VISIONQ_SUPERVISOR_BACKOFF_INITIAL_S="0.2")
        # The stack comes up without them: the banner, then /readyz names them.
        up.wait_for_line("Ctrl-C stops everything")
        up.wait_for_line("exporter exited unexpectedly")

        def gave_up() -> dict | None:
            response = requests.get(f"{up.api}/readyz", timeout=30)
            body = response.json()
            if body.get("gave_up") == ["exporter", "worker-classify"]:
                assert response.status_code == 503
                return body
            return None
        body = until(gave_up, lambda: f"/readyz: {requests.get(f'{up.api}/readyz').text}\n"
                                      f"{up.tail()}")
        assert body["status"] == "not_ready"
        output = up.output()
        assert "worker-classify exited unexpectedly (exit code" in output
        assert "giving up on it" in output and "/readyz reports it under gave_up" in output
        assert "weights file is corrupt" in output  # the cause is in the role's own log
        records = {k.decode(): v for k, v in up.redis.hgetall(SUPERVISOR_GAVE_UP_KEY).items()}
        assert '"critical": true' in records["worker-classify"].decode()
        assert '"critical": false' in records["exporter"].decode()
        assert up.process.poll() is None, "a worker given up must not stop the stack"
        starts = output.count("restarting worker-classify (restart")
        assert starts == 1, output  # two failures: one restart, then given up
        assert up.interrupt() == 0, up.tail()
        assert "visionq: stopped" in up.output()
