"""``visionq.broker`` (and the autoscaler's snapshot) against a real valkey server, with
messages from real kombu/Celery."""

from __future__ import annotations

import pytest
import redis

from autoscale import observe
from autoscale.rates import ArrivalRates
from tests.visionq.test_kombu_redis import publish
from visionq import broker


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
