"""Real servers for the tests: a throw-away Redis (the embedded valkey binary) on a free
port, Celery workers, the API under gunicorn and moto_server, all torn down after."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import requests
from hypothesis import settings as hypothesis_settings

from tests.helpers import free_port, stop_process
from visionq.embedded_redis import server_command, wait_ready
from visionq.keys import WORKER_KEY_PREFIX

# Property tests explore a fixed, seed-derived set of examples in CI (a failure is
# reproducible, never a flake); `HYPOTHESIS_PROFILE=explore` searches afresh each run.
hypothesis_settings.register_profile("ci", derandomize=True, deadline=None)
hypothesis_settings.register_profile("explore", deadline=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"
ARTIFACTS = REPO / "tests" / "artifacts"
BIN = Path(sys.executable).parent
# The tests' job history (apps in this process and the servers they start), not the one
# `visionq up` keeps in this checkout's .visionq/; tests that look at it use their own.
os.environ.setdefault("VISIONQ_HISTORY_URL", f"sqlite:///{ARTIFACTS / 'history.sqlite3'}")
# Processes the tests start import test plugins (``tests.workers.sleepy_model``): this
# checkout's ``tests`` package must win over the top-level ``tests`` package that some
# wheels install into site-packages (deepstack-python 0.9 ships one).
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(REPO), *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]])


def spawn(name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = open(ARTIFACTS / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                            cwd=REPO, start_new_session=True)


def log_tail(name: str, lines: int = 40) -> str:
    path = ARTIFACTS / f"{name}.log"
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_http(url: str, process: subprocess.Popen, name: str, timeout_s: float = 120,
              any_status: bool = False) -> None:
    """Until ``url`` answers 200 (any status with ``any_status``); raises with the tail of
    ``name``'s log when ``process`` exits or ``timeout_s`` passes first."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if requests.get(url, timeout=1).status_code == 200 or any_status:
                return
        except requests.RequestException:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not answer {url}:\n{log_tail(name)}")
        time.sleep(0.2)


# Databases of the session Redis, one owner each (a worker consumes every queue of its DB,
# so two tests sharing a DB steal each other's jobs): 0 the shared stack (api_url, the
# session workers), 3 idle_redis_url, 5 test_openapi, 6 test_faults and the monitoring
# stack (never at once), 7 the autoscaler end to end, 8 test_burst and test_reaper (one at
# a time), 9 test_wire_security, 11 test_stream, 12 test_signatures, 13 and 14 test_watch,
# 15 test_deepstack_detectors, 4 the MQTT tests (tests/visionq/mqtt).
@pytest.fixture(scope="session")
def redis_server() -> Iterator[tuple[int, subprocess.Popen]]:
    port = free_port()
    process = spawn(f"redis-{port}", server_command(port, None, persistent=False), dict(os.environ))
    wait_ready(f"redis://127.0.0.1:{port}/0", 120, process)
    yield port, process
    stop_process(process)


@pytest.fixture(scope="session")
def redis_url(redis_server: tuple[int, subprocess.Popen]) -> str:
    """DB 0: the broker that the session's workers consume from."""
    return f"redis://127.0.0.1:{redis_server[0]}/0"


@pytest.fixture()
def own_redis() -> Iterator[str]:
    """A throw-away Redis server of the test's own (its memory and keys are the test's)."""
    port = free_port()
    process = spawn(f"redis-own-{port}", server_command(port, None, persistent=False),
                    dict(os.environ))
    url = f"redis://127.0.0.1:{port}/0"
    wait_ready(url, 120, process)
    yield url
    stop_process(process)


@pytest.fixture()
def idle_redis_url(redis_server: tuple[int, subprocess.Popen]) -> Iterator[str]:
    """DB 3, no worker consumes it: what the API enqueues stays there to be inspected."""
    url = f"redis://127.0.0.1:{redis_server[0]}/3"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()


def service_env(redis_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"REDIS_URL": redis_url, "C_FORCE_ROOT": "1", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


WorkerFactory = Callable[..., subprocess.Popen]


class WorkerPool:
    """Starts ``celery -A tasks worker -Q <queues>`` exactly as a user would, waits for its
    heartbeat (the model is loaded by then), and stops every worker it started."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def start(self, redis_url: str, queues: str, name: str, concurrency: int = 1,
              timeout_s: float = 180, **env: str) -> subprocess.Popen:
        command = [str(BIN / "celery"), "-A", "tasks", "worker", "-Q", queues,
                   "-c", str(concurrency), "-n", f"{name}@testhost", "--loglevel", "INFO",
                   "--without-mingle", "--without-gossip"]
        process = spawn(f"worker-{name}", command, service_env(redis_url, **env))
        self.started.append(process)
        client = redis.Redis.from_url(redis_url)
        deadline = time.monotonic() + timeout_s
        while not client.exists(f"{WORKER_KEY_PREFIX}{name}@testhost"):
            if process.poll() is not None:
                raise RuntimeError(f"worker {name} exited:\n{log_tail(f'worker-{name}')}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker {name} not ready:\n{log_tail(f'worker-{name}')}")
            time.sleep(0.2)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            stop_process(process)


@pytest.fixture(scope="session")
def start_worker() -> Iterator[WorkerFactory]:
    """Workers that live for the whole session (shared by many tests)."""
    pool = WorkerPool()
    yield pool.start
    pool.stop_all()


@pytest.fixture()
def test_worker() -> Iterator[WorkerFactory]:
    """Workers that are stopped when the test ends (fault tests, isolated queues)."""
    pool = WorkerPool()
    yield pool.start
    pool.stop_all()


@pytest.fixture(scope="session")
def face_worker(start_worker: WorkerFactory, redis_url: str) -> subprocess.Popen:
    return start_worker(redis_url, "face", "face")


def start_api(redis_url: str, name: str, **env: str) -> tuple[str, subprocess.Popen]:
    port = free_port()
    command = [str(BIN / "gunicorn"), "--workers", "2", "--threads", "8", "--bind",
               f"127.0.0.1:{port}", "api:create_app()"]  # threaded, as `visionq up` runs it
    process = spawn(name, command, service_env(redis_url, **env))
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/healthz", process, name)
    return url, process


@pytest.fixture(scope="session")
def api_url(redis_url: str) -> Iterator[str]:
    url, process = start_api(redis_url, "api")
    yield url
    stop_process(process)


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    port = free_port()
    process = spawn("moto", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                    dict(os.environ))
    url = f"http://127.0.0.1:{port}"
    wait_http(url, process, "moto", any_status=True)
    yield url
    stop_process(process)


def postgres_bin_dir() -> Path | None:
    """Debian's PostgreSQL server binaries (package ``postgresql``; ``make system-deps``)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throw-away PostgreSQL server (``initdb`` + ``postgres`` on a free port, trust auth
    on loopback), run as the ``postgres`` user when the tests run as root (the server
    refuses root).  Skips only when the binaries are missing."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                        "postgresql"], capture_output=True, timeout=900,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries missing and apt-get could not install them "
                    "(Debian package postgresql; `make system-deps` installs it as root)")
    # Not under pytest's tmp dir: that is private to root, and the server runs as postgres.
    data = Path(tempfile.mkdtemp(prefix="visionq-postgres-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*prefix, str(bin_dir / "initdb"), "-D", str(data / "db"), "-A", "trust",
                    "-U", "visionq", "--no-sync", "-E", "UTF8"],
                   check=True, capture_output=True, timeout=120)
    port = free_port()
    process = spawn(f"postgres-{port}", [
        *prefix, str(bin_dir / "postgres"), "-D", str(data / "db"), "-p", str(port),
        "-k", str(data), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
        dict(os.environ))
    deadline = time.monotonic() + 120
    while subprocess.run([str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                         capture_output=True).returncode != 0:
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process)
            raise RuntimeError(f"postgres did not start:\n{log_tail(f'postgres-{port}')}")
        time.sleep(0.2)
    yield f"postgresql://visionq@127.0.0.1:{port}/postgres"
    with contextlib.suppress(ProcessLookupError):  # SIGINT: fast shutdown, clients cut off
        os.killpg(process.pid, signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(30)
    stop_process(process)
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture()
def aws_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
              "AWS_DEFAULT_REGION": "us-east-1"}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values
