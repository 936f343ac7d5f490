"""The local backend end to end: flood a queue with real jobs, the autoscaler starts real
Celery workers, the backlog drains, the workers are warm-stopped, and every job completed
exactly once."""

from __future__ import annotations

import sys
import time

import pytest
import redis
import requests

from autoscale.backends.local import LocalBackend
from autoscale.loop import Controller
from autoscale.policy import Policy, PoolPolicy
from autoscale.rates import ArrivalRates
from tests.conftest import REPO, service_env, start_api, stop_process
from tests.workers.sleepy_model import image_bytes
from visionq.jobs import JobStore

JOBS = 24
JOB_SECONDS = 1.0


@pytest.mark.timeout(900)  # above the loop's own deadline, so a failure says what it saw
def test_flood_scale_out_drain_scale_in_exactly_once(redis_server) -> None:
    url = f"redis://127.0.0.1:{redis_server[0]}/7"
    conn = redis.Redis.from_url(url)
    conn.flushdb()
    api, api_process = start_api(url, "api-autoscale-e2e")
    env = service_env(url, VISIONQ_MODEL_CLASSIFY="tests.workers.sleepy_model:SleepyModel")
    command = [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", "{queue}",
               "-c", "1", "-n", "auto-{queue}-{index}@testhost", "--without-mingle",
               "--without-gossip", "--loglevel", "WARNING"]
    backend = LocalBackend(["classify"], command=command, env=env, cwd=str(REPO))
    policy = Policy(default=PoolPolicy(
        target_backlog_seconds=2, max_workers=3, stabilization_seconds=4, boot_seconds=3,
        max_step_down=3, default_service_time=JOB_SECONDS))
    # Scale to zero 10 s after the last arrival (the default waits 2 minutes).
    controller = Controller(conn, backend, ["classify"], policy,
                            rates=ArrivalRates(quiet_seconds=10))
    try:
        image = image_bytes(int(JOB_SECONDS * 100))  # SleepyModel: width/100 seconds
        ids = []
        for _ in range(JOBS):
            response = requests.post(f"{api}/v1/jobs?task=classify",
                                     files={"image": ("i.png", image)}, timeout=10)
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])
        store = JobStore(conn, 3600)
        sizes: list[int] = []
        deadline = time.monotonic() + 600  # real Celery workers boot slowly on a busy machine
        while True:
            decision = controller.tick()
            sizes.append(decision.desired["classify"])
            done = all(store.get(i).status in ("succeeded", "failed") for i in ids)
            if done and decision.desired["classify"] == 0 and not backend.workers:
                break
            assert time.monotonic() < deadline, (
                f"no convergence: sizes {sizes}; statuses "
                f"{sorted(str(store.get(i).status) for i in ids)}; workers "
                f"{list(backend.workers)}; last decision {decision}")
            time.sleep(1)
        assert max(sizes) >= 2, f"never scaled out: {sizes}"
        assert sizes[-1] == 0
        jobs = [store.get(i) for i in ids]
        assert [j.status for j in jobs] == ["succeeded"] * JOBS
        assert all(j.attempts == 1 for j in jobs), "a job ran twice"
        assert len({j.worker for j in jobs}) >= 2, "the work was not spread over new workers"
    finally:
        leftover = backend.close(timeout=120)
        stop_process(api_process)
        conn.flushdb()
        assert not leftover
