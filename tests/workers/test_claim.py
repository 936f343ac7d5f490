"""Claiming (``workers.claim``) on a real Redis, with kombu's own code reading what the
claim script writes: a claimed message is unacked exactly as a delivered one, kombu's
visibility sweep restores it, the autoscaler counts it in flight, a claim rides only on a
recorded finish, and ``run_job`` runs claimed jobs, acks them on their finishing round trip
and claims the next one there."""

from __future__ import annotations

import json
import time

import pytest
import redis
from celery.exceptions import SoftTimeLimitExceeded
from kombu import Connection

from tasks import make_celery
from tasks.message import celery_message
from tasks.signatures import TASK_NAMES
from tests.workers.conftest import SLEEPY, WorkerEnv
from tests.workers.sleepy_model import image_bytes
from visionq.blobstore import RedisBlobStore
from visionq.broker import busy_workers
from visionq.jobs import JobStore
from visionq.kombu_redis import UNACKED_INDEX_KEY, UNACKED_KEY, in_flight
from visionq.settings import Settings
from workers import runtime
from workers.claim import Claimed, ack_commands, claim_request, give_back, ledger_key
from workers.finish import Rides
from workers.runner import run_job

QUEUE = "classify"


@pytest.fixture()
def client(worker_env: WorkerEnv, idle_redis_url: str) -> redis.Redis:
    worker_env(REDIS_URL=idle_redis_url, VISIONQ_MODEL_CLASSIFY=SLEEPY)
    return redis.Redis.from_url(idle_redis_url)


@pytest.fixture()
def publish(client: redis.Redis, idle_redis_url: str):
    """``publish(job_id) -> message bytes``: the job's Celery message, pushed as the API's
    admit script pushes it."""
    celery = make_celery(Settings(redis_url=idle_redis_url))

    def _publish(job_id: str, queue: str = QUEUE) -> bytes:
        key, payload = celery_message(celery, queue, job_id)
        client.lpush(key, payload)
        return payload

    return _publish


def claim(client: redis.Redis, most: int = 3, concurrency: int = 1,
          delivery: str = "d1", host: str | None = None) -> list[Claimed]:
    """Claim along with the finish of a job of the delivery (one made up for it)."""
    store = JobStore(client, 600)
    carrier = store.create("other", "visionq:blob:none").id
    assert store.begin(carrier, "w")[0] == 1
    request = claim_request(QUEUE, TASK_NAMES[QUEUE], delivery, most, concurrency, 90, host)
    recorded, pairs = store.finish(carrier, result={}, claim=request)
    assert recorded
    return [Claimed(tag, job_id) for tag, job_id in pairs]


def test_only_a_recorded_finish_claims(client, publish) -> None:
    for i in range(3):
        publish(f"j{i}")
    store = JobStore(client, 600)
    carrier = store.create("other", "visionq:blob:none").id
    store.begin(carrier, "w")
    request = claim_request(QUEUE, TASK_NAMES[QUEUE], "d1", 1, 1, 90)
    recorded, pairs = store.finish(carrier, result={}, claim=request)
    assert recorded
    assert [job_id for _, job_id in pairs] == ["j0"]
    # a second finish (another delivery's) is refused
    recorded, again = store.finish(carrier, code="x", error="y", claim=request)
    assert not recorded
    assert again == () and client.llen(QUEUE) == 2


def test_claims_the_next_messages_as_kombu_would_deliver_them(client, publish) -> None:
    raw = {f"j{i}": publish(f"j{i}") for i in range(5)}
    taken = claim(client, most=3)
    assert [c.job_id for c in taken] == ["j0", "j1", "j2"]  # FIFO: what BRPOP takes next
    assert client.llen(QUEUE) == 2
    for item in taken:
        entry = json.loads(client.hget(UNACKED_KEY, item.tag))
        # QoS.append's entry: [the message, its exchange, its routing key]
        assert entry == [json.loads(raw[item.job_id]), "", QUEUE]
        assert abs(client.zscore(UNACKED_INDEX_KEY, item.tag) - time.time()) < 60
        assert client.hget(ledger_key("d1"), item.tag) == raw[item.job_id]
    assert in_flight(client, [QUEUE])[QUEUE] == 3  # the autoscaler still sees them
    assert 0 < client.ttl(ledger_key("d1")) <= 90


@pytest.mark.parametrize(("waiting", "concurrency", "most", "claimed"), [
    (0, 1, 3, 0), (1, 2, 3, 0), (3, 2, 3, 1), (8, 2, 3, 3), (8, 4, 3, 2), (8, 1, 0, 0),
])
def test_claims_only_beyond_the_other_processes_share(client, publish, waiting: int,
                                                      concurrency: int, most: int,
                                                      claimed: int) -> None:
    for i in range(waiting):
        publish(f"j{i}")
    assert len(claim(client, most=most, concurrency=concurrency)) == claimed
    assert client.llen(QUEUE) == waiting - claimed


@pytest.mark.parametrize("foreign", [
    lambda raw: raw.replace(b'"visionq.classify"', b'"visionq.other"'),
    lambda raw: raw.replace(b'"eta": null', b'"eta": "2030-01-01T00:00:00"'),
    lambda raw: b"not json",
])
def test_a_message_it_does_not_understand_stays_where_it_was(client, publish,
                                                             foreign) -> None:
    publish("j0")
    odd = foreign(publish("j1"))
    client.lset(QUEUE, 0, odd)  # j1's message, altered, is now the next but one
    publish("j2")
    assert [c.job_id for c in claim(client, most=3)] == ["j0"]
    assert client.lrange(QUEUE, 0, -1)[-1] == odd  # back where it was, taken next
    assert client.llen(QUEUE) == 2


def test_kombu_restores_a_claimed_message_after_the_visibility_timeout(
        client, publish, idle_redis_url: str) -> None:
    raw = publish("j0")
    publish("j1")
    [item] = claim(client, most=1)
    with Connection(idle_redis_url, transport_options={"visibility_timeout": 0}) as conn:
        conn.default_channel.qos.restore_visible(num=10)
    restored = json.loads(client.lindex(QUEUE, -1))  # taken next again
    original = json.loads(raw)
    assert restored["headers"]["id"] == "j0" and restored["headers"]["redelivered"] is True
    assert restored["body"] == original["body"]
    assert not client.hexists(UNACKED_KEY, item.tag)
    assert not client.zscore(UNACKED_INDEX_KEY, item.tag)


def test_the_host_is_busy_while_it_holds_claimed_jobs(client, publish) -> None:
    for i in range(3):
        publish(f"j{i}")
    assert claim(client, most=0, host="i-1") == []
    assert busy_workers(client) == frozenset()  # nothing claimed, no mark
    first, last = claim(client, most=2, host="i-1")
    assert busy_workers(client) == {"i-1"}
    end = claim_request(QUEUE, TASK_NAMES[QUEUE], "d1", 2, 1, 90, "i-1").end_commands()
    for item, is_last in ((first, False), (last, True)):
        assert busy_workers(client) == {"i-1"}  # between two claimed jobs too
        pipe = client.pipeline()
        for command in [*ack_commands("d1", item.tag), *(end if is_last else [])]:
            pipe.execute_command(*command)
        pipe.execute()
    assert busy_workers(client) == frozenset()
    assert client.hlen(UNACKED_KEY) == 0 and client.zcard(UNACKED_INDEX_KEY) == 0
    assert not client.exists(ledger_key("d1"))
    assert give_back(client, QUEUE, "d1") == 0  # nothing left to give back


def test_give_back_ends_the_busy_mark(client, publish) -> None:
    for i in range(3):
        publish(f"j{i}")
    claim(client, most=2, host="i-1")
    assert give_back(client, QUEUE, "d1", host="i-1") == 2
    assert busy_workers(client) == frozenset()


def test_give_back_puts_them_first_in_line_once(client, publish) -> None:
    for i in range(5):
        publish(f"j{i}")
    taken = claim(client, most=3)
    ack = ack_commands("d1", taken[0].tag)  # j0 ran
    client.pipeline().execute_command(*ack[0]).execute_command(*ack[1]) \
        .execute_command(*ack[2]).execute()
    assert give_back(client, QUEUE, "d1") == 2
    order = [json.loads(m)["headers"]["id"] for m in reversed(client.lrange(QUEUE, 0, -1))]
    assert order == ["j1", "j2", "j3", "j4"]  # in BRPOP order
    assert give_back(client, QUEUE, "d1") == 0  # idempotent
    assert client.hlen(UNACKED_KEY) == 0 and not client.exists(ledger_key("d1"))


def test_give_back_skips_what_kombu_restored_already(client, publish,
                                                     idle_redis_url: str) -> None:
    publish("j0")
    publish("j1")
    taken = claim(client, most=2)
    with Connection(idle_redis_url, transport_options={"visibility_timeout": 0}) as conn:
        conn.default_channel.qos.restore_visible(num=10)
    assert give_back(client, QUEUE, "d1", [item.tag for item in taken]) == 0
    assert client.llen(QUEUE) == 2  # once each, not twice


def _jobs(client: redis.Redis, publish, n: int) -> list[str]:
    store = JobStore(client, 600)
    ids = []
    for _ in range(n):
        blob = RedisBlobStore(client, 600).put(image_bytes(20))
        job_id = store.create(QUEUE, blob).id
        publish(job_id)
        ids.append(job_id)
    return ids


def test_run_job_claims_the_next_job_at_each_finish(client, publish) -> None:
    ids = _jobs(client, publish, 6)
    first = client.rpop(QUEUE)  # the delivery Celery made
    assert json.loads(first)["headers"]["id"] == ids[0]
    request = claim_request(QUEUE, TASK_NAMES[QUEUE], ids[0], 1, 1, 90, "i-1")
    outcome = run_job(QUEUE, ids[0], "w1", rides=Rides(claim=request))
    assert outcome.outcome == "succeeded"
    ran = []
    while outcome.claimed:  # as workers.delivery does, 3 claimed jobs at most
        [item] = outcome.claimed
        assert busy_workers(client) == {"i-1"}
        assert JobStore(client, 600).get(item.job_id).status == "queued"
        more = len(ran) < 2
        ack = (*ack_commands(ids[0], item.tag), *([] if more else request.end_commands()))
        outcome = run_job(QUEUE, item.job_id, "w1",
                          rides=Rides(ack=ack, claim=request if more else None))
        assert outcome.outcome == "succeeded"
        ran.append(item.job_id)
    assert ran == ids[1:4]
    store = JobStore(client, 600)
    assert [store.get(i).status for i in ids] == ["succeeded"] * 4 + ["queued"] * 2
    assert client.hlen(UNACKED_KEY) == 0 and not client.exists(ledger_key(ids[0]))
    assert busy_workers(client) == frozenset()


def test_a_claimed_duplicate_is_acked_too(client, publish) -> None:
    [job_id] = _jobs(client, publish, 1)
    run_job(QUEUE, job_id, "w1")
    publish(job_id)  # delivered again
    [item] = claim(client, most=1, delivery="d2")
    outcome = run_job(QUEUE, job_id, "w1", rides=Rides(ack=tuple(ack_commands("d2", item.tag))))
    assert outcome.outcome == "duplicate"
    assert client.hlen(UNACKED_KEY) == 0 and not client.exists(ledger_key("d2"))


def test_a_claimed_job_at_its_deliverys_soft_limit_is_not_failed(client, publish,
                                                                 monkeypatch) -> None:
    [job_id] = _jobs(client, publish, 1)
    [item] = claim(client, most=1)
    model = runtime.model_for(QUEUE)

    def out_of_time(*_):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(model, "predict", out_of_time)
    with pytest.raises(SoftTimeLimitExceeded):
        run_job(QUEUE, job_id, "w1", rides=Rides(ack=tuple(ack_commands("d1", item.tag))))
    assert JobStore(client, 600).get(job_id).status == "running"  # not failed
    assert give_back(client, QUEUE, "d1") == 1
    monkeypatch.undo()
