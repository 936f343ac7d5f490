"""Fault tests with real processes: a killed worker, a restarted Redis, a restarted API,
a warm shutdown under load, poison images, duplicate deliveries.  Each ends by checking
that every accepted job reached exactly one final state.

The workers here run the test-only ``SleepyModel`` (tests/workers/sleepy_model.py) on the
``classify`` queue, so a job can be made slow, hang or raise on demand.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from tests.conftest import ARTIFACTS, log_tail, spawn, start_api, stop_process
from tests.workers.sleepy_model import (
    CRASH_WIDTH,
    HANG_WIDTH,
    RAISE_WIDTH,
    STUBBORN_WIDTH,
    image_bytes,
)
from visionq.embedded_redis import server_command, wait_ready
from visionq.jobs import JobStore
from visionq.keys import BUSY_KEY

IMAGE = image_bytes(20)
SLEEPY = {"VISIONQ_MODEL_CLASSIFY": "tests.workers.sleepy_model:SleepyModel"}
WAIT_S = 120
"""Bound of the waits for a job's state: generous for a loaded machine; each wait polls and
returns as soon as the state is reached."""
SHORT_LIMITS = {"VISIONQ_SOFT_TIME_LIMIT_S": "4", "VISIONQ_HARD_TIME_LIMIT_S": "6",
                "VISIONQ_VISIBILITY_TIMEOUT_S": "8"}


@pytest.fixture()
def fault_url(redis_server) -> Iterator[str]:
    """DB 6 of the session Redis: only this test's workers consume it."""
    url = f"redis://127.0.0.1:{redis_server[0]}/6"
    redis.Redis.from_url(url).flushdb()
    yield url
    redis.Redis.from_url(url).flushdb()


def submit(api: str, behaviour: dict | None = None, task: str = "classify") -> str:
    """Submit an image that tells SleepyModel what to do: {"sleep": s}, {"raise": 1},
    {"hang": 1}."""
    behaviour = behaviour or {}
    if "raise" in behaviour:
        image = image_bytes(RAISE_WIDTH)
    elif "hang" in behaviour:
        image = image_bytes(HANG_WIDTH)
    elif "crash" in behaviour:
        image = image_bytes(CRASH_WIDTH)
    elif "stubborn" in behaviour:
        image = image_bytes(STUBBORN_WIDTH)
    elif behaviour.get("sleep"):
        image = image_bytes(int(behaviour["sleep"] * 100))
    else:
        image = image_bytes(20)
    response = requests.post(f"{api}/v1/jobs", params={"task": task},
                             files={"image": ("i.png", image)}, timeout=10)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def wait_status(url: str, job_id: str, statuses: set[str], timeout_s: float) -> dict:
    store = JobStore(redis.Redis.from_url(url), 3600)
    deadline = time.monotonic() + timeout_s
    while True:
        job = store.get(job_id)
        if job and job.status in statuses:
            return job.__dict__
        assert time.monotonic() < deadline, f"job {job_id} stuck at {job and job.status}"
        time.sleep(0.05)


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


@pytest.fixture()
def api(fault_url: str) -> Iterator[str]:
    url, process = start_api(fault_url, "api-faults")
    yield url
    stop_process(process)


def test_killed_pool_child_job_is_redelivered_and_runs_once(test_worker, fault_url, api):
    # An hour of visibility timeout: a job that came back through it would not be back
    # within the wait below, so finishing proves the immediate redelivery.
    worker = test_worker(fault_url, "classify", "kill-child", **SLEEPY,
                         VISIONQ_VISIBILITY_TIMEOUT_S="3600")
    job_id = submit(api, {"sleep": 3})
    wait_status(fault_url, job_id, {"running"}, WAIT_S)
    [child] = children(worker.pid)
    os.kill(child, signal.SIGKILL)
    job = wait_status(fault_url, job_id, {"succeeded", "failed"}, WAIT_S)
    assert job["status"] == "succeeded" and job["attempts"] == 2
    assert worker.poll() is None


def test_killed_worker_job_comes_back_after_visibility_timeout(test_worker, fault_url, api):
    first = test_worker(fault_url, "classify", "kill-all", **SLEEPY, **SHORT_LIMITS)
    job_id = submit(api, {"sleep": 2})
    wait_status(fault_url, job_id, {"running"}, WAIT_S)
    os.killpg(first.pid, signal.SIGKILL)  # the whole node dies: main process and pool
    first.wait()
    test_worker(fault_url, "classify", "survivor", **SLEEPY, **SHORT_LIMITS)
    job = wait_status(fault_url, job_id, {"succeeded", "failed"}, WAIT_S)
    assert job["status"] == "succeeded" and job["attempts"] == 2
    assert job["worker"] == "survivor@testhost"


def test_warm_shutdown_finishes_in_flight_work_and_loses_nothing(test_worker, fault_url, api):
    worker = test_worker(fault_url, "classify", "warm", concurrency=2, **SLEEPY)
    ids = [submit(api, {"sleep": 1}) for _ in range(8)]
    wait_status(fault_url, ids[0], {"running", "succeeded"}, WAIT_S)
    os.kill(worker.pid, signal.SIGTERM)  # scale-in: Celery's warm shutdown
    worker.wait(WAIT_S)
    assert worker.returncode == 0
    store = JobStore(redis.Redis.from_url(fault_url), 3600)
    assert not [i for i in ids if store.get(i).status == "running"], "in-flight job abandoned"
    test_worker(fault_url, "classify", "warm-2", concurrency=2, **SLEEPY)
    jobs = [wait_status(fault_url, i, {"succeeded", "failed"}, WAIT_S) for i in ids]
    assert [j["status"] for j in jobs] == ["succeeded"] * len(ids)
    assert all(j["attempts"] == 1 for j in jobs), "a finished job ran twice"


def test_poison_jobs_fail_with_a_reason_and_the_worker_lives(test_worker, fault_url, api):
    worker = test_worker(fault_url, "classify", "poison", **SLEEPY, **SHORT_LIMITS)
    raising = submit(api, {"raise": 1})
    hanging = submit(api, {"hang": 1})
    fine = submit(api, {"sleep": 0})
    job = wait_status(fault_url, raising, {"succeeded", "failed"}, WAIT_S)
    assert job["status"] == "failed" and job["code"] == "inference_error"
    assert "model exploded" in job["error"]
    job = wait_status(fault_url, hanging, {"succeeded", "failed"}, WAIT_S)
    assert job["status"] == "failed" and job["code"] == "timeout"
    assert wait_status(fault_url, fine, {"succeeded", "failed"}, WAIT_S)["status"] == "succeeded"
    assert worker.poll() is None


def test_hard_time_limit_fails_the_job_and_replaces_the_child(test_worker, fault_url, api):
    # A job that ignores the soft limit (stuck in C code) gets its pool child killed at the
    # hard limit; the job fails with a reason and the next job runs in a new child.
    env = {**SLEEPY, "VISIONQ_SOFT_TIME_LIMIT_S": "1", "VISIONQ_HARD_TIME_LIMIT_S": "2",
           "VISIONQ_VISIBILITY_TIMEOUT_S": "4"}
    worker = test_worker(fault_url, "classify", "hard", **env)
    job_id = submit(api, {"stubborn": 1})
    job = wait_status(fault_url, job_id, {"succeeded", "failed"}, WAIT_S)
    assert job["status"] == "failed" and job["code"] == "timeout", job
    assert "hard time limit" in job["error"]
    after = submit(api, {"sleep": 0})
    assert wait_status(fault_url, after, {"succeeded", "failed"}, WAIT_S)["status"] == "succeeded"
    assert worker.poll() is None


def test_a_job_that_keeps_killing_its_worker_ends_as_poison(test_worker, fault_url, api):
    worker = test_worker(fault_url, "classify", "crash", **SLEEPY)
    job_id = submit(api, {"crash": 1})
    job = wait_status(fault_url, job_id, {"succeeded", "failed"}, WAIT_S)
    assert job["status"] == "failed" and job["code"] == "poison_job", job
    assert job["attempts"] == 4  # 3 deaths, then refused
    after = submit(api, {"sleep": 0})
    assert wait_status(fault_url, after, {"succeeded", "failed"}, WAIT_S)["status"] == "succeeded"
    assert worker.poll() is None


def test_duplicate_delivery_produces_one_result(test_worker, fault_url, api):
    from tasks import enqueue, make_celery
    from visionq.settings import Settings

    test_worker(fault_url, "classify", "dupe", **SLEEPY)
    job_id = submit(api, {"sleep": 0})
    first = wait_status(fault_url, job_id, {"succeeded"}, WAIT_S)
    producer = make_celery(Settings(redis_url=fault_url))
    enqueue(producer, "classify", job_id)  # the same message again, as after a lost ack
    enqueue(producer, "classify", job_id)
    # Until the worker has run both copies (Celery logs each run of the task id), then the
    # record must be the first run's.
    log = ARTIFACTS / "worker-dupe.log"
    deadline = time.monotonic() + WAIT_S
    while log.read_text(errors="replace").count(f"[{job_id}] succeeded in") < 3:
        assert time.monotonic() < deadline, f"duplicates not run:\n{log_tail('worker-dupe')}"
        time.sleep(0.1)
    again = wait_status(fault_url, job_id, {"succeeded"}, 5)
    assert again["finished_at"] == first["finished_at"] and again["result"] == first["result"]
    assert again["attempts"] == 1


def test_restarting_the_api_keeps_jobs_resolvable(test_worker, fault_url):
    test_worker(fault_url, "classify", "api-restart", **SLEEPY)
    url, process = start_api(fault_url, "api-restart-1")
    ids = [submit(url, {"sleep": 0.2}) for _ in range(5)]
    stop_process(process)
    url, process = start_api(fault_url, "api-restart-2")
    try:
        for job_id in ids:
            job = requests.get(f"{url}/v1/jobs/{job_id}?wait=20", timeout=30).json()
            assert job["status"] == "succeeded"
    finally:
        stop_process(process)


def test_redis_restart_loses_no_job_and_the_api_recovers(test_worker, tmp_path: Path):
    from tests.conftest import free_port

    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    command = server_command(port, tmp_path / "redis")  # AOF on, as `visionq up` runs it
    server = spawn("redis-restart", command, dict(os.environ))
    wait_ready(url, WAIT_S, server)
    api_url, api_process = start_api(url, "api-redis-restart")
    try:
        test_worker(url, "classify", "redis-restart", **SLEEPY)
        queued = [submit(api_url, {"sleep": 0.5}) for _ in range(6)]
        wait_status(url, queued[0], {"running", "succeeded"}, WAIT_S)
        stop_process(server)  # SIGTERM: Redis flushes its AOF and exits
        down = requests.post(f"{api_url}/v1/jobs?task=classify",
                             files={"image": ("i.jpg", IMAGE)}, timeout=30)
        assert down.status_code == 503 and down.json()["code"] == "redis_unavailable"
        assert down.headers["Retry-After"]
        time.sleep(2)
        server = spawn("redis-restart", command, dict(os.environ))
        wait_ready(url, WAIT_S, server)
        after = []
        deadline = time.monotonic() + WAIT_S
        while len(after) < 2:  # the API recovers by itself, no restart
            response = requests.post(f"{api_url}/v1/jobs?task=classify",
                                     files={"image": ("i.jpg", IMAGE)}, timeout=30)
            if response.status_code == 202:
                after.append(response.json()["id"])
            assert time.monotonic() < deadline, response.text
        for job_id in queued + after:
            job = wait_status(url, job_id, {"succeeded", "failed"}, WAIT_S)
            assert job["status"] == "succeeded", job
    finally:
        stop_process(api_process)
        stop_process(server)


# -- claiming (workers.claim): a delivery that takes more jobs from a deep queue ----------

def _log(name: str) -> str:
    """Worker ``name``'s log since its last start (the file collects every run's)."""
    text = (ARTIFACTS / f"worker-{name}.log").read_text(errors="replace")
    return text[text.rfind(f"{name}@testhost ready."):]


def _claims(name: str) -> int:
    """How many times worker ``name``'s deliveries claimed more jobs (its log says so)."""
    return _log(name).count(" claimed classify job(s)")


def _no_traces(url: str) -> None:
    """Every claimed message was acked or given back: nothing unacked, no ledger left."""
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + WAIT_S
    while client.hlen("unacked") or client.keys("visionq:claimed:*") or [
            m for m in client.zrange(BUSY_KEY, 0, -1) if m.endswith(b"+claimed")]:
        assert time.monotonic() < deadline, (client.hkeys("unacked"),
                                             client.keys("visionq:claimed:*"),
                                             client.zrange(BUSY_KEY, 0, -1))
        time.sleep(0.1)


def test_a_deep_queue_is_claimed_and_every_job_runs_once(test_worker, fault_url, api):
    ids = [submit(api, {"sleep": 0}) for _ in range(12)]  # queued before any worker
    test_worker(fault_url, "classify", "claim", **SLEEPY)
    jobs = [wait_status(fault_url, i, {"succeeded", "failed"}, WAIT_S) for i in ids]
    assert [j["status"] for j in jobs] == ["succeeded"] * len(ids)
    assert all(j["attempts"] == 1 for j in jobs)
    assert _claims("claim") >= 1
    received = _log("claim").count("] received")
    assert received < len(ids), "every job was its own Celery delivery: nothing claimed"
    _no_traces(fault_url)


def test_claiming_off_makes_every_job_its_own_delivery(test_worker, fault_url, api):
    ids = [submit(api, {"sleep": 0}) for _ in range(6)]
    test_worker(fault_url, "classify", "no-claim", VISIONQ_CLAIM_MAX="1", **SLEEPY)
    for job_id in ids:
        assert wait_status(fault_url, job_id, {"succeeded", "failed"}, WAIT_S)["status"] \
            == "succeeded"
    assert _claims("no-claim") == 0


def test_a_killed_child_gives_its_claimed_jobs_back_at_once(test_worker, fault_url, api):
    # An hour of visibility timeout: only the immediate give-back can bring them back.
    first = submit(api, {"sleep": 0})
    slow = submit(api, {"sleep": 5})
    rest = [submit(api, {"sleep": 0}) for _ in range(2)]
    worker = test_worker(fault_url, "classify", "claim-kill", **SLEEPY,
                         VISIONQ_VISIBILITY_TIMEOUT_S="3600")
    wait_status(fault_url, slow, {"running"}, WAIT_S)
    assert redis.Redis.from_url(fault_url).hlen(f"visionq:claimed:{first}") == 1  # claimed
    [child] = children(worker.pid)
    os.kill(child, signal.SIGKILL)
    jobs = {i: wait_status(fault_url, i, {"succeeded", "failed"}, WAIT_S)
            for i in [first, slow, *rest]}
    assert all(j["status"] == "succeeded" for j in jobs.values()), jobs
    assert jobs[first]["attempts"] == 1 and jobs[slow]["attempts"] == 2
    assert [jobs[i]["attempts"] for i in rest] == [1, 1]
    assert worker.poll() is None
    _no_traces(fault_url)


def test_a_claimed_job_gets_time_limits_of_its_own(test_worker, fault_url, api):
    # Claimed by the first job's delivery, the stubborn job (deaf to the soft limit) gets
    # the child killed at that delivery's hard limit: it is given back with the jobs behind
    # it, and fails with "timeout" only at the hard limit of a delivery of its own.  The
    # hanging one fails at a soft limit of its own; the job behind them is not held up.
    env = {**SLEEPY, "VISIONQ_SOFT_TIME_LIMIT_S": "2", "VISIONQ_HARD_TIME_LIMIT_S": "3",
           "VISIONQ_VISIBILITY_TIMEOUT_S": "3600"}
    first = submit(api, {"sleep": 0})
    stubborn = submit(api, {"stubborn": 1})
    hanging = submit(api, {"hang": 1})
    fine = submit(api, {"sleep": 0})
    worker = test_worker(fault_url, "classify", "claim-limits", **env)
    assert wait_status(fault_url, first, {"succeeded", "failed"}, WAIT_S)["status"] \
        == "succeeded"
    job = wait_status(fault_url, stubborn, {"succeeded", "failed"}, WAIT_S)
    assert job["status"] == "failed" and job["code"] == "timeout", job
    assert "hard time limit" in job["error"] and job["attempts"] == 2, job  # claimed, then own
    job = wait_status(fault_url, hanging, {"succeeded", "failed"}, WAIT_S)
    assert job["status"] == "failed" and job["code"] == "timeout", job
    assert "time limit of 2 s" in job["error"], job
    assert wait_status(fault_url, fine, {"succeeded", "failed"}, WAIT_S)["status"] \
        == "succeeded"
    assert _claims("claim-limits") >= 1
    assert worker.poll() is None
    _no_traces(fault_url)
