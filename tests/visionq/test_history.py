"""Durable job history: the store on SQLite and on a real PostgreSQL server (keyset pages,
filters, idempotent inserts, retention in batches) and the writer that drains the Redis
stream the finishing script appends to (nothing lost while the store is down, nothing
written twice, stale entries of a dead writer claimed)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from visionq.history import Filters, HistoryStore, HistoryWriter, record_from_fields
from visionq.jobs import JobStore
from visionq.keys import HISTORY_STREAM_KEY

DEADLINE_S = 120


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HistoryStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'history.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url")
    history = HistoryStore(url)
    if request.param == "postgresql":
        from visionq.history import metadata
        metadata.drop_all(history.engine)
    yield history
    history.dispose()


def row(job_id: str, queued_at: float, **extra: object) -> dict[str, object]:
    fields = {"id": job_id, "task": "classify", "status": "succeeded",
              "queued_at": repr(queued_at), "started_at": repr(queued_at + 0.1),
              "finished_at": repr(queued_at + 0.2), "attempts": "1", "worker": "w1",
              "result": json.dumps({"model_version": "m-1", "labels": []}),
              "options": "{}", "blob": "visionq:blob:x"}
    fields.update({k: str(v) for k, v in extra.items()})
    return record_from_fields(fields)


def test_sqlite_is_in_wal_mode(tmp_path: Path) -> None:
    history = HistoryStore(f"sqlite:///{tmp_path / 'sub' / 'h.sqlite3'}")
    history.insert([row("a", 1.0)])
    with history.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    history.dispose()


def test_insert_is_idempotent_and_get_returns_the_record(store: HistoryStore) -> None:
    store.insert([row("a", 10.0, submitter="key:abc")])
    store.insert([row("a", 10.0, status="failed"), row("b", 11.0)])  # "a" redelivered
    assert store.count() == 2
    job = store.get("a")
    assert job is not None and job.status == "succeeded" and job.submitter == "key:abc"
    assert job.result == {"model_version": "m-1", "labels": []}
    assert job.total_ms == pytest.approx(200, abs=1)
    assert store.get("nope") is None


def test_keyset_pages_newest_first_with_filters(store: HistoryStore) -> None:
    rows = [row(f"j{i:03d}", 100.0 + i // 2, task="detect" if i % 3 == 0 else "classify",
                status="failed" if i % 5 == 0 else "succeeded",
                submitter="key:a" if i % 2 else "key:b") for i in range(60)]
    store.insert(rows)  # pairs share a queued_at: ties are broken by id
    expected = sorted(rows, key=lambda r: (r["queued_at"], r["id"]), reverse=True)
    seen: list[str] = []
    before = None
    while True:
        page = store.page(limit=7, before=before)
        seen += [job.id for job in page]
        if len(page) < 7:
            break
        before = (page[-1].queued_at, page[-1].id)
    assert seen == [r["id"] for r in expected]
    detect_failed = store.page(Filters(status="failed", task="detect"), limit=100)
    assert {j.id for j in detect_failed} == {r["id"] for r in rows
                                              if r["task"] == "detect" and r["status"] == "failed"}
    mine = store.page(Filters(submitter="key:a", since=110.0, until=120.0), limit=100)
    assert {j.id for j in mine} == {r["id"] for r in rows if r["submitter"] == "key:a"
                                    and 110.0 <= r["queued_at"] < 120.0}
    assert [j.id for j in store.iterate(batch=8)] == seen


def test_retention_deletes_the_oldest_in_batches(store: HistoryStore) -> None:
    now = 1_000_000.0
    store.insert([row(f"old{i}", now - 10 * 86400 - i) for i in range(23)])
    store.insert([row(f"new{i:02d}", now - i) for i in range(30)])
    assert store.prune(max_age_s=7 * 86400, max_rows=None, now=now, batch=5) == 23
    assert store.count() == 30
    assert store.prune(max_age_s=None, max_rows=12, now=now, batch=5) == 18
    assert sorted(j.id for j in store.iterate()) == [f"new{i:02d}" for i in range(12)]
    assert store.prune(max_age_s=7 * 86400, max_rows=12, now=now) == 0


# -- the writer --------------------------------------------------------------------------

def drain(writer: HistoryWriter, expected: int) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while writer.written < expected:
        assert time.monotonic() < deadline, f"{writer.written} of {expected} written"
        writer.run_once(block=False)


def finish_some_jobs(client: redis.Redis, n: int, prefix: str = "job") -> list[str]:
    jobs = JobStore(client, ttl_s=60)
    created = jobs.admit("classify", [(f"{prefix}{i}", f"visionq:blob:{prefix}{i}", b"x")
                                      for i in range(n)],
                         queue="classify", backlog_limit=10_000, blob_ttl_s=60,
                         submitter="key:feedbeef")
    ids = [job.id for job in created]
    for i, job_id in enumerate(ids[:-1]):
        jobs.begin(job_id, "w1")
        if i % 2:
            jobs.fail(job_id, "inference_error", "boom")
        else:
            jobs.succeed(job_id, {"model": "m", "model_version": "v7", "labels": []})
    assert jobs.revoke(ids[-1]) == 1
    return ids


def test_finished_jobs_reach_the_store_once(idle_redis_url: str, store: HistoryStore) -> None:
    client = redis.Redis.from_url(idle_redis_url)
    ids = finish_some_jobs(client, 9)
    JobStore(client, ttl_s=60).succeed(ids[0], {"again": True})  # a duplicate finish: no entry
    assert client.xlen(HISTORY_STREAM_KEY) == 9
    writer = HistoryWriter(client, store, batch=4)
    drain(writer, 9)
    assert store.count() == 9
    done = store.get(ids[0])
    assert done is not None and done.status == "succeeded" and done.submitter == "key:feedbeef"
    with store.engine.connect() as conn:
        versions = set(conn.exec_driver_sql(
            "SELECT model_version FROM visionq_job_history WHERE status = 'succeeded'").scalars())
    assert versions == {"v7"}
    failed = store.get(ids[1])
    assert failed is not None and failed.code == "inference_error" and failed.error == "boom"
    revoked = store.get(ids[-1])
    assert revoked is not None and revoked.code == "revoked"
    writer.trim()
    assert client.xlen(HISTORY_STREAM_KEY) == 0  # every group acknowledged them


class FlakyStore(HistoryStore):
    """A store that is "down" (raises) until ``up`` is set."""

    up = False

    def insert(self, rows: list[dict[str, object]]) -> None:
        if not self.up:
            raise ConnectionError("history store down")
        super().insert(rows)


def test_nothing_is_lost_while_the_store_is_down(idle_redis_url: str, tmp_path: Path) -> None:
    client = redis.Redis.from_url(idle_redis_url)
    store = FlakyStore(f"sqlite:///{tmp_path / 'h.sqlite3'}")
    writer = HistoryWriter(client, store, batch=3)
    ids = finish_some_jobs(client, 7)
    with pytest.raises(ConnectionError):
        writer.run_once(block=False)
    group = writer.group
    assert client.xpending(HISTORY_STREAM_KEY, group)["pending"] == 3  # read, not acked
    writer.trim()
    assert client.xlen(HISTORY_STREAM_KEY) == 7  # nothing unacknowledged is trimmed
    store.up = True
    drain(writer, 7)
    assert sorted(job.id for job in store.iterate()) == sorted(ids)
    assert client.xpending(HISTORY_STREAM_KEY, group)["pending"] == 0
    store.dispose()


def test_an_unreachable_database_keeps_the_entries(idle_redis_url: str) -> None:
    client = redis.Redis.from_url(idle_redis_url)
    store = HistoryStore("postgresql://nobody@127.0.0.1:9/none?connect_timeout=2")
    writer = HistoryWriter(client, store)
    finish_some_jobs(client, 2)
    with pytest.raises(Exception):  # noqa: B017 - the driver's OperationalError
        writer.run_once(block=False)
    assert client.xlen(HISTORY_STREAM_KEY) == 2
    store.dispose()


def test_a_dead_writers_entries_are_claimed(idle_redis_url: str, tmp_path: Path) -> None:
    client = redis.Redis.from_url(idle_redis_url)
    url = f"sqlite:///{tmp_path / 'h.sqlite3'}"
    dead = HistoryWriter(client, FlakyStore(url), batch=100)
    ids = finish_some_jobs(client, 5)
    with pytest.raises(ConnectionError):
        dead.run_once(block=False)  # read all 5, then "died" before acknowledging
    store = HistoryStore(url)
    alive = HistoryWriter(client, store, claim_idle_ms=0)
    assert alive.group == dead.group  # same store, same group: shared without duplicates
    drain(alive, 5)
    assert sorted(job.id for job in store.iterate()) == sorted(ids)
    store.dispose()


def test_the_writer_thread_and_retention(idle_redis_url: str, tmp_path: Path) -> None:
    client = redis.Redis.from_url(idle_redis_url)
    store = HistoryStore(f"sqlite:///{tmp_path / 'h.sqlite3'}")
    store.insert([row(f"ancient{i}", 1000.0 + i) for i in range(10)])
    writer = HistoryWriter(client, store, max_age_s=86400, block_ms=100,
                           prune_interval_s=0.1).start()
    try:
        ids = finish_some_jobs(client, 4)
        deadline = time.monotonic() + DEADLINE_S
        while sorted(job.id for job in store.iterate()) != sorted(ids):
            assert time.monotonic() < deadline, [job.id for job in store.iterate()]
            time.sleep(0.05)
    finally:
        writer.stop()
    store.dispose()


def test_the_writer_thread_gathers_a_trickle_into_batches(idle_redis_url: str,
                                                          tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    client = redis.Redis.from_url(idle_redis_url)
    store = HistoryStore(f"sqlite:///{tmp_path / 'h.sqlite3'}")
    batches: list[int] = []
    insert = store.insert
    monkeypatch.setattr(store, "insert", lambda rows: (batches.append(len(rows)),
                                                       insert(rows))[1])
    writer = HistoryWriter(client, store, block_ms=100, gather_s=3).start()
    try:
        first = finish_some_jobs(client, 1)
        deadline = time.monotonic() + DEADLINE_S
        while writer.written < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        rest = finish_some_jobs(client, 5, "more")  # while the writer gathers after its first batch
        while writer.written < 6:
            assert time.monotonic() < deadline, batches
            time.sleep(0.05)
    finally:
        writer.stop()
    assert batches == [1, 5]  # one transaction for the five, not five
    assert sorted(job.id for job in store.iterate()) == sorted(first + rest)
    store.dispose()
