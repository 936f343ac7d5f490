"""Sharding by queue end to end: two Redis servers of this test's own, the API under
gunicorn, a ``classify`` worker on the main Redis and a ``detect`` worker on the second
(``VISIONQ_REDIS_URL_DETECT``), the real models.

Each job's Celery message, record and image must be on its queue's Redis and not on the
other; both complete; the API finds them by id (GET, long-poll, DeepStack), lists both,
reports both Redis servers in ``/readyz``; the exporter and the autoscaler read the
detect backlog from the second Redis; a worker on the wrong broker stops at start."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests

from autoscale.loop import sharded_snapshot
from monitoring.collector import BrokerCollector
from monitoring.metrics import QUEUE_LENGTH
from tests.conftest import BIN, FIXTURES, REPO, WorkerFactory, service_env, spawn, start_api
from tests.helpers import free_port, stop_process
from visionq.client import StreamClient
from visionq.embedded_redis import server_command, wait_ready
from visionq.history import HistoryStore
from visionq.jobs import JobStore
from visionq.keys import COUNTS_KEY
from visionq.shards import redact
from visionq.wakeup import DoneListener

DEADLINE_S = 120
"""Bound of every wait: generous for a busy 2-core machine; each returns once true."""
CLASSIFY_IMAGE = (FIXTURES / "classify" / "caffe_cat.jpg").read_bytes()
DETECT_IMAGE = (FIXTURES / "detect" / "images" / "000000000025.jpg").read_bytes()


def start_redis(name: str) -> tuple[str, subprocess.Popen]:
    port = free_port()
    process = spawn(f"{name}-{port}", server_command(port, None, persistent=False),
                    service_env(""))
    url = f"redis://127.0.0.1:{port}/0"
    wait_ready(url, DEADLINE_S, process)
    return url, process


@pytest.fixture(scope="module")
def two_redis() -> Iterator[tuple[str, str]]:
    main_url, main = start_redis("redis-shard-main")
    second_url, second = start_redis("redis-shard-detect")
    yield main_url, second_url
    stop_process(main)
    stop_process(second)


@pytest.fixture(scope="module")
def sharded_api(two_redis: tuple[str, str]) -> Iterator[str]:
    main_url, second_url = two_redis
    url, process = start_api(main_url, "api-sharded", VISIONQ_REDIS_URL_DETECT=second_url)
    yield url
    stop_process(process)


def submit(api: str, task: str, image: bytes) -> str:
    response = requests.post(f"{api}/v1/jobs", params={"task": task},
                             files={"image": ("img.jpg", image)}, timeout=30)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def until(condition: Any, what: str) -> Any:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def message_ids(conn: redis.Redis, queue: str) -> list[str]:
    return [json.loads(raw)["headers"]["id"] for raw in conn.lrange(queue, 0, -1)]


def blob_of(conn: redis.Redis, job_id: str) -> str:
    return conn.hget(f"visionq:job:{job_id}", "blob").decode()


def test_each_queue_on_its_own_redis(two_redis: tuple[str, str], sharded_api: str,
                                     test_worker: WorkerFactory) -> None:
    main_url, second_url = two_redis
    main, second = redis.Redis.from_url(main_url), redis.Redis.from_url(second_url)
    api = sharded_api

    # -- queued, no worker yet: everything of a job on its queue's Redis, none elsewhere --
    classify_id = submit(api, "classify", CLASSIFY_IMAGE)
    detect_id = submit(api, "detect", DETECT_IMAGE)
    revoked_id = submit(api, "detect", DETECT_IMAGE)
    assert message_ids(main, "classify") == [classify_id]
    assert message_ids(second, "detect") == [revoked_id, detect_id]  # LPUSH: newest first
    assert message_ids(main, "detect") == [] and message_ids(second, "classify") == []
    assert main.exists(f"visionq:job:{classify_id}") and not second.exists(
        f"visionq:job:{classify_id}")
    for job_id in (detect_id, revoked_id):
        assert second.exists(f"visionq:job:{job_id}") and not main.exists(
            f"visionq:job:{job_id}")
    classify_blob, detect_blob = blob_of(main, classify_id), blob_of(second, detect_id)
    assert main.exists(classify_blob) and not second.exists(classify_blob)
    assert second.exists(detect_blob) and not main.exists(detect_blob)

    # -- the API finds a job by id on whichever Redis holds it -------------------------
    for job_id in (classify_id, detect_id):
        response = requests.get(f"{api}/v1/jobs/{job_id}", timeout=30)
        assert response.status_code == 200 and response.json()["status"] == "queued"
    stats = requests.get(f"{api}/v1/stats", timeout=30).json()["queues"]
    assert stats["detect"]["length"] == 2 and stats["classify"]["length"] == 1

    # -- revoke on the second Redis: the record fails there, its image is deleted there --
    revoked_blob = blob_of(second, revoked_id)
    response = requests.delete(f"{api}/v1/jobs/{revoked_id}", timeout=30)
    assert response.status_code == 200 and response.json()["code"] == "revoked"
    assert not second.exists(revoked_blob)

    # -- readers of queue state read each queue on its Redis ---------------------------
    collector = BrokerCollector(main, ["classify", "detect"], {}, {"detect": second})
    lengths = {s.labels["queue_name"]: s.value for family in collector.collect()
               if family.name == QUEUE_LENGTH for s in family.samples}
    assert lengths == {"classify": 1, "detect": 2}
    snap = sharded_snapshot(main, ["classify", "detect"], time.time(), {"detect": second})
    assert snap.backlog == {"classify": 1, "detect": 2}
    ready = requests.get(f"{api}/readyz", timeout=30).json()
    assert [(s["url"], s["queues"], s["redis"]) for s in ready["shards"]] == [
        (redact(main_url), ["face", "classify", "custom"], "ok"),
        (redact(second_url), ["detect"], "ok")]

    # -- a worker whose broker is not its queue's Redis stops at start -----------------
    wrong = subprocess.run(
        [str(BIN / "celery"), "-A", "tasks", "worker", "-Q", "detect", "-n",
         "wrong-broker@testhost", "--without-mingle", "--without-gossip"],
        env=service_env(main_url, VISIONQ_REDIS_URL_DETECT=second_url), cwd=REPO,
        capture_output=True, text=True, timeout=DEADLINE_S)
    assert wrong.returncode != 0
    assert "visionq worker refused to start: the detect queue lives on" in (
        wrong.stdout + wrong.stderr)
    spans = subprocess.run(
        [str(BIN / "visionq"), "worker", "--queues", "classify,detect"],
        env=service_env(main_url, VISIONQ_REDIS_URL_DETECT=second_url), cwd=REPO,
        capture_output=True, text=True, timeout=DEADLINE_S)
    assert spans.returncode == 2 and "span several Redis servers" in spans.stderr

    # -- the right workers: classify on the main Redis, detect on the second -----------
    shard_env = {"VISIONQ_REDIS_URL_DETECT": second_url}
    test_worker(main_url, "classify", "shard-classify", **shard_env)
    # What `visionq worker --queues detect` and `visionq up` set (celery's -b).
    test_worker(main_url, "detect", "shard-detect", CELERY_BROKER_URL=second_url, **shard_env)

    for job_id in (classify_id, detect_id):
        job = until(lambda job_id=job_id: _final(api, job_id), f"job {job_id}")
        assert job["status"] == "succeeded", job
    assert not second.exists(detect_blob) and not main.exists(classify_blob)
    ready = requests.get(f"{api}/readyz", params={"scope": "api"}, timeout=30)
    assert ready.status_code == 200  # no face worker here: the API's own readiness
    assert ready.json()["redis"] == "ok"
    assert ready.json()["workers"]["classify"] == 1 and ready.json()["workers"]["detect"] == 1

    # -- what the finishing script wrote stays with the job; readers merge the shards --
    assert int(second.hget(COUNTS_KEY, "detect:succeeded") or 0) >= 1
    assert main.hget(COUNTS_KEY, "detect:succeeded") is None
    assert int(main.hget(COUNTS_KEY, "classify:succeeded") or 0) == 1
    assert second.hget(COUNTS_KEY, "classify:succeeded") is None
    history = HistoryStore(os.environ["VISIONQ_HISTORY_URL"])  # the API's (tests.conftest)
    for job_id in (classify_id, detect_id, revoked_id):  # drained from both Redis servers
        until(lambda job_id=job_id: history.get(job_id), f"history of {job_id}")
    history.dispose()
    listed = requests.get(f"{api}/v1/jobs", params={"status": "succeeded"}, timeout=30)
    assert {classify_id, detect_id} <= {job["id"] for job in listed.json()["jobs"]}

    # -- a synchronous DeepStack call waits for its job on the second Redis ------------
    response = requests.post(f"{api}/v1/vision/detection",
                             files={"image": ("img.jpg", DETECT_IMAGE)}, timeout=DEADLINE_S)
    assert response.status_code == 200, response.text
    assert response.json()["success"] is True and response.json()["predictions"]

    # -- a stream's jobs are answered from their Redis too ------------------------------
    frames = list(StreamClient(api).run([("d", DETECT_IMAGE)], "detect"))
    assert [(f["ref"], f["status"]) for f in frames] == [("d", "succeeded")], frames
    assert second.exists(f"visionq:job:{frames[0]['id']}")


def _final(api: str, job_id: str) -> dict[str, Any] | None:
    """The job after one long-poll, if it is final."""
    job = requests.get(f"{api}/v1/jobs/{job_id}", params={"wait": 30}, timeout=60).json()
    return job if job["status"] in ("succeeded", "failed") else None



def test_the_wake_up_listener_hears_every_redis(two_redis: tuple[str, str]) -> None:
    """One ``DoneListener`` over both servers: ready once both subscriptions are confirmed,
    and a finish announced on either wakes its waiter."""
    clients = [redis.Redis.from_url(url) for url in two_redis]
    listener = DoneListener(clients)
    try:
        events = {index: listener.register(f"job-on-{index}") for index in (0, 1)}
        assert listener.wait_ready(DEADLINE_S) and listener.ready
        for index, client in enumerate(clients):
            events[index].clear()  # set by the subscriptions' confirmations
            assert client.publish(JobStore.channel(f"job-on-{index}"), "succeeded") >= 1
            assert events[index].wait(DEADLINE_S), f"no wake-up from Redis {index}"
    finally:
        listener.stop()
