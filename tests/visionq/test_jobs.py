"""Job records against a real Redis: life cycle, idempotent finish, long-poll, expiry."""

from __future__ import annotations

import threading
import time

import pytest
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
    import visionq.jobs.waiting as waiting_module

    monkeypatch.setattr(waiting_module, "WAIT_RECHECK_S", 30.0)
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
    import visionq.jobs.waiting as waiting_module
    from visionq.wakeup import DoneListener

    monkeypatch.setattr(waiting_module, "WAIT_RECHECK_S", 30.0)
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


def test_admit_writes_records_and_images_or_nothing(idle_redis_url: str) -> None:
    from visionq.jobs import QueueFullError

    client = redis.Redis.from_url(idle_redis_url)
    store = JobStore(client, ttl_s=60)
    entries = [(f"job{i}", f"visionq:blob:b{i}", b"img%d" % i) for i in range(3)]
    jobs = store.admit("face", entries, {"upsample": 0}, queue="face", backlog_limit=3,
                       blob_ttl_s=30)
    assert [job.id for job in jobs] == ["job0", "job1", "job2"]
    for i in range(3):
        stored = store.get(f"job{i}")
        assert stored.status == "queued" and stored.options == {"upsample": 0}
        assert client.get(f"visionq:blob:b{i}") == b"img%d" % i
        assert 0 < client.ttl(f"visionq:blob:b{i}") <= 30
    client.rpush("face", "m1", "m2")  # two messages waiting: 2 + 2 > 3
    more = [("job8", "visionq:blob:b8", b"x"), ("job9", "visionq:blob:b9", None)]
    with pytest.raises(QueueFullError) as refused:
        store.admit("face", more, queue="face", backlog_limit=3, blob_ttl_s=30)
    assert refused.value.backlog == 2
    assert store.get("job8") is None and not client.exists("visionq:blob:b8")
    # An image stored elsewhere (S3): only the record is written, pointing at its key.
    assert store.admit("face", more[1:], queue="face", backlog_limit=3, blob_ttl_s=30)
    assert store.get("job9").blob == "visionq:blob:b9" and not client.exists("visionq:blob:b9")


def test_begin_reads_record_and_image_in_one_step(idle_redis_url: str) -> None:
    client = redis.Redis.from_url(idle_redis_url)
    store = JobStore(client, ttl_s=60)
    store.admit("detect", [("j1", "visionq:blob:x1", b"pixels")], {"min_confidence": 0.5},
                queue="detect", backlog_limit=10, blob_ttl_s=30)
    attempt, job, data = store.begin("j1", "w", with_blob=True)
    assert (attempt, job.status, job.options, data) == (1, "running", {"min_confidence": 0.5},
                                                        b"pixels")
    assert store.begin("j1", "w")[0] == 2  # a redelivery counts another attempt
    assert store.succeed("j1", {"ok": 1}, blob="visionq:blob:x1")
    assert not client.exists("visionq:blob:x1")  # deleted by the finishing script
    assert store.begin("j1", "w", with_blob=True) == (0, None, None)
    assert store.begin("nope", "w") == (-1, None, None)


def test_begin_reads_an_admitted_image_by_its_derived_key_in_the_same_round_trip(
        idle_redis_url: str) -> None:
    """The API stores a job's image under ``job_blob_key(job_id)``: begin pipelines a
    plain GET of it after the script (no copy through Lua, no second round trip); an image
    stored under another key costs one more GET."""
    from unittest import mock

    from visionq.blobstore import RedisBlobStore

    client = redis.Redis.from_url(idle_redis_url)
    store = JobStore(client, ttl_s=60)
    key = RedisBlobStore.key_for("d1")
    store.admit("detect", [("d1", key, b"derived"), ("d2", "visionq:blob:other", b"other")],
                queue="detect", backlog_limit=10, blob_ttl_s=30)
    client.config_resetstat()
    with mock.patch.object(client, "get", wraps=client.get) as separate_get:
        assert store.begin("d1", "w", with_blob=True)[2] == b"derived"
        assert separate_get.call_count == 0  # the GET rode in the begin's pipeline
        assert store.begin("d2", "w", with_blob=True)[2] == b"other"
        assert separate_get.call_count == 1  # another key: one more round trip
    assert client.info("commandstats")["cmdstat_get"]["calls"] == 3


def test_begin_retried_with_the_same_token_is_one_attempt(idle_redis_url: str) -> None:
    """A begin whose reply was lost and was sent again must not count as another delivery
    (three of those would fail a healthy job as a poison job)."""
    client = redis.Redis.from_url(idle_redis_url)
    store = JobStore(client, ttl_s=60)
    store.admit("face", [("t1", "visionq:blob:t1", b"x")], queue="face", backlog_limit=10,
                blob_ttl_s=30)
    assert store.begin("t1", "w", token="delivery-1")[0] == 1
    assert store.begin("t1", "w", token="delivery-1")[0] == 1  # the same call again
    assert store.begin("t1", "w", token="delivery-2")[0] == 2  # a real redelivery
    assert store.get("t1").attempts == 2


def test_replica_acks_are_not_awaited_from_a_primary_without_replicas(redis_url: str) -> None:
    """``replicas=1`` behind a lone primary (after a failover left it alone): the store sees
    it has no replica and does not make every write wait for ``WAIT``'s timeout."""
    import redis as redis_lib

    from visionq.jobs import JobStore

    store = JobStore(redis_lib.Redis.from_url(redis_url), 60, replicas=1,
                     replica_timeout_ms=60_000)
    assert store._replica_wait.wanted() == 0
    job = store.create("classify", "visionq:blob:none")
    store.confirm_published([job.id])
    assert store.get(job.id).status == "queued"
