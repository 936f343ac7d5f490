"""A job history row the database refuses must not block the history stream (issue 30, code
read: "a history row the database refuses (e.g. a model version longer than the column)
blocks the history stream for good").

Real parts: jobs finished through ``JobStore`` on a real Redis (the finishing script appends
them to ``visionq:history``), the ``HistoryWriter`` thread, a real PostgreSQL server (its
``VARCHAR(255)`` refuses a longer model version, its ``TEXT`` a NUL character).  SQLite
enforces neither, so it accepts both rows: nothing to set aside there."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry

from monitoring.collector import BrokerCollector
from visionq.history import DEAD_LETTER_KEY, HistoryStore, HistoryWriter, metadata
from visionq.jobs import JobStore
from visionq.keys import HISTORY_STREAM_KEY

DEADLINE_S = 60


def wait_for(condition: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture()
def store(postgres_url: str) -> Iterator[HistoryStore]:
    history = HistoryStore(postgres_url)
    metadata.drop_all(history.engine)
    yield history
    history.dispose()


def finish(jobs: JobStore, job_id: str, model_version: str = "v1",
           error: str | None = None) -> None:
    jobs.admit("classify", [(job_id, f"visionq:blob:{job_id}", b"x")], queue="classify",
               backlog_limit=10_000, blob_ttl_s=60, submitter="key:feedbeef")
    jobs.begin(job_id, "w1")
    if error is None:
        jobs.succeed(job_id, {"model": "custom/x", "model_version": model_version,
                              "labels": []})
    else:
        jobs.fail(job_id, "inference_error", error)


def test_a_refused_row_is_set_aside_and_the_rest_keep_flowing(
        idle_redis_url: str, store: HistoryStore) -> None:
    client = redis.Redis.from_url(idle_redis_url)
    jobs = JobStore(client, ttl_s=60)
    for i in range(3):
        finish(jobs, f"before{i}")
    finish(jobs, "long-version", model_version="v" * 300)  # VARCHAR(255): DataError
    finish(jobs, "nul-error", error="inference failed: bad\x00byte")  # TEXT: no NUL
    for i in range(3):
        finish(jobs, f"after{i}")
    counted: list[int] = []
    writer = HistoryWriter(client, store, batch=4, block_ms=100, gather_s=0.05,
                           on_dead_letter=counted.append).start()
    try:
        wanted = {f"before{i}" for i in range(3)} | {f"after{i}" for i in range(3)}
        wait_for(lambda: wanted <= {job.id for job in store.iterate()},
                 "the rows before and after the refused ones to reach the database")
        wait_for(lambda: client.llen(DEAD_LETTER_KEY) == 2, "two dead letters")
        for i in range(3):  # the stream keeps flowing after the dead letters
            finish(jobs, f"later{i}")
        wait_for(lambda: {f"later{i}" for i in range(3)} <= {j.id for j in store.iterate()},
                 "later rows to reach the database")
    finally:
        writer.stop()
    assert {job.id for job in store.iterate()} == wanted | {f"later{i}" for i in range(3)}
    dead = [json.loads(raw) for raw in client.lrange(DEAD_LETTER_KEY, 0, -1)]
    assert sorted(d["fields"]["id"] for d in dead) == ["long-version", "nul-error"]
    by_id = {d["fields"]["id"]: d for d in dead}
    assert "StringDataRightTruncation" in by_id["long-version"]["error"] \
        or "too long" in by_id["long-version"]["error"]
    assert "NUL" in by_id["nul-error"]["error"]
    assert json.loads(by_id["long-version"]["fields"]["result"])["model_version"] == "v" * 300
    assert sum(counted) == 2 and writer.dead_letters == 2
    # Everything acknowledged: nothing pending, the stream trims to empty.
    assert client.xpending(HISTORY_STREAM_KEY, writer.group)["pending"] == 0
    writer.trim()
    assert client.xlen(HISTORY_STREAM_KEY) == 0
    # The exporter's gauge (the alert VisionqHistoryDeadLetters fires on it).
    registry = CollectorRegistry()
    registry.register(BrokerCollector(client, ["classify"], {}))
    assert registry.get_sample_value("visionq_history_dead_letter_length") == 2


def test_a_store_that_is_down_is_still_retried_not_dead_lettered(
        idle_redis_url: str) -> None:
    """Only rows the database refuses are set aside: an unreachable database keeps every
    entry in the stream (pending) for the next try."""
    client = redis.Redis.from_url(idle_redis_url)
    jobs = JobStore(client, ttl_s=60)
    finish(jobs, "a")
    finish(jobs, "b", model_version="v" * 300)
    store = HistoryStore("postgresql://nobody@127.0.0.1:9/none?connect_timeout=2")
    writer = HistoryWriter(client, store)
    with pytest.raises(Exception):  # noqa: B017 - the driver's OperationalError
        writer.run_once(block=False)
    assert client.llen(DEAD_LETTER_KEY) == 0
    assert client.xpending(HISTORY_STREAM_KEY, writer.group)["pending"] == 2
    store.dispose()


def test_the_dead_letter_list_is_bounded(idle_redis_url: str, store: HistoryStore,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import visionq.history as history

    monkeypatch.setattr(history, "DEAD_LETTER_MAX", 3)
    client = redis.Redis.from_url(idle_redis_url)
    jobs = JobStore(client, ttl_s=60)
    for i in range(5):
        finish(jobs, f"bad{i}", model_version="v" * 300)
    finish(jobs, "good")
    writer = HistoryWriter(client, store, batch=10, on_dead_letter=lambda n: None)
    wait_for(lambda: writer.run_once(block=False) == 0 and store.get("good"),
             "the good row")
    assert client.llen(DEAD_LETTER_KEY) == 3 and writer.dead_letters == 5
