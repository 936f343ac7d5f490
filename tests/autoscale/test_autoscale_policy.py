"""Table tests per rule of ``autoscale.policy`` and hypothesis properties for its invariants."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscale.policy import (
    Decision,
    Observation,
    Policy,
    PoolPolicy,
    QueueObservation,
    State,
    clamp,
    decide,
    demand,
    in_flight_floor,
    limit_step,
    projected_backlog,
    recommend,
    stabilize,
)

Q = "face"


def one(obs: QueueObservation, pool: PoolPolicy, state: State | None = None, now: float = 0.0):
    d = decide(Observation(now=now, queues={Q: obs}), Policy(default=pool), state)
    return d.desired[Q], d


# -- rule tables --------------------------------------------------------------------

POOL = PoolPolicy(
    target_backlog_seconds=10, concurrency=1, min_workers=0, max_workers=20,
    max_step_up=100, max_step_down=100, stabilization_seconds=0, boot_seconds=0,
    tolerance=0.0, target_utilization=1.0,
)


@pytest.mark.parametrize(
    ("obs", "pool", "expected"),
    [
        # backlog only: 100 tasks * 1 s / 10 s per worker = 10 workers
        (QueueObservation(backlog=100, service_time=1.0), POOL, 10.0),
        # concurrency 4 divides it
        (QueueObservation(backlog=100, service_time=1.0), PoolPolicy(
            target_backlog_seconds=10, concurrency=4, tolerance=0, target_utilization=1,
            boot_seconds=0), 2.5),
        # the target is seconds of work, not a count: slow tasks need more workers
        (QueueObservation(backlog=100, service_time=3.0), POOL, 30.0),
        # flow only: 2/s * 1.5 s = 3 busy workers (Little's law), at 100 % utilisation
        (QueueObservation(arrival_rate=2.0, service_time=1.5), POOL, 3.0),
        # ... and at 75 % target utilisation 4
        (QueueObservation(arrival_rate=2.0, service_time=1.5),
         PoolPolicy(target_backlog_seconds=10, target_utilization=0.75, boot_seconds=0), 4.0),
        # unknown service time: the pool default
        (QueueObservation(backlog=20), PoolPolicy(
            target_backlog_seconds=10, default_service_time=2.0, target_utilization=1,
            boot_seconds=0), 4.0),
        # nothing to do
        (QueueObservation(current=3), POOL, 0.0),
    ],
)
def test_demand(obs: QueueObservation, pool: PoolPolicy, expected: float) -> None:
    assert demand(obs, pool) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("obs", "boot", "expected"),
    [
        # arrivals 5/s, 1 worker serves 1/s: 4/s short for 60 s of boot
        (QueueObservation(backlog=10, arrival_rate=5, service_time=1, current=1), 60, 250),
        # pending workers count as capacity: no shortfall
        (QueueObservation(backlog=10, arrival_rate=5, service_time=1, current=1, pending=4),
         60, 10),
        # enough capacity: just the backlog
        (QueueObservation(backlog=10, arrival_rate=1, service_time=1, current=2), 60, 10),
        # no boot delay: just the backlog
        (QueueObservation(backlog=10, arrival_rate=5, service_time=1), 0, 10),
    ],
)
def test_projected_backlog(obs: QueueObservation, boot: float, expected: float) -> None:
    assert projected_backlog(obs, PoolPolicy(boot_seconds=boot)) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("in_flight", "concurrency", "capacity", "expected"),
    [(0, 1, 5, 0), (3, 1, 5, 3), (3, 2, 5, 2), (4, 2, 5, 2), (9, 1, 5, 5), (1, 4, 0, 0)],
)
def test_in_flight_floor(in_flight: int, concurrency: int, capacity: int, expected: int) -> None:
    obs = QueueObservation(in_flight=in_flight, current=capacity)
    assert in_flight_floor(obs, PoolPolicy(concurrency=concurrency)) == expected


@pytest.mark.parametrize(
    ("obs", "expected"),
    [
        # demand 10.5 vs capacity 10: inside a 10 % band -> keep 10
        (QueueObservation(backlog=105, service_time=1, current=10), 10),
        # demand 11.5: outside -> ceil
        (QueueObservation(backlog=115, service_time=1, current=10), 12),
        # demand 9.5 inside band going down too
        (QueueObservation(backlog=95, service_time=1, current=10), 10),
        # demand 8: outside -> 8
        (QueueObservation(backlog=80, service_time=1, current=10), 8),
        # from zero the band does not apply (no ratio): ceil
        (QueueObservation(backlog=1, service_time=1), 1),
        # nothing waiting, but 3 tasks in flight on 5 workers: keep 3
        (QueueObservation(in_flight=3, current=5), 3),
        # exact integer demand does not round up through float noise
        (QueueObservation(backlog=30, service_time=0.1, current=0), 1),
    ],
)
def test_recommend_tolerance_and_floor(obs: QueueObservation, expected: int) -> None:
    pool = PoolPolicy(target_backlog_seconds=10, tolerance=0.1, boot_seconds=0)
    assert recommend(obs, pool)[0] == expected


@pytest.mark.parametrize(
    ("history", "now", "rec", "capacity", "expected"),
    [
        ((), 100, 2, 5, 2),  # no history: the recommendation
        (((50, 5),), 100, 2, 5, 5),  # a higher recommendation inside the window holds
        (((50, 4),), 100, 2, 5, 4),  # ... down to the highest seen
        (((50, 8),), 100, 2, 5, 5),  # never above current capacity when scaling down
        (((-500, 5),), 100, 2, 5, 2),  # expired entries are forgotten
        (((50, 1),), 100, 7, 5, 7),  # scale-up is immediate
    ],
)
def test_stabilize(history, now, rec, capacity, expected) -> None:
    got, new_history = stabilize(history, now, rec, capacity, window=300)
    assert got == expected
    assert new_history[-1] == (now, rec)
    assert all(now - t < 300 for t, _ in new_history)


@pytest.mark.parametrize(
    ("target", "capacity", "up", "down", "expected"),
    [(10, 2, 4, 1, 6), (0, 5, 4, 2, 3), (4, 5, 4, 2, 4), (5, 5, 1, 1, 5)],
)
def test_limit_step(target: int, capacity: int, up: int, down: int, expected: int) -> None:
    assert limit_step(target, capacity, PoolPolicy(max_step_up=up, max_step_down=down)) == expected


@pytest.mark.parametrize(("target", "expected"), [(0, 1), (1, 1), (3, 3), (19, 4)])
def test_clamp(target: int, expected: int) -> None:
    assert clamp(target, PoolPolicy(min_workers=1, max_workers=4)) == expected


@pytest.mark.parametrize(
    ("obs", "pool", "expected", "reason_part"),
    [
        (QueueObservation(backlog=5), PoolPolicy(), 1, "scale up 0 -> 1"),
        (QueueObservation(), PoolPolicy(min_workers=2), 2, "clamped"),
        (QueueObservation(backlog=10_000, service_time=1, current=2),
         PoolPolicy(max_workers=19), 12, "step-limited"),
        (QueueObservation(backlog=10_000, service_time=1, current=2),
         PoolPolicy(max_workers=8), 8, "clamped to [0, 8]"),
        (QueueObservation(current=4), PoolPolicy(stabilization_seconds=0), 2, "scale down 4 -> 2"),
        (QueueObservation(current=4, in_flight=4), PoolPolicy(stabilization_seconds=0), 4,
         "in-flight"),
    ],
)
def test_decide_examples(obs, pool, expected, reason_part) -> None:
    got, d = one(obs, pool)
    assert got == expected
    assert reason_part in d.reasons[Q]


def test_scale_down_waits_for_the_window() -> None:
    pool = PoolPolicy(stabilization_seconds=300, max_step_down=10, target_backlog_seconds=10)
    busy = QueueObservation(backlog=60, service_time=1, current=6)
    got, d = one(busy, pool, now=0)
    assert got == 6
    idle = QueueObservation(current=6)
    for t in (10, 100, 299):
        got, d = one(idle, pool, d.state, now=t)
        assert got == 6, t
        assert "holding 6" in d.reasons[Q]
    got, d = one(idle, pool, d.state, now=301)
    assert got == 0


def test_decide_is_pure_and_handles_several_queues() -> None:
    state = State()
    obs = Observation(now=1.0, queues={
        "face": QueueObservation(backlog=100, service_time=1, current=1),
        "detect": QueueObservation(current=2),
    })
    policy = Policy(pools={"face": PoolPolicy(max_workers=3)},
                    default=PoolPolicy(stabilization_seconds=0))
    d1 = decide(obs, policy, state)
    d2 = decide(obs, policy, state)
    assert d1 == d2 and state == State()
    assert d1.desired == {"face": 3, "detect": 0}
    assert d1.changed(obs) == {"face": (1, 3), "detect": (2, 0)}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"target_backlog_seconds": 0}, {"concurrency": 0}, {"min_workers": 3, "max_workers": 2},
        {"max_step_up": 0}, {"tolerance": 1.0}, {"target_utilization": 0},
        {"default_service_time": 0}, {"boot_seconds": -1},
    ],
)
def test_pool_policy_rejects_nonsense(kwargs) -> None:
    with pytest.raises(ValueError):
        PoolPolicy(**kwargs)


# -- properties ---------------------------------------------------------------------

pools = st.builds(
    lambda lo, span, **kw: PoolPolicy(min_workers=lo, max_workers=lo + span, **kw),
    st.integers(0, 5),
    st.integers(0, 30),
    target_backlog_seconds=st.floats(1, 600),
    concurrency=st.integers(1, 8),
    max_step_up=st.integers(1, 20),
    max_step_down=st.integers(1, 20),
    stabilization_seconds=st.floats(0, 900),
    boot_seconds=st.floats(0, 300),
    tolerance=st.floats(0, 0.5),
    target_utilization=st.floats(0.3, 1.0),
)
observations = st.builds(
    QueueObservation,
    backlog=st.integers(0, 100_000),
    in_flight=st.integers(0, 500),
    arrival_rate=st.floats(0, 500),
    service_time=st.none() | st.floats(0.001, 600),
    current=st.integers(0, 60),
    pending=st.integers(0, 20),
)
histories = st.lists(
    st.tuples(st.floats(-1000, 0), st.integers(0, 60)), max_size=10
).map(lambda h: tuple(sorted(h)))


@settings(max_examples=400, deadline=None)
@given(obs=observations, pool=pools, history=histories)
def test_invariants(obs: QueueObservation, pool: PoolPolicy, history) -> None:
    got, d = one(obs, pool, State(history={Q: history}), now=0.0)
    cap = obs.capacity
    # 1. min/max always hold
    assert pool.min_workers <= got <= pool.max_workers
    # 2. never below what in-flight work needs (bounded by what exists and by max)
    needed = math.ceil(obs.in_flight / pool.concurrency)
    assert got >= min(needed, cap, pool.max_workers)
    # 3. step limits hold whenever the current size is itself legal
    if pool.min_workers <= cap <= pool.max_workers:
        assert cap - pool.max_step_down <= got <= cap + pool.max_step_up
    # 4. work waiting from zero gets a worker
    if cap == 0 and (obs.backlog > 0 or obs.arrival_rate > 0) and pool.max_workers > 0:
        assert got >= 1
    # 5. a scale-down (other than to obey max) only when no recommendation in the window
    #    wanted the current size
    if got < cap <= pool.max_workers:
        assert all(r < cap for _, r in d.state.history[Q])
    # 6. a reason that names the outcome
    assert f"-> {got}" in d.reasons[Q]


@settings(max_examples=200, deadline=None)
@given(obs=observations, pool=pools, extra=st.integers(1, 10_000))
def test_more_backlog_never_means_fewer_workers(obs, pool, extra) -> None:
    more = QueueObservation(**{**obs.__dict__, "backlog": obs.backlog + extra})
    assert one(more, pool)[0] >= one(obs, pool)[0]


@settings(max_examples=200, deadline=None)
@given(
    arrival=st.floats(0, 50), service=st.floats(0.05, 30), backlog=st.integers(0, 2000),
    start=st.integers(0, 40), pool=pools, dt=st.sampled_from([5.0, 15.0, 30.0]),
)
def test_no_flapping_under_steady_load(arrival, service, backlog, start, pool, dt) -> None:
    """Same load every tick, capacity follows the decision: at most one change of direction,
    then a fixed point."""
    state: State | None = None
    cap = start
    sizes = [cap]
    for tick in range(400):
        obs = QueueObservation(backlog=backlog, arrival_rate=arrival, service_time=service,
                               current=cap)
        d: Decision = decide(Observation(now=tick * dt, queues={Q: obs}), Policy(default=pool),
                             state)
        state, cap = d.state, d.desired[Q]
        sizes.append(cap)
    moves = [b - a for a, b in zip(sizes, sizes[1:], strict=False) if b != a]
    reversals = sum(1 for a, b in zip(moves, moves[1:], strict=False) if (a > 0) != (b > 0))
    assert reversals <= 1, sizes
    assert sizes[-1] == sizes[-2] == sizes[-50], sizes
