"""The systems under test, started and stopped by the benchmark itself.

``VisionqStack``: a throw-away Redis (the embedded valkey binary, no AOF/RDB, data in a temp
dir), the API under gunicorn and one Celery worker per task, planned by ``launcher.up.Stack``
exactly as ``visionq up`` plans them (minus Flower, Prometheus and the exporter, which cost
CPU a benchmark should not pay for).  ``SyncBaseline``: ``bench/harness/sync_flask.py``
under gunicorn, one sync worker per core.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import redis
import requests

from bench.harness.common import RAW, REPO, cores, free_port, say, stop_process
from bench.harness.procs import job_fields
from launcher.up import Stack
from visionq.embedded_redis import server_command, wait_ready
from visionq.keys import WORKER_KEY_PREFIX
from visionq.settings import Settings

LOGS = RAW / "logs"
HUGE_BACKLOG = 10_000_000


class VisionqStack:
    """``with VisionqStack(["classify"]) as stack: stack.url``.

    ``worker_concurrency`` prefork children per task (default: one per core, each model
    on one thread, like the ceiling); ``api_threads`` is the API's gunicorn threads per
    worker (16, as ``visionq up``; 1 = sync workers)."""

    def __init__(self, tasks: Sequence[str], *, worker_concurrency: int | None = None,
                 api_workers: int = 2, api_threads: int = 16, host: str = "127.0.0.1",
                 port: int | None = None, env: dict[str, str] | None = None,
                 workers: bool = True, code_dir: Path | None = None) -> None:
        self.tasks = list(tasks)
        self.code_dir = code_dir
        """Run the API and workers from this checkout (a worktree of another commit)
        instead of this one: each service starts there (``env -C``)."""
        self.concurrency = worker_concurrency or cores()
        self.api_workers = api_workers
        self.api_threads = api_threads
        self.host, self.port = host, port or free_port()
        self.extra_env = dict(env or {})
        self.with_workers = workers
        self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self._tmp = tempfile.TemporaryDirectory(prefix="visionq-bench-")
        self._redis: subprocess.Popen | None = None
        self._stack: Stack | None = None
        self._log: Any = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def describe(self) -> dict[str, Any]:
        return {"tasks": self.tasks, "worker_concurrency": self.concurrency if
                self.with_workers else 0, "api_workers": self.api_workers,
                "api_threads": self.api_threads,
                "api_worker_class": "gthread" if self.api_threads > 1 else "sync",
                "redis": "embedded valkey, no persistence", "env": self.extra_env}

    def env(self) -> dict[str, str]:
        per_child_threads = "1" if self.concurrency > 1 else str(cores())
        env = {"C_FORCE_ROOT": "1", "VISIONQ_CLASSIFY_THREADS": per_child_threads,
               "VISIONQ_STATE_DIR": self._tmp.name, "PYTHONUNBUFFERED": "1"}
        for task in ("face", "detect", "classify"):
            env[f"VISIONQ_MAX_BACKLOG_{task.upper()}"] = os.environ.get(
                f"VISIONQ_MAX_BACKLOG_{task.upper()}", "1000")
        env.update(self.extra_env)
        return env

    def __enter__(self) -> VisionqStack:
        try:
            self.start()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        self._log = open(LOGS / f"visionq-{self.port}.log", "w")  # noqa: SIM115
        settings = Settings(redis_url=self.redis_url, api_host=self.host, api_port=self.port,
                            state_dir=Path(self._tmp.name))
        self._redis = subprocess.Popen(server_command(self.redis_port, None, persistent=False),
                                       stdout=self._log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        wait_ready(self.redis_url, 15, self._redis)
        stack = Stack(settings=settings, queues=self.tasks, api_workers=self.api_workers,
                      api_threads=self.api_threads,
                      worker_concurrency=self.concurrency, flower=False, prometheus=False,
                      out=self._log)
        services = [s for s in stack.plan() if s.name == "api" or
                    (self.with_workers and s.name.startswith("worker-"))]
        for service in services:
            chdir = ["env", "-C", str(self.code_dir)] if self.code_dir else []
            tuned = ["--without-mingle", "--without-gossip"] if service.name.startswith(
                "worker-") else []
            service.command = [*chdir, *service.command, *tuned]
            service.env.update(self.env())
            stack.start(service)
        stack.services = services
        self._stack = stack
        say(f"visionq stack starting: {self.describe()}")

    def wait_ready(self, timeout_s: float = 120) -> None:
        """API answers and every task's worker has beaten (its model is loaded by then)."""
        check_ready(self.url, "/healthz", self.redis_url,
                    self.tasks if self.with_workers else [], timeout_s, self._check_alive)
        say(f"visionq stack ready at {self.url}")

    def _check_alive(self) -> None:
        for service in self._stack.services if self._stack else []:
            if service.process and service.process.poll() is not None:
                raise RuntimeError(f"{service.name} exited ({service.process.returncode}); "
                                   f"see {LOGS}/visionq-{self.port}.log")

    def pids(self) -> dict[str, int]:
        pids = {s.name: s.process.pid for s in (self._stack.services if self._stack else [])
                if s.process}
        if self._redis is not None:
            pids["redis"] = self._redis.pid
        return pids

    def stop(self) -> None:
        if self._stack is not None:
            self._stack.stop()
            self._stack = None
        stop_process(self._redis, timeout_s=20)
        self._redis = None
        if self._log is not None:
            self._log.close()
            self._log = None
        self._tmp.cleanup()


class SyncBaseline:
    """The classic design: Flask + inference in the request handler, gunicorn sync
    workers, one per core (``bench/harness/sync_flask.py``)."""

    def __init__(self, task: str, *, workers: int | None = None, host: str = "127.0.0.1",
                 port: int | None = None, threads: int = 1) -> None:
        self.task = task
        """One task, or several comma-separated (one process serving them all)."""
        self.workers = workers or cores()
        self.threads = threads
        """gunicorn threads per worker: > 1 runs requests (and models) in threads."""
        self.host, self.port = host, port or free_port()
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def describe(self) -> dict[str, Any]:
        return {"task": self.task, "gunicorn_workers": self.workers,
                "worker_class": "gthread" if self.threads > 1 else "sync",
                "gunicorn_threads": self.threads,
                "model_threads_per_worker": 1 if self.threads == 1 else cores()}

    def __enter__(self) -> SyncBaseline:
        LOGS.mkdir(parents=True, exist_ok=True)
        log = open(LOGS / f"sync-{self.port}.log", "w")  # noqa: SIM115 - lives with the process
        env = {**os.environ, "BENCH_SYNC_TASK": self.task, "PYTHONUNBUFFERED": "1"}
        if self.threads > 1:  # requests in threads: each model may use every core
            env["BENCH_SYNC_MODEL_THREADS"] = str(cores())
        self._process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--workers", str(self.workers),
             "--threads", str(self.threads),
             "--bind", f"{self.host}:{self.port}", "--timeout", "60", "--backlog", "2048",
             "bench.harness.sync_flask:create_app()"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        say(f"synchronous baseline starting: {self.describe()}")
        try:
            self.wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def wait_ready(self, timeout_s: float = 120) -> None:
        check_ready(self.url, "/ready", None, [], timeout_s, self._check_alive)
        say(f"synchronous baseline ready at {self.url}")

    def _check_alive(self) -> None:
        if self._process and self._process.poll() is not None:
            raise RuntimeError(f"sync baseline exited; see {LOGS}/sync-{self.port}.log")

    @property
    def pid(self) -> int:
        return self._process.pid if self._process else -1

    def __exit__(self, *_: object) -> None:
        stop_process(self._process, timeout_s=20)
        self._process = None


def wait_for_workers(client: redis.Redis, queue: str, hostnames: set[str],
                     timeout_s: float = 120, alive: Callable[[], None] = lambda: None) -> None:
    """Until every worker in ``hostnames`` has beaten for ``queue`` (visionq's own
    heartbeat: its model is loaded by then); ``alive()`` raises if one has died."""
    from visionq.broker import workers_by_queue

    deadline = time.monotonic() + timeout_s
    while True:
        alive()
        seen = set(workers_by_queue(client).get(queue, []))
        if hostnames <= seen:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"workers {sorted(hostnames - seen)} did not beat within "
                               f"{timeout_s:g} s")
        time.sleep(0.2)


def final_jobs(client: redis.Redis, ids: Sequence[str], fields: Sequence[str],
               timeout_s: float, every_s: float = 0.1) -> list[list[bytes | None]]:
    """Until every job in ``ids`` is final (succeeded or failed): ``[status, *fields]`` of
    each, read from its record in one pipeline per poll."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = job_fields(client, ids, ("status", *fields))
        if all(row[0] in (b"succeeded", b"failed") for row in rows):
            return rows
        if time.monotonic() > deadline:
            raise TimeoutError(f"{sum(row[0] not in (b'succeeded', b'failed') for row in rows)}"
                               f" of {len(ids)} jobs not final after {timeout_s:g} s")
        time.sleep(every_s)


def check_ready(url: str, path: str, redis_url: str | None, tasks: Sequence[str],
                timeout_s: float, alive: Callable[[], None] = lambda: None) -> None:
    """Until ``url + path`` answers 200 and every task has a worker heartbeat in Redis
    (workers beat once their model is loaded)."""
    deadline = time.monotonic() + timeout_s
    client = redis.Redis.from_url(redis_url) if redis_url else None
    while time.monotonic() < deadline:
        alive()
        try:
            api = requests.get(f"{url}{path}", timeout=2).status_code == 200
            beating = {k.decode() for k in client.keys(f"{WORKER_KEY_PREFIX}*")} if client \
                else set()
            missing = [t for t in tasks
                       if not any(k.startswith(f"{WORKER_KEY_PREFIX}{t}@") for k in beating)]
            if api and not missing:
                return
        except (requests.RequestException, redis.RedisError):
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} not ready within {timeout_s:g} s (logs: {LOGS})")
