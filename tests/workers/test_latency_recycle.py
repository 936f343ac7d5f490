"""A worker of a latency-critical queue keeps its pool process (issue 26): replacing it by
job count made the detect worker load its model again every 1,000 frames, a burst of late
frames each time.  Real workers, a real Redis, jobs through the API."""

from __future__ import annotations

import io

import redis
from PIL import Image

from api import create_app
from tests.conftest import WorkerFactory
from visionq.jobs import FINAL_STATUSES, JobStore
from workers.delivery import ClaimBudget
from workers.latency import keeps_children

JOBS = 12
RECYCLE_AFTER = "3"


def test_keeps_children_only_for_critical_queues() -> None:
    assert keeps_children(["detect"], ["detect"])
    assert keeps_children(["detect", "face"], ["detect"])
    assert not keeps_children(["face"], ["detect"])
    assert not keeps_children(["detect"], [])


def test_a_kept_child_claims_past_the_count() -> None:
    budget = ClaimBudget(jobs_run=5)
    assert not budget.may_claim(3)
    budget.recycled = False
    assert budget.may_claim(3)


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (80, 80, 80)).save(out, "PNG")  # narrow: SleepyModel is quick
    return out.getvalue()


def _pids(redis_url: str, task: str) -> set[int]:
    client = create_app({"redis_url": redis_url}).test_client()
    ids = []
    for _ in range(JOBS):
        response = client.post(f"/v1/jobs?task={task}", data={"image": (io.BytesIO(_png()),
                                                                          "x.png")},
                               content_type="multipart/form-data")
        assert response.status_code == 202, response.get_json()
        ids.append(response.get_json()["id"])
    store = JobStore(redis.Redis.from_url(redis_url), 3600)
    jobs = [store.wait(job_id, 180) for job_id in ids]
    assert all(j is not None and j.status in FINAL_STATUSES for j in jobs), jobs
    assert [j.status for j in jobs] == ["succeeded"] * JOBS, [(j.status, j.error) for j in jobs]
    return {j.result["pid"] for j in jobs}


def test_a_latency_critical_worker_keeps_its_pool_process(test_worker: WorkerFactory,
                                                          own_redis: str) -> None:
    # The test model serves classify: mark that queue critical, as detect is by default.
    test_worker(own_redis, "classify", "classify-kept", concurrency=1,
                VISIONQ_MODEL_CLASSIFY="tests.workers.sleepy_model:SleepyModel",
                VISIONQ_LATENCY_QUEUES="classify",
                VISIONQ_WORKER_MAX_TASKS_PER_CHILD=RECYCLE_AFTER, VISIONQ_CLAIM_MAX="1")
    assert len(_pids(own_redis, "classify")) == 1  # 12 jobs, one pool process


def test_a_heavy_worker_still_replaces_its_pool_process(test_worker: WorkerFactory,
                                                        own_redis: str) -> None:
    test_worker(own_redis, "classify", "classify-recycled", concurrency=1,
                VISIONQ_MODEL_CLASSIFY="tests.workers.sleepy_model:SleepyModel",
                VISIONQ_LATENCY_QUEUES="detect",
                VISIONQ_WORKER_MAX_TASKS_PER_CHILD=RECYCLE_AFTER, VISIONQ_CLAIM_MAX="1")
    assert len(_pids(own_redis, "classify")) >= JOBS // int(RECYCLE_AFTER)  # replaced every 3
