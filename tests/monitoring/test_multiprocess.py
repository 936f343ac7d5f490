"""Counts are exact across processes: N jobs through 2 gunicorn workers and a worker with 2
prefork children show up as N in the API's /metrics and in the workers' exporter."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.monitoring.conftest import Stack
from tests.monitoring.live import enqueue_expired, scrape, submit, total, until, wait_final

N_JOBS = 8
SLO_S = 5.0  # VISIONQ_SLO_FACE of the monitored stack
RECORD_LAG_S = 1.0
"""How much later than ``finished_at`` a worker may take the time it compares with the SLO
(it records the job's metrics after finishing the job record and deleting the blob): a job
finished this close under its SLO may count either way on a loaded machine."""


def pids_with(directory: Path, kind: str) -> set[str]:
    return {m.group(1) for p in directory.iterdir()
            if (m := re.fullmatch(rf"{kind}_(\d+)\.db", p.name))}


def test_counts_are_exact_across_processes(monitored_stack: Stack) -> None:
    stack = monitored_stack
    api_before, workers_before = scrape(stack.api_url), scrape(stack.exporter_url)

    # 4 clients at once: a sync gunicorn worker serves one request at a time, so both
    # workers take submissions; 8 queued jobs keep both prefork children busy.
    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(lambda _: submit(stack.api_url), range(N_JOBS)))
        finished = list(pool.map(lambda job_id: wait_final(stack.api_url, job_id), ids))
    expired = wait_final(stack.api_url, enqueue_expired(stack.redis_url))
    assert {job["status"] for job in finished} == {"succeeded"}
    assert expired["code"] == "image_expired"
    totals_s = [job["timings"]["total_ms"] / 1000 for job in finished]
    good = sum(1 for t in totals_s if t <= SLO_S - RECORD_LAG_S)
    either = sum(1 for t in totals_s if SLO_S - RECORD_LAG_S < t <= SLO_S)

    # A worker counts a job after the job turns final, and Celery's task counters later
    # still (task_postrun): wait until the last of them has counted every job.
    def counted() -> list[tuple[str, dict[str, str], float]] | None:
        workers = scrape(stack.exporter_url)
        done = (total(workers, "celery_task_succeeded_total", queue_name="face")
                - total(workers_before, "celery_task_succeeded_total", queue_name="face"))
        return workers if done >= N_JOBS + 1 else None

    workers = until(counted, "the worker did not count every job")
    api = scrape(stack.api_url)

    def api_delta(name: str, **labels: str) -> float:
        return total(api, name, **labels) - total(api_before, name, **labels)

    def workers_delta(name: str, **labels: str) -> float:
        return total(workers, name, **labels) - total(workers_before, name, **labels)

    assert api_delta("visionq_jobs_submitted_total", task="face") == N_JOBS
    assert api_delta("visionq_http_requests_total", method="POST", route="/v1/jobs",
                     status="202") == N_JOBS
    assert api_delta("visionq_http_request_duration_seconds_count", method="POST",
                     route="/v1/jobs") == N_JOBS
    assert len(pids_with(stack.api_dir, "counter")) >= 2, "both gunicorn workers counted"

    completed = "visionq_jobs_completed_total"
    assert workers_delta(completed, task="face", outcome="succeeded", reason="none") == N_JOBS
    assert workers_delta(completed, task="face", outcome="failed", reason="expired") == 1
    # Exactly the jobs well within the SLO, plus any of those finished just under it.
    assert good <= workers_delta("visionq_jobs_within_slo_total", task="face") <= good + either
    assert workers_delta("celery_task_started_total", queue_name="face") == N_JOBS + 1
    assert workers_delta("celery_task_succeeded_total", queue_name="face") == N_JOBS + 1
    assert workers_delta("celery_task_runtime_count", queue_name="face") == N_JOBS + 1
    for stage in ("queue_wait", "inference", "end_to_end"):
        assert workers_delta("visionq_job_latency_seconds_count", task="face",
                             stage=stage) == N_JOBS + 1
    assert total(workers, "celery_worker_tasks_active") == 0
    assert total(workers, "visionq_model_load_seconds_count", task="face") >= 1
    assert len(pids_with(stack.workers_dir, "counter")) >= 2, "both prefork children counted"
    # The broker side, read from Redis at scrape time.
    assert total(workers, "celery_active_worker_count", queue_name="face") == 1
    assert total(workers, "celery_queue_length", queue_name="face") == 0
    assert total(workers, "visionq_redis_up") == 1
