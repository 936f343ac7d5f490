"""Jobs whose message was lost in delivery (a worker killed between kombu's BRPOP and its
unacked record) are published again, once, and complete."""

from __future__ import annotations

import time

import redis

from tests.workers.sleepy_model import image_bytes
from visionq.blobstore import RedisBlobStore
from visionq.jobs import JobStore
from visionq.keys import RECENT_KEY
from workers.reaper import LOCK_KEY, maybe_sweep, sweep


def _backdate(client: redis.Redis, job_id: str, seconds: float) -> None:
    old = time.time() - seconds
    client.zadd(RECENT_KEY, {job_id: old})
    client.hset(JobStore.key(job_id), "queued_at", repr(old))


def test_sweep_republishes_only_old_queued_jobs_once(idle_redis_url: str) -> None:
    client = redis.Redis.from_url(idle_redis_url)
    store = JobStore(client, 600)
    lost, young, running, done = (store.create("classify", "k") for _ in range(4))
    for job in (lost, running, done):
        _backdate(client, job.id, 500)
    store.start(running.id, "w")
    store.start(done.id, "w")
    store.succeed(done.id, {})
    published: list[tuple[str, str]] = []
    enqueue = lambda task, job_id: published.append((task, job_id))  # noqa: E731
    assert sweep(client, store, enqueue, older_than_s=100) == [lost.id]
    assert published == [("classify", lost.id)]
    assert sweep(client, store, enqueue, older_than_s=100) == []  # once per job
    assert young.id not in [j for _, j in published]


def test_one_sweeper_at_a_time(idle_redis_url: str) -> None:
    client = redis.Redis.from_url(idle_redis_url)
    store = JobStore(client, 600)
    _backdate(client, store.create("face", "k").id, 500)
    calls: list[str] = []
    assert maybe_sweep(client, store, lambda t, j: calls.append(j), 100, "a")
    assert maybe_sweep(client, store, lambda t, j: calls.append(j), 100, "b") == []
    assert client.get(LOCK_KEY) == b"a" and len(calls) == 1


def test_a_worker_recovers_a_job_whose_message_was_lost(test_worker, redis_server) -> None:
    url = f"redis://127.0.0.1:{redis_server[0]}/8"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        store = JobStore(client, 600)
        blob = RedisBlobStore(client, 600).put(image_bytes(20))
        job = store.create("classify", blob)  # record and image exist, the message is gone
        _backdate(client, job.id, 120)
        test_worker(url, "classify", "reaper", VISIONQ_VISIBILITY_TIMEOUT_S="8",
                    VISIONQ_SOFT_TIME_LIMIT_S="4", VISIONQ_HARD_TIME_LIMIT_S="6",
                    VISIONQ_REAPER_GRACE_S="0",
                    VISIONQ_MODEL_CLASSIFY="tests.workers.sleepy_model:SleepyModel")
        done = store.wait(job.id, 120)  # returns as soon as the job is final
        assert done.status == "succeeded", done
        assert done.attempts == 1
        assert client.hexists(JobStore.key(job.id), "republished")
    finally:
        client.flushdb()
