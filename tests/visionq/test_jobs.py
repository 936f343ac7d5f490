"""Job records against a real Redis: life cycle, idempotent finish, long-poll, expiry."""

from __future__ import annotations

import threading
import time

import redis

from visionq.jobs import JobStore


def test_life_cycle_and_timings(idle_redis_url: str) -> None:
    store = JobStore(redis.Redis.from_url(idle_redis_url), ttl_s=60)
    job = store.create("face", "visionq:blob:x", {"upsample": 0})
    assert store.get(job.id).status == "queued"
    assert store.start(job.id, "w1") == 1
    running = store.get(job.id)
    assert running.status == "running" and running.worker == "w1"
    assert store.succeed(job.id, {"faces": []})
    done = store.get(job.id)
    assert done.status == "succeeded" and done.result == {"faces": []}
    assert done.options == {"upsample": 0}
    assert done.queue_wait_ms is not None and done.inference_ms is not None
    assert 0 < store._client.ttl(store.key(job.id)) <= 60


def test_duplicate_delivery_yields_one_result(idle_redis_url: str) -> None:
    store = JobStore(redis.Redis.from_url(idle_redis_url), ttl_s=60)
    job = store.create("detect", "k")
    assert store.start(job.id, "w1") == 1
    assert store.start(job.id, "w2") == 2  # redelivered while unfinished: attempt 2
    assert store.succeed(job.id, {"n": 1})
    assert store.start(job.id, "w3") == 0  # final: the duplicate must not run
    assert not store.succeed(job.id, {"n": 2})
    assert not store.fail(job.id, "x", "y")
    assert store.get(job.id).result == {"n": 1}


def test_unknown_job(idle_redis_url: str) -> None:
    store = JobStore(redis.Redis.from_url(idle_redis_url), ttl_s=60)
    assert store.get("nope") is None
    assert store.start("nope", "w") == -1


def test_wait_returns_when_finished(idle_redis_url: str) -> None:
    store = JobStore(redis.Redis.from_url(idle_redis_url), ttl_s=60)
    job = store.create("face", "k")
    threading.Timer(0.3, store.fail, args=(job.id, "bad", "why")).start()
    started = time.monotonic()
    done = store.wait(job.id, 5)
    assert done.status == "failed" and done.code == "bad"
    assert time.monotonic() - started < 3
    pending = store.create("face", "k2")
    started = time.monotonic()
    assert store.wait(pending.id, 0.3).status == "queued"
    assert 0.25 < time.monotonic() - started < 2


def test_wait_is_woken_by_the_finish_announcement(idle_redis_url: str, monkeypatch) -> None:
    """With the periodic re-read pushed out to 30 s, only the pub/sub announcement can end
    the wait early: each of many finishes racing the subscription must be seen."""
    import visionq.jobs as jobs_module

    monkeypatch.setattr(jobs_module, "WAIT_RECHECK_S", 30.0)
    store = JobStore(redis.Redis.from_url(idle_redis_url), ttl_s=60)
    for delay in (0.0, 0.001, 0.005, 0.02, 0.05) * 4:
        job = store.create("face", "k")
        store.start(job.id, "w")
        threading.Timer(delay, store.succeed, args=(job.id, {"ok": True})).start()
        started = time.monotonic()
        done = store.wait(job.id, 20)
        assert done.status == "succeeded"
        assert time.monotonic() - started < 10, "missed the announcement"


def test_revoke_wakes_a_waiter(idle_redis_url: str) -> None:
    store = JobStore(redis.Redis.from_url(idle_redis_url), ttl_s=60)
    job = store.create("face", "k")
    threading.Timer(0.2, store.revoke, args=(job.id,)).start()
    done = store.wait(job.id, 20)
    assert done.status == "failed" and done.code == "revoked"


def test_shared_listener_wakes_many_waiters(idle_redis_url: str, monkeypatch) -> None:
    """One process-wide subscription wakes every waiting thread; with the periodic re-read
    pushed out to 30 s only the announcement can end each wait early."""
    import visionq.jobs as jobs_module
    from visionq.wakeup import DoneListener

    monkeypatch.setattr(jobs_module, "WAIT_RECHECK_S", 30.0)
    client = redis.Redis.from_url(idle_redis_url)
    listener = DoneListener(client)
    store = JobStore(client, ttl_s=60, listener=listener)
    try:
        jobs = [store.create("face", f"k{i}") for i in range(20)]
        results: dict[str, str] = {}

        def waiter(job_id: str) -> None:
            done = store.wait(job_id, 25)
            results[job_id] = done.status if done is not None else "missing"

        threads = [threading.Thread(target=waiter, args=(job.id,)) for job in jobs]
        for thread in threads:
            thread.start()
        for i, job in enumerate(jobs):  # finishes race the registrations
            store.start(job.id, "w")
            store.succeed(job.id, {"i": i})
        started = time.monotonic()
        for thread in threads:
            thread.join(30)
        assert results == {job.id: "succeeded" for job in jobs}
        assert time.monotonic() - started < 20, "a waiter missed its announcement"
        assert listener.waiting() == 0  # every waiter unregistered
    finally:
        listener.stop()


def test_shared_listener_timeout_returns_the_queued_job(idle_redis_url: str) -> None:
    from visionq.wakeup import DoneListener

    client = redis.Redis.from_url(idle_redis_url)
    listener = DoneListener(client)
    try:
        store = JobStore(client, ttl_s=60, listener=listener)
        job = store.create("face", "k")
        assert store.wait(job.id, 0.3).status == "queued"
        assert listener.waiting() == 0
    finally:
        listener.stop()
