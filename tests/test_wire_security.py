"""No pickle on the wire: a real worker refuses a pickle-serialised Celery message (the
job never runs, the worker lives on and keeps working), and the live worker's
configuration accepts JSON only."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis

from tests.conftest import BIN, REPO, log_tail, service_env
from tests.workers.sleepy_model import image_bytes
from visionq.blobstore import blob_store_from_url
from visionq.jobs import JobStore

SLEEPY = {"VISIONQ_MODEL_CLASSIFY": "tests.workers.sleepy_model:SleepyModel"}
WAIT_S = 120
"""Bound of the waits below; each returns as soon as its condition holds."""


@pytest.fixture()
def wire_url(redis_server) -> Iterator[str]:
    """DB 9 of the session Redis: only this test's worker consumes it."""
    url = f"redis://127.0.0.1:{redis_server[0]}/9"
    redis.Redis.from_url(url).flushdb()
    yield url
    redis.Redis.from_url(url).flushdb()


def _job(conn: redis.Redis) -> str:
    blob = blob_store_from_url("redis://", conn, 3600, None).put(image_bytes(20))
    return JobStore(conn, 3600).create("classify", blob).id


def test_worker_refuses_pickle_messages(test_worker, wire_url: str) -> None:
    from tasks import TASK_NAMES, enqueue, make_celery
    from visionq.settings import Settings

    worker = test_worker(wire_url, "classify", "wire", **SLEEPY)
    conn = redis.Redis.from_url(wire_url)
    store = JobStore(conn, 3600)
    producer = make_celery(Settings(redis_url=wire_url))

    pickled = _job(conn)
    producer.send_task(TASK_NAMES["classify"], args=[pickled], task_id=pickled,
                  serializer="pickle", ignore_result=True)

    honest = _job(conn)
    enqueue(producer, "classify", honest)
    done = store.wait(honest, WAIT_S)
    assert done is not None and done.status == "succeeded", done

    deadline = time.monotonic() + WAIT_S
    while "untrusted content" not in log_tail("worker-wire", 200):
        assert time.monotonic() < deadline, log_tail("worker-wire")
        time.sleep(0.2)
    refused = store.get(pickled)
    assert refused is not None and refused.status == "queued" and refused.attempts == 0
    deadline = time.monotonic() + WAIT_S  # the honest job is acked just after it is recorded
    while conn.hlen("unacked") and time.monotonic() < deadline:
        time.sleep(0.1)
    leftover = [json.loads(m)[0]["headers"]["id"] for m in conn.hvals("unacked")]
    assert conn.llen("classify") == 0 and leftover == [], "refused and dropped, not redelivered"
    assert worker.poll() is None


def test_live_worker_config_accepts_json_only(test_worker, wire_url: str) -> None:
    from tasks.app import app

    assert app.conf.accept_content == ["json"] and app.conf.task_serializer == "json"
    assert app.conf.result_accept_content == ["json"]
    test_worker(wire_url, "classify", "wireconf", **SLEEPY)
    out = subprocess.run(
        [str(BIN / "celery"), "-A", "tasks", "inspect", "conf", "-d", "wireconf@testhost",
         "--json", "--timeout", "10"],
        env=service_env(wire_url), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    conf = json.loads(out.stdout)["wireconf@testhost"]
    assert conf["accept_content"] == ["json"], conf.get("accept_content")
    assert conf["task_serializer"] == "json" and conf["result_serializer"] == "json"
