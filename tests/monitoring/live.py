"""Helpers for the live-stack tests: submit jobs, scrape and sum exposition samples."""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable, Iterable
from typing import TypeVar

import redis
import requests
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families

from tasks.config import celery_config
from tests.conftest import FIXTURES
from visionq.jobs import JobStore
from visionq.settings import Settings

FACE = FIXTURES / "faces" / "obama-240p.jpg"
DEADLINE_S = 180.0
"""Bound of every wait on the live stack or on Prometheus: generous for a loaded 2-core
machine.  Each wait polls its condition and returns as soon as it holds, so an idle machine
never pays for it."""
T = TypeVar("T")


def until(condition: Callable[[], T], failure: str | Callable[[], str],
          timeout_s: float = DEADLINE_S, interval_s: float = 0.25) -> T:
    """Poll ``condition`` until it returns something true, and return that; fail with
    ``failure`` (or what it returns, for the latest state) once ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            message = failure() if callable(failure) else failure
            raise AssertionError(f"{message} (waited {timeout_s:g} s)")
        time.sleep(interval_s)


def scrape(url: str) -> list[tuple[str, dict[str, str], float]]:
    text = requests.get(f"{url}/metrics", timeout=10).text
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text)
            for s in family.samples]


def total(samples: Iterable[tuple[str, dict[str, str], float]], name: str,
          **labels: str) -> float:
    """Sum of ``name`` over every series whose labels include ``labels``."""
    return sum(v for n, lab, v in samples
               if n == name and all(lab.get(k) == want for k, want in labels.items()))


def submit(api_url: str, task: str = "face") -> str:
    with FACE.open("rb") as image:
        response = requests.post(f"{api_url}/v1/jobs", params={"task": task},
                                 files={"image": image}, timeout=30)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def wait_final(api_url: str, job_id: str, timeout_s: float = DEADLINE_S) -> dict:
    """The job once final.  Its metrics may not be counted yet: the worker records them
    after it has finished the job record, when the task has returned (``task_postrun``,
    ``workers.hooks_metrics``); wait on the counters themselves."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = requests.get(f"{api_url}/v1/jobs/{job_id}", params={"wait": 5}, timeout=30).json()
        if job["status"] in ("succeeded", "failed"):
            return job
    raise TimeoutError(f"job {job_id} did not finish")


def enqueue_expired(redis_url: str, task: str = "face") -> str:
    """A real job whose image is gone before a worker runs it (fails ``image_expired``)."""
    jobs = JobStore(redis.Redis.from_url(redis_url), 600)
    job = jobs.create(task, f"missing-{uuid.uuid4().hex}")
    producer(redis_url).send_task(f"visionq.{task}", args=[job.id], task_id=job.id)
    return job.id


@functools.cache
def producer(redis_url: str) -> Celery:
    """visionq's Celery configuration on ``redis_url``, without a result backend."""
    app = Celery("monitoring-tests")
    app.config_from_object({**celery_config(Settings(redis_url=redis_url)),
                            "result_backend": None})
    return app
