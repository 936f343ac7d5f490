"""``visionq.broker``, ``visionq.kombu_redis`` (and the autoscaler's snapshot) against a real
valkey server, with messages from real kombu/Celery."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from celery import Celery
from kombu import Connection, Exchange, Producer, Queue

from autoscale import observe
from autoscale.rates import ArrivalRates
from visionq import broker, kombu_redis


@pytest.fixture()
def scaler_redis_url(idle_redis_url: str) -> str:
    """A database no worker consumes (flushed around each test)."""
    return idle_redis_url


@pytest.fixture()
def rconn(scaler_redis_url: str) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(scaler_redis_url)
    try:
        yield conn
    finally:
        conn.close()


def publish(url: str, queue: str, n: int, priority: int | None = None) -> None:
    q = Queue(queue, Exchange(queue, type="direct"), routing_key=queue,
              queue_arguments={"x-max-priority": 9} if priority is not None else None)
    with Connection(url) as conn:
        producer = Producer(conn)
        for i in range(n):
            producer.publish({"i": i}, exchange=q.exchange, routing_key=queue, declare=[q],
                             priority=priority)


def test_queue_length_counts_every_priority_list(scaler_redis_url: str, rconn: redis.Redis) -> None:
    assert kombu_redis.queue_length(rconn, "face") == 0
    publish(scaler_redis_url, "face", 3)
    publish(scaler_redis_url, "face", 2, priority=9)
    publish(scaler_redis_url, "detect", 4)
    assert rconn.llen("face") == 3
    assert rconn.llen("face\x06\x169") == 2  # kombu's sub-queue for priority step 9
    assert kombu_redis.queue_length(rconn, "face") == 5
    assert kombu_redis.queue_length(rconn, "detect") == 4
    assert kombu_redis.queue_length(rconn, "classify") == 0


def reserve(conn: Connection, queue: str | Queue):
    """Take one message without acking it (``basic_get``: no prefetch), like a worker does."""
    q = queue if isinstance(queue, Queue) else Queue(queue, Exchange(queue), routing_key=queue)
    msg = q(conn.default_channel).get(no_ack=False)
    assert msg is not None
    return msg


def test_in_flight_attributes_unacked_messages_to_their_queue(
    scaler_redis_url: str, rconn: redis.Redis
) -> None:
    publish(scaler_redis_url, "face", 3)
    publish(scaler_redis_url, "detect", 2)
    with Connection(scaler_redis_url) as conn:
        held = [reserve(conn, "face"), reserve(conn, "face"), reserve(conn, "detect")]
        assert rconn.hlen("unacked") == 3 and rconn.zcard("unacked_index") == 3
        assert kombu_redis.in_flight(rconn, ["face", "detect", "classify"]) == {
            "face": 2, "detect": 1, "classify": 0}
        assert kombu_redis.in_flight(rconn) == {"face": 2, "detect": 1}
        assert kombu_redis.queue_length(rconn, "face") == 1
        held[2].ack()
        assert kombu_redis.in_flight(rconn, ["face"]) == {"face": 2}
        assert kombu_redis.in_flight(rconn, ["detect"]) == {"detect": 0, "?": 2}
        for m in held[:2]:
            m.ack()
    assert kombu_redis.in_flight(rconn, ["face", "detect"]) == {"face": 0, "detect": 0}


def test_celery_producer_messages_are_seen(scaler_redis_url: str, rconn: redis.Redis) -> None:
    app = Celery("probe", broker=scaler_redis_url)
    for _ in range(4):
        app.send_task("tasks.face.detect", args=("blob-key",), queue="face")
    app.send_task("tasks.face.detect", queue="face", priority=6)
    assert kombu_redis.queue_length(rconn, "face") == 5
    with Connection(scaler_redis_url) as conn:
        msg = reserve(conn, "face")
        assert msg.headers["task"] == "tasks.face.detect"
        assert kombu_redis.in_flight(rconn, ["face"]) == {"face": 1}
        assert kombu_redis.queue_length(rconn, "face") == 4
        msg.ack()


@pytest.mark.parametrize(
    ("exchange", "routing_key", "bound", "expected"),
    [
        ("face", "face", {}, "face"),
        ("", "face", {}, "face"),  # default direct exchange routes by queue name
        ("face", "", {}, "face"),
        ("images", "hi", {("images", "hi"): "detect"}, "detect"),
        ("images", "hi", {}, None),
    ],
)
def test_attribute(exchange: str, routing_key: str, bound, expected) -> None:
    assert kombu_redis.attribute(exchange, routing_key, ["face", "detect"], bound) == expected


def test_in_flight_resolves_custom_exchanges_through_bindings(
    scaler_redis_url: str, rconn: redis.Redis
) -> None:
    ex = Exchange("images", type="direct")
    q = Queue("detect", ex, routing_key="objects")
    with Connection(scaler_redis_url) as conn:
        Producer(conn).publish({}, exchange=ex, routing_key="objects", declare=[q])
        msg = reserve(conn, q)
        assert kombu_redis.in_flight(rconn, ["face", "detect"]) == {"face": 0, "detect": 1}
        msg.ack()


def test_garbage_in_unacked_is_ignored(rconn: redis.Redis) -> None:
    rconn.hset("unacked", mapping={"a": "not json", "b": "[1]", "c": '[{}, "face", "face"]'})
    assert kombu_redis.in_flight(rconn, ["face"]) == {"face": 1}


def test_service_time_round_trip(rconn: redis.Redis) -> None:
    assert broker.recent_service_time(rconn, "face") is None
    for s in (1.0, 2.0, 3.0):
        broker.record_service_time(rconn, "face", s, now=1000.0)
    assert broker.recent_service_time(rconn, "face", now=1001.0) == pytest.approx(2.0)
    assert broker.recent_service_time(rconn, "detect", now=1001.0) is None
    assert broker.completed(rconn, "face") == 3
    # old samples age out
    assert broker.recent_service_time(rconn, "face", now=1000.0 + 10_000) is None
    # the list stays bounded
    for _ in range(broker.SERVICE_SAMPLES + 50):
        broker.record_service_time(rconn, "face", 0.5, now=2000.0)
    assert rconn.llen(broker.SERVICE_KEY.format(queue="face")) == broker.SERVICE_SAMPLES
    assert broker.recent_service_time(rconn, "face", now=2000.0) == pytest.approx(0.5)


def test_busy_marks(rconn: redis.Redis) -> None:
    broker.mark_busy(rconn, "i-aaa", "t1", ttl=60, now=100)
    broker.mark_busy(rconn, "i-aaa", "t2", ttl=60, now=100)
    broker.mark_busy(rconn, "i-bbb", "t3", ttl=5, now=100)
    assert broker.busy_workers(rconn, now=101) == {"i-aaa", "i-bbb"}
    broker.mark_idle(rconn, "i-aaa", "t1")
    assert broker.busy_workers(rconn, now=101) == {"i-aaa", "i-bbb"}  # t2 still running
    broker.mark_idle(rconn, "i-aaa", "t2")
    assert broker.busy_workers(rconn, now=101) == {"i-bbb"}
    assert broker.busy_workers(rconn, now=200) == frozenset()  # expired (worker died)


def test_snapshot_in_one_poll_costs_few_round_trips(scaler_redis_url: str,
                                                     rconn: redis.Redis) -> None:
    publish(scaler_redis_url, "face", 200)
    publish(scaler_redis_url, "detect", 50, priority=3)
    for i in range(300):  # a busy broker: 300 unacked messages of ~1 KB
        rconn.hset("unacked", f"tag{i}", f'[{{"body": "{"x" * 1000}"}}, "face", "face"]')
    broker.record_service_time(rconn, "face", 0.25)
    broker.mark_busy(rconn, "i-1", "t")
    queues = ["face", "detect", "classify"]
    snap = observe.snapshot(rconn, queues)
    assert snap.backlog == {"face": 200, "detect": 50, "classify": 0}
    assert snap.in_flight == {"face": 300, "detect": 0, "classify": 0}
    assert snap.service_time["face"] == pytest.approx(0.25)
    assert snap.service_time["detect"] is None
    assert snap.done == {"face": 1, "detect": 0, "classify": 0}
    assert snap.busy == {"i-1"}
    # Cheap by construction, not by the clock (CI machines are busy): count round trips.
    sent = []
    original = redis.connection.Connection.send_packed_command

    def counting(self, command, check_health=True):
        sent.append(command)
        return original(self, command, check_health)

    redis.connection.Connection.send_packed_command = counting
    try:
        observe.snapshot(rconn, queues)
    finally:
        redis.connection.Connection.send_packed_command = original
    assert len(sent) <= 3, f"{len(sent)} round trips for one snapshot"


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        # (time, depth, done): 10 arrivals/s with nothing completing
        ([(0, 0, 0), (1, 10, 0)], 10.0),
        # depth steady but 5/s completing: 5/s arriving
        ([(0, 20, 0), (2, 20, 10)], 5.0),
        # draining faster than arrivals: never negative
        ([(0, 100, 0), (1, 0, 10)], 0.0),
        # a counter reset does not produce a negative or huge rate
        ([(0, 0, 1000), (1, 3, 0)], 3.0),
    ],
)
def test_arrival_rate(samples, expected) -> None:
    rates = ArrivalRates()
    got = 0.0
    for t, depth, done in samples:
        got = rates.update("face", t, depth, done)
    assert got == pytest.approx(expected)


def test_arrival_rate_is_smoothed() -> None:
    rates = ArrivalRates(half_life=60)
    rates.update("q", 0, 0, 0)
    rates.update("q", 5, 50, 0)  # 10/s
    after_quiet = rates.update("q", 65, 50, 0)  # 0/s for one half-life
    assert after_quiet == pytest.approx(5.0)


def test_arrival_rate_is_zero_after_a_quiet_period() -> None:
    """The average's tail does not keep a worker "needed" for many half-lives."""
    rates = ArrivalRates(half_life=60, quiet_seconds=120)
    rates.update("q", 0, 0, 0)
    rates.update("q", 5, 50, 0)  # 10/s
    assert rates.update("q", 65, 50, 0) == pytest.approx(5.0)  # quiet for 60 s: halved
    assert rates.update("q", 124, 50, 0) > 0  # quiet for 119 s
    assert rates.update("q", 125, 50, 0) == 0.0  # quiet for 120 s
    assert rates.update("q", 130, 60, 0) == pytest.approx(10 / 5 * (1 - 0.5 ** (5 / 60)))


def test_mark_done_clears_the_busy_mark_and_records_the_service_time(rconn: redis.Redis) -> None:
    broker.mark_busy(rconn, "i-1", "task-1", now=100.0)
    broker.mark_done(rconn, "i-1", "task-1", "face", 0.25, now=101.0)
    assert broker.busy_workers(rconn, now=101.0) == frozenset()
    assert broker.recent_service_time(rconn, "face", now=101.0) == 0.25
    assert broker.completed(rconn, "face") == 1
    broker.mark_busy(rconn, "i-1", "task-2", now=102.0)
    broker.mark_done(rconn, "i-1", "task-2", "face", None, now=103.0)  # no timing: mark only
    assert broker.busy_workers(rconn, now=103.0) == frozenset()
    assert broker.completed(rconn, "face") == 1
