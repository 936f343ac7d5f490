"""`visionq up` (what `make up` runs): embedded Redis with AOF, API, workers and Flower
start, the URLs are printed, a real job goes through, Ctrl-C stops everything."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

import requests

from tests.conftest import BIN, FIXTURES, REPO, free_port

DEADLINE_S = 120.0
"""Bound of each wait below; every one polls its condition and returns once it holds."""


def _reader(stream, lines: queue.Queue) -> None:
    for line in iter(stream.readline, ""):
        lines.put(line)


def test_up_runs_the_stack_and_stops_cleanly(tmp_path: Path) -> None:
    api_port, redis_port, flower_port, exporter_port = (free_port() for _ in range(4))
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "VISIONQ_REDIS_URL")}
    env.update({"VISIONQ_REDIS_PORT": str(redis_port), "VISIONQ_FLOWER_PORT": str(flower_port),
                "VISIONQ_EXPORTER_PORT": str(exporter_port),
                "VISIONQ_STATE_DIR": str(tmp_path / "state"), "C_FORCE_ROOT": "1"})
    process = subprocess.Popen(
        [str(BIN / "visionq"), "up", "--port", str(api_port), "--queues", "face",
         "--no-prometheus"],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(process.stdout, lines), daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + DEADLINE_S
        # The banner is written a line at a time: wait for its last line, not for a while.
        while not any("Ctrl-C stops everything" in line for line in seen):
            assert time.monotonic() < deadline, "".join(seen[-40:])
            assert process.poll() is None, "".join(seen[-40:])
            with contextlib.suppress(queue.Empty):
                seen.append(lines.get(timeout=1))
        banner = "".join(seen[next(i for i, line in enumerate(seen)
                                   if "visionq is up" in line):])
        assert f"http://127.0.0.1:{api_port}/v1/jobs" in banner
        assert f"http://127.0.0.1:{flower_port}/" in banner
        assert f"http://127.0.0.1:{exporter_port}/metrics" in banner
        api = f"http://127.0.0.1:{api_port}"
        submitted = requests.post(f"{api}/v1/jobs?task=face", timeout=10, files={
            "image": (FIXTURES / "faces" / "obama_small.jpg").read_bytes()})
        assert submitted.status_code == 202
        deadline = time.monotonic() + DEADLINE_S
        while True:
            job = requests.get(submitted.json()["status_url"], params={"wait": 10},
                               timeout=30).json()
            if job["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
                break
        assert job["status"] == "succeeded" and len(job["result"]["faces"]) == 1, job
        assert list((tmp_path / "state" / "redis").rglob("*.aof")), "AOF persistence is off"
        deadline = time.monotonic() + DEADLINE_S
        while True:  # Flower answers (it starts last and takes a few seconds)
            try:
                if requests.get(f"http://127.0.0.1:{flower_port}/healthcheck",
                                timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "Flower did not answer"
            time.sleep(0.5)
        # The worker counts the job just after it turns final: poll the exporter for it.
        deadline = time.monotonic() + DEADLINE_S
        while True:
            metrics = requests.get(f"http://127.0.0.1:{exporter_port}/metrics",
                                   timeout=30).text
            counted = [line for line in metrics.splitlines()
                       if line.startswith("visionq_jobs_completed_total{")]
            if counted or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert any('task="face"' in line for line in counted), metrics
    finally:
        os.killpg(process.pid, signal.SIGINT) if process.poll() is None else None
        try:
            code = process.wait(DEADLINE_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    while not lines.empty():
        seen.append(lines.get())
    assert code == 0, "".join(seen[-30:])
    assert "visionq: stopped" in "".join(seen)
    for port in (api_port, redis_port, flower_port, exporter_port):
        try:
            requests.get(f"http://127.0.0.1:{port}/", timeout=1)
            raise AssertionError(f"something still listens on {port}")
        except requests.ConnectionError:
            pass
