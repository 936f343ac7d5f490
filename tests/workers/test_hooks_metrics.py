"""The worker's metrics hook on a registry of its own: celery-exporter's task metrics, job
outcomes from the runner's ``JobOutcome``, and the outcomes the runner never sees."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from billiard.exceptions import WorkerLostError
from celery.exceptions import TimeLimitExceeded
from prometheus_client import CollectorRegistry

from monitoring.metrics import Metrics
from workers.hooks_metrics import MetricsHook
from workers.runner import JobOutcome

TASK = {"name": "visionq.face", "hostname": "w@h", "queue_name": "face"}


@pytest.fixture()
def m() -> Metrics:
    return Metrics(CollectorRegistry())


def value(m: Metrics, metric: str, **labels: str) -> float:
    return m.registry.get_sample_value(metric, labels) or 0.0


def test_a_task_that_finishes_a_job(m: Metrics) -> None:
    hook = MetricsHook(m)
    hook.before_task("face", "j1", "w@h")
    assert value(m, "celery_task_started_total", **TASK) == 1
    assert value(m, "celery_worker_tasks_active", hostname="w@h") == 1
    now = time.time()
    job = SimpleNamespace(queued_at=now - 0.5, started_at=now - 0.2)
    hook.after_task("face", "j1", "w@h", JobOutcome("face", "j1", "succeeded", None, job), 0.2)
    assert value(m, "celery_worker_tasks_active", hostname="w@h") == 0
    assert value(m, "celery_task_succeeded_total", **TASK) == 1
    assert value(m, "celery_task_runtime_sum", **TASK) == pytest.approx(0.2)
    assert value(m, "visionq_jobs_completed_total", task="face", outcome="succeeded",
                 reason="none") == 1
    for stage in ("queue_wait", "inference", "end_to_end"):
        assert value(m, "visionq_job_latency_seconds_count", task="face", stage=stage) == 1


@pytest.mark.parametrize(("outcome", "completed"), [
    (JobOutcome("face", "j", "failed", "poison_job"), ("failed", "worker_lost")),
    (JobOutcome("face", "j", "failed", "image_expired", SimpleNamespace(
        queued_at=1.0, started_at=2.0)), ("failed", "expired")),
    (JobOutcome("face", "j", "duplicate"), None),
    (JobOutcome("face", "j", "unknown_job"), None),
])
def test_only_jobs_finished_here_count_as_completed(m: Metrics, outcome: JobOutcome,
                                                    completed: tuple[str, str] | None) -> None:
    MetricsHook(m).after_task("face", "j", "w@h", outcome, 0.1)
    assert value(m, "celery_task_succeeded_total", **TASK) == 1  # the task itself returned
    total = sum(s.value for metric in m.registry.collect() for s in metric.samples
                if s.name == "visionq_jobs_completed_total")
    assert total == (1 if completed else 0)
    if completed:
        assert value(m, "visionq_jobs_completed_total", task="face", outcome=completed[0],
                     reason=completed[1]) == 1
    ran = outcome.job is not None
    assert value(m, "visionq_job_latency_seconds_count", task="face",
                 stage="queue_wait") == (1 if ran else 0)


def test_a_task_that_raised(m: Metrics) -> None:
    hook = MetricsHook(m)
    hook.before_task("face", "j1", "w@h")
    hook.after_task("face", "j1", "w@h", None, 0.3)
    hook.on_task_failure("face", "j1", "w@h", ConnectionError("redis went away"))
    assert value(m, "celery_task_succeeded_total", **TASK) == 0
    assert value(m, "celery_task_runtime_count", **TASK) == 1
    assert value(m, "celery_task_failed_total", **TASK, exception="ConnectionError") == 1
    assert value(m, "visionq_jobs_completed_total", task="face", outcome="failed",
                 reason="internal") == 1


def test_a_hard_time_limit_fails_the_job_as_a_timeout(m: Metrics) -> None:
    MetricsHook(m).on_task_failure("face", "j1", "unknown", TimeLimitExceeded(60))
    assert value(m, "celery_task_failed_total", name="visionq.face", hostname="unknown",
                 queue_name="face", exception="TimeLimitExceeded") == 1
    assert value(m, "visionq_jobs_completed_total", task="face", outcome="failed",
                 reason="timeout") == 1


def test_a_lost_worker_is_not_a_final_outcome(m: Metrics) -> None:
    MetricsHook(m).on_task_failure("face", "j1", "w@h", WorkerLostError("killed"))
    assert value(m, "celery_task_failed_total", **TASK, exception="WorkerLostError") == 1
    assert not any(s.name == "visionq_jobs_completed_total"
                   for metric in m.registry.collect() for s in metric.samples)


def test_a_revoked_task(m: Metrics) -> None:
    MetricsHook(m).on_task_revoked("face", "j1", "w@h")
    assert value(m, "celery_task_revoked_total", **TASK) == 1
    assert value(m, "visionq_jobs_completed_total", task="face", outcome="revoked",
                 reason="none") == 1


def test_a_task_not_seen_starting_changes_no_gauge(m: Metrics) -> None:
    MetricsHook(m).after_task("face", "j1", "w@h", JobOutcome("face", "j1", "duplicate"), None)
    assert value(m, "celery_worker_tasks_active", hostname="w@h") == 0
    assert value(m, "celery_task_runtime_count", **TASK) == 0


def test_model_load_time(m: Metrics) -> None:
    MetricsHook(m).on_model_loaded("classify", "efficientnet_lite0", 1.5)
    assert value(m, "visionq_model_load_seconds_sum", task="classify",
                 model="efficientnet_lite0") == 1.5
