"""A burst far beyond capacity against the real stack (gunicorn API, a real worker): the
API sheds load with 503 ``queue_full`` + ``Retry-After`` instead of queueing without
bound, and nothing it accepted (202) is dropped — every accepted job succeeds, once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests

from tests.conftest import start_api, stop_process
from tests.workers.sleepy_model import image_bytes
from visionq.jobs import FINAL_STATUSES, JobStore

SLEEPY = {"VISIONQ_MODEL_CLASSIFY": "tests.workers.sleepy_model:SleepyModel"}
BACKLOG = 5
BURST = 120
IMAGE = image_bytes(20)  # SleepyModel: fast (no sleep)
SLOW_IMAGE = image_bytes(150)  # 1.5 s: the worker is busy while the burst arrives


@pytest.fixture()
def burst_url(redis_server) -> Iterator[str]:
    """DB 8 of the session Redis: only this test's worker consumes it."""
    url = f"redis://127.0.0.1:{redis_server[0]}/8"
    redis.Redis.from_url(url).flushdb()
    yield url
    redis.Redis.from_url(url).flushdb()


def _post(api: str, image: bytes) -> requests.Response:
    return requests.post(f"{api}/v1/jobs?task=classify", files={"image": ("i.png", image)},
                         timeout=30)


def test_burst_beyond_capacity_sheds_load_and_drops_nothing(test_worker, burst_url: str) -> None:
    worker = test_worker(burst_url, "classify", "burst", **SLEEPY)
    api, process = start_api(burst_url, "api-burst",
                             VISIONQ_MAX_BACKLOG_CLASSIFY=str(BACKLOG))
    try:
        first = _post(api, SLOW_IMAGE)
        assert first.status_code == 202
        with ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(lambda _: _post(api, IMAGE), range(BURST)))
    finally:
        stop_process(process)

    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {202, 503}, statuses
    shed = [r for r in responses if r.status_code == 503]
    accepted = [first.json()["id"]] + [r.json()["id"] for r in responses if r.status_code == 202]
    assert len(shed) >= BURST // 2, f"only {len(shed)} of {BURST} shed with a backlog of {BACKLOG}"
    assert len(accepted) >= BACKLOG
    for response in shed:
        body = response.json()
        assert body["success"] is False and body["code"] == "queue_full", body
        assert int(response.headers["Retry-After"]) > 0

    store = JobStore(redis.Redis.from_url(burst_url), 3600)
    deadline = time.monotonic() + 180  # each wait returns once its job is final
    jobs = [store.wait(job_id, max(0.1, deadline - time.monotonic())) for job_id in accepted]
    assert [j.status if j else None for j in jobs] == ["succeeded"] * len(accepted), [
        (j.status, j.code) for j in jobs if j]
    assert all(j.status in FINAL_STATUSES and j.attempts == 1 for j in jobs)
    assert worker.poll() is None
