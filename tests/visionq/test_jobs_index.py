"""The recent-jobs index, the per-queue counters and revoke, against a real Redis."""

from __future__ import annotations

import redis

from visionq.jobs import (
    REVOKE_FINAL,
    REVOKE_TOO_LATE,
    REVOKE_UNKNOWN,
    REVOKED,
    JobStore,
)
from visionq.keys import RECENT_KEY


def test_recent_is_newest_first_capped_filtered_and_paged(idle_redis_url: str) -> None:
    client = redis.Redis.from_url(idle_redis_url)
    store = JobStore(client, ttl_s=60, recent_cap=5)
    ids = [store.create("face" if i % 2 else "classify", "b").id for i in range(7)]
    assert client.zcard(RECENT_KEY) == 5
    assert [j.id for j in store.recent(limit=10)] == ids[:1:-1]
    assert [j.id for j in store.recent(task="face", limit=10)] == [ids[5], ids[3]]
    first = store.recent(limit=2)
    second = store.recent(limit=2, before=first[-1].queued_at)
    assert [j.id for j in first + second] == ids[:2:-1]
    store.start(ids[6], "w")
    assert [j.id for j in store.recent(status="running")] == [ids[6]]
    client.delete(store.key(ids[5]))  # expired record: dropped from the index on read
    assert ids[5] not in [j.id for j in store.recent()]
    assert client.zscore(RECENT_KEY, ids[5]) is None


def test_counts_follow_the_life_cycle(idle_redis_url: str) -> None:
    store = JobStore(redis.Redis.from_url(idle_redis_url), ttl_s=60)
    a, b, c = (store.create("face", "b").id for _ in range(3))
    store.start(a, "w")
    store.start(b, "w")
    store.start(b, "w")  # a redelivery is not a second running job
    assert store.counts() == {"face": {"running": 2}}
    store.succeed(a, {})
    store.succeed(a, {})  # duplicate finish: counted once
    store.fail(b, "x", "boom")
    assert store.revoke(c) == REVOKED
    assert store.counts() == {"face": {"running": 0, "succeeded": 1, "failed": 2}}


def test_revoke_outcomes(idle_redis_url: str) -> None:
    store = JobStore(redis.Redis.from_url(idle_redis_url), ttl_s=60)
    queued, running = store.create("face", "b").id, store.create("face", "b").id
    store.start(running, "w")
    assert store.revoke(queued) == REVOKED
    job = store.get(queued)
    assert (job.status, job.code, job.finished_at is not None) == ("failed", "revoked", True)
    assert store.start(queued, "w") == 0  # the worker skips it
    assert store.revoke(queued) == REVOKE_FINAL
    assert store.revoke(running) == REVOKE_TOO_LATE
    assert store.revoke("nope") == REVOKE_UNKNOWN
