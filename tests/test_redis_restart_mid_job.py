"""Redis restarted while a job runs: the worker cannot record the outcome at that moment,
and before the fix now in workers/stores.py the task raised, Celery acked the message and
the job stayed ``running`` for good (found by bench/soak.py).  Now the worker waits for
Redis (``workers.stores.REDIS_RETRY_S``) and the job ends ``succeeded``, exactly once."""

from __future__ import annotations

import os
import time
from pathlib import Path

import redis

from tests.conftest import free_port, spawn, start_api, stop_process
from tests.test_faults import SLEEPY, WAIT_S, submit, wait_status
from visionq.embedded_redis import server_command, wait_ready


def test_redis_restart_while_a_job_runs_loses_nothing(test_worker, tmp_path: Path) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    command = server_command(port, tmp_path / "redis")  # AOF on, as `visionq up` runs it
    server = spawn("redis-midjob", command, dict(os.environ))
    wait_ready(url, WAIT_S, server)
    api_url, api_process = start_api(url, "api-redis-midjob")
    try:
        test_worker(url, "classify", "redis-midjob", **SLEEPY)
        job_id = submit(api_url, {"sleep": 2})
        wait_status(url, job_id, {"running"}, WAIT_S)
        stop_process(server)  # the job is still sleeping: its outcome write will fail
        time.sleep(3)
        server = spawn("redis-midjob", command, dict(os.environ))
        wait_ready(url, WAIT_S, server)
        job = wait_status(url, job_id, {"succeeded", "failed"}, WAIT_S)
        assert job["status"] == "succeeded", job
        assert redis.Redis.from_url(url).exists(job["blob"]) == 0
    finally:
        stop_process(api_process)
        stop_process(server)
