"""Real servers for the monitoring tests: Debian's Prometheus (installed when missing) and a
small visionq stack with metrics on (2 gunicorn workers, a face worker with 2 prefork
children, the workers' exporter), on its own Redis database so no other test's worker
takes its jobs."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.conftest import (
    BIN,
    WorkerFactory,
    free_port,
    service_env,
    spawn,
    start_api,
    stop_process,
    wait_http,
)

STACK_DB = 6
"""Redis database of the monitoring stack (0 is the session workers', 3 the idle one)."""
INSTALL_TIMEOUT_S = 300


def _install_prometheus() -> str | None:
    """``apt-get install prometheus`` without letting its package start a service (a
    ``policy-rc.d`` that refuses every start, unless one is already in place)."""
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return None
    policy = Path("/usr/sbin/policy-rc.d")
    added = not policy.exists()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        if added:
            policy.write_text("#!/bin/sh\n# visionq tests: never start services\nexit 101\n")
            policy.chmod(0o755)
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True,
                       capture_output=True, timeout=INSTALL_TIMEOUT_S)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                        "prometheus"], env=env, check=True, capture_output=True,
                       timeout=INSTALL_TIMEOUT_S)
    except (subprocess.SubprocessError, OSError):
        return None
    finally:
        if added:
            policy.unlink(missing_ok=True)
    return shutil.which("prometheus")


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    found = shutil.which("prometheus") or _install_prometheus()
    if not found or not shutil.which("promtool"):
        pytest.skip("Prometheus is not installed and `apt-get install prometheus` failed "
                    "(needs root and Debian's package lists); install it to run these tests")
    return found


@pytest.fixture(scope="session")
def promtool(prometheus_bin: str) -> str:
    return shutil.which("promtool") or pytest.skip("promtool missing")  # type: ignore[return-value]


@dataclass
class Stack:
    redis_url: str
    api_url: str
    exporter_url: str
    api_dir: Path
    workers_dir: Path
    worker_name: str


@pytest.fixture(scope="session")
def monitored_stack(redis_server: tuple[int, subprocess.Popen], start_worker: WorkerFactory,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    url = f"redis://127.0.0.1:{redis_server[0]}/{STACK_DB}"
    redis.Redis.from_url(url).flushdb()
    base = tmp_path_factory.mktemp("metrics")
    api_dir, workers_dir = base / "api", base / "workers"
    api_dir.mkdir()
    workers_dir.mkdir()
    worker_name = "monface"
    start_worker(url, "face", worker_name, concurrency=2,
                 PROMETHEUS_MULTIPROC_DIR=str(workers_dir), VISIONQ_SLO_FACE="5s")
    api_url, api = start_api(url, "api-monitoring", PROMETHEUS_MULTIPROC_DIR=str(api_dir))
    port = free_port()
    exporter = spawn("exporter", [str(BIN / "python"), "-m", "monitoring.exporter",
                                  "--port", str(port), "--redis-url", url,
                                  "--multiproc-dir", str(workers_dir)],
                     service_env(url, VISIONQ_SLO_FACE="5s"))
    exporter_url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{exporter_url}/metrics", exporter, "exporter")
        yield Stack(url, api_url, exporter_url, api_dir, workers_dir, worker_name)
    finally:
        stop_process(exporter)
        stop_process(api)
        redis.Redis.from_url(url).flushdb()
