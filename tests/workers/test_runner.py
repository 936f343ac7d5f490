"""``run_job`` in this process, on a real Redis: it finishes the job record and returns
what happened (``JobOutcome``) for the hooks to record; it records nothing itself."""

from __future__ import annotations

import pytest
import redis

from tests.workers.conftest import SLEEPY, WorkerEnv
from tests.workers.sleepy_model import RAISE_WIDTH, image_bytes
from visionq.blobstore import RedisBlobStore
from visionq.jobs import JobStore
from workers.runner import MAX_ATTEMPTS, JobOutcome, run_job


@pytest.fixture()
def client(worker_env: WorkerEnv, idle_redis_url: str) -> redis.Redis:
    """This process configured as a classify worker on the idle Redis database."""
    worker_env(REDIS_URL=idle_redis_url, VISIONQ_MODEL_CLASSIFY=SLEEPY)
    return redis.Redis.from_url(idle_redis_url)


@pytest.fixture()
def store(client: redis.Redis) -> JobStore:
    return JobStore(client, 600)


def _job(store: JobStore, client: redis.Redis, data: bytes | None) -> tuple[str, str]:
    blob = RedisBlobStore(client, 600).put(data) if data is not None else "visionq:blob:gone"
    return store.create("classify", blob).id, blob


def test_a_job_that_succeeds(store: JobStore, client: redis.Redis) -> None:
    job_id, blob = _job(store, client, image_bytes(20))
    heard: list[tuple[str, str, float]] = []
    outcome = run_job("classify", job_id, "w1@host", lambda *event: heard.append(event))
    assert outcome == JobOutcome("classify", job_id, "succeeded", None, outcome.job)
    assert outcome.final
    assert outcome.job is not None and outcome.job.started_at is not None
    assert outcome.job.queued_at is not None
    done = store.get(job_id)
    assert done.status == "succeeded" and done.result["width"] == 20 and done.worker == "w1@host"
    assert not client.exists(blob)  # the image is deleted after use
    assert [event[:2] for event in heard] == [("classify", SLEEPY)]  # loaded by this job


def test_a_redelivered_job_is_a_duplicate(store: JobStore, client: redis.Redis) -> None:
    job_id, _ = _job(store, client, image_bytes(20))
    run_job("classify", job_id, "w1")
    again = run_job("classify", job_id, "w2")
    assert again == JobOutcome("classify", job_id, "duplicate")
    assert not again.final and again.job is None
    assert store.get(job_id).worker == "w1"


def test_a_message_without_a_record(store: JobStore) -> None:
    outcome = run_job("classify", "no-such-job", "w1")
    assert outcome == JobOutcome("classify", "no-such-job", "unknown_job")
    assert not outcome.final


@pytest.mark.parametrize(("data", "code"), [
    (b"GIF89a but not really", None),          # the decoder's own code
    (image_bytes(RAISE_WIDTH), "inference_error"),
    (None, "image_expired"),                   # the blob is gone
])
def test_a_failing_job_is_failed_with_its_reason(store: JobStore, client: redis.Redis,
                                                 data: bytes | None, code: str | None) -> None:
    job_id, _ = _job(store, client, data)
    outcome = run_job("classify", job_id, "w1")
    record = store.get(job_id)
    assert record.status == "failed" and outcome.outcome == "failed" and outcome.final
    assert outcome.code == record.code
    if code is not None:
        assert outcome.code == code
    assert outcome.job is not None  # it ran: its stage latencies count


def test_a_job_that_keeps_killing_its_worker_is_poison(store: JobStore,
                                                       client: redis.Redis) -> None:
    job_id, _ = _job(store, client, image_bytes(20))
    for _ in range(MAX_ATTEMPTS):
        store.start(job_id, "dead-worker")  # each start is an attempt whose process died
    outcome = run_job("classify", job_id, "w1")
    assert outcome == JobOutcome("classify", job_id, "failed", "poison_job")
    assert outcome.job is None  # it never ran here
    assert store.get(job_id).code == "poison_job"


def test_the_jobs_round_trips_carry_the_scaling_hints(store: JobStore,
                                                      client: redis.Redis) -> None:
    """Busy mark with the begin, its removal and the service time with the finish: two
    round trips fewer than the hook writing them (``workers.hooks.ScalingHints``)."""
    from visionq.broker import busy_workers, completed, recent_service_time
    from visionq.settings import get_settings

    job_id, _ = _job(store, client, image_bytes(20))
    client.config_resetstat()
    outcome = run_job("classify", job_id, "w1")
    assert outcome.outcome == "succeeded" and outcome.hints
    assert busy_workers(client) == frozenset()
    assert completed(client, "classify") == 1
    assert (recent_service_time(client, "classify") or 0) > 0
    stats = client.info("commandstats")
    assert stats["cmdstat_zadd"]["calls"] == 1 and stats["cmdstat_zrem"]["calls"] == 1
    again = run_job("classify", job_id, "w2")  # a duplicate: begin marks the host busy...
    assert again.outcome == "duplicate" and not again.hints  # ...the hook clears it
    assert busy_workers(client) == {get_settings().instance_id}
