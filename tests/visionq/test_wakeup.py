"""The API process's one wake-up listener (``visionq.wakeup``) across a Redis restart: a
thread already waiting when Redis goes away, and one that starts waiting while it is down,
both see their job finish once Redis is back."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import redis

from tests.conftest import free_port, spawn, stop_process
from visionq.embedded_redis import server_command, wait_ready
from visionq.jobs import FINAL_STATUSES, JobStore
from visionq.wakeup import DoneListener

DEADLINE_S = 120.0


def _wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_listener_survives_a_redis_restart(tmp_path: Path) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    command = server_command(port, tmp_path / "redis")  # AOF on: records survive
    server = spawn("redis-wakeup", command, dict(os.environ))
    wait_ready(url, DEADLINE_S, server)
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    listener = DoneListener(client)
    store = JobStore(client, ttl_s=600, listener=listener)
    results: dict[str, str] = {}

    def waiter(job_id: str) -> None:
        job = store.wait(job_id, DEADLINE_S)
        results[job_id] = job.status if job is not None else "missing"

    try:
        first = store.create("face", "k1")
        second = store.create("face", "k2")
        early = threading.Thread(target=waiter, args=(first.id,))
        early.start()
        _wait_until(lambda: listener.ready and listener.waiting() == 1, "the first waiter")
        client.execute_command("BGREWRITEAOF")
        stop_process(server)
        _wait_until(lambda: not listener.ready, "the listener to notice")
        late = threading.Thread(target=waiter, args=(second.id,))
        late.start()
        server = spawn("redis-wakeup", command, dict(os.environ))
        wait_ready(url, DEADLINE_S, server)
        _wait_until(lambda: listener.ready, "the listener to reconnect")
        for job in (first, second):
            store.start(job.id, "w")
            store.succeed(job.id, {"ok": True})
        early.join(DEADLINE_S)
        late.join(DEADLINE_S)
        assert results == {first.id: "succeeded", second.id: "succeeded"}
        assert all(store.get(j.id).status in FINAL_STATUSES for j in (first, second))
        assert listener.waiting() == 0
    finally:
        listener.stop()
        stop_process(server)
