"""Pure scaling decisions: ``decide(observation, policy, state) -> Decision``.

No I/O and no clock: the caller passes ``observation.now``. One pool per queue.

Per queue, in order (each step is its own small function, table-tested):

1. **Demand** in workers: work waiting, expressed against the target backlog in
   *seconds of work per worker*, plus the steady flow of arrivals at the target
   utilisation::

       drain  = projected_backlog * service_time / (concurrency * target_backlog_seconds)
       flow   = arrival_rate * service_time / (concurrency * target_utilisation)
       demand = drain + flow

   ``projected_backlog`` adds what will pile up while new instances boot if arrivals
   outrun the capacity we already have (running + pending): reacting to the queue we
   will have when help arrives, not to the one we have now.
2. **Tolerance**: if ``demand / capacity`` is within ``1 ± tolerance`` keep the current
   size (HPA's tolerance band), otherwise ``ceil(demand)``.
3. **In-flight floor**: never recommend fewer workers than needed to hold the tasks
   already reserved (``ceil(in_flight / concurrency)``, at most the current capacity:
   in-flight work lives on workers we already have).
4. **Stabilisation**: a scale-down uses the highest recommendation over the last
   ``stabilization_seconds`` (HPA's scale-down window); scale-up is immediate.
5. **Step limits**: at most ``max_step_up`` / ``max_step_down`` per decision.
6. **Clamp** to ``[min_workers, max_workers]``, last and always.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

#: Floating-point slack so that e.g. a demand of 2.0000000001 workers is 2, not 3.
EPSILON = 1e-9

#: Seconds of queued work each worker may have before we add workers.
DEFAULT_TARGET_BACKLOG_SECONDS = 30.0
#: Service time assumed until workers have reported one.
DEFAULT_SERVICE_TIME = 1.0


@dataclass(frozen=True)
class QueueObservation:
    """What the observer saw for one queue (and its pool of workers)."""

    backlog: int = 0
    """Messages waiting in the queue (all priority sub-queues)."""
    in_flight: int = 0
    """Messages reserved by workers but not yet acknowledged."""
    arrival_rate: float = 0.0
    """Recent arrivals, messages per second."""
    service_time: float | None = None
    """Measured seconds per task, ``None`` if nothing measured yet."""
    current: int = 0
    """Workers running and serving."""
    pending: int = 0
    """Workers requested but still booting."""

    @property
    def capacity(self) -> int:
        return self.current + self.pending


@dataclass(frozen=True)
class Observation:
    now: float
    queues: Mapping[str, QueueObservation]


@dataclass(frozen=True)
class PoolPolicy:
    """Knobs for one pool; defaults suit a CPU model worker with 1 task at a time."""

    target_backlog_seconds: float = DEFAULT_TARGET_BACKLOG_SECONDS
    concurrency: int = 1
    min_workers: int = 0
    max_workers: int = 10
    max_step_up: int = 10
    max_step_down: int = 2
    stabilization_seconds: float = 300.0
    boot_seconds: float = 90.0
    tolerance: float = 0.1
    target_utilization: float = 0.8
    default_service_time: float = DEFAULT_SERVICE_TIME

    def __post_init__(self) -> None:
        if self.target_backlog_seconds <= 0:
            raise ValueError("target_backlog_seconds must be > 0")
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if not 0 <= self.min_workers <= self.max_workers:
            raise ValueError("need 0 <= min_workers <= max_workers")
        if self.max_step_up < 1 or self.max_step_down < 1:
            raise ValueError("step limits must be >= 1")
        if self.stabilization_seconds < 0 or self.boot_seconds < 0:
            raise ValueError("windows must be >= 0")
        if not 0 <= self.tolerance < 1:
            raise ValueError("tolerance must be in [0, 1)")
        if not 0 < self.target_utilization <= 1:
            raise ValueError("target_utilization must be in (0, 1]")
        if self.default_service_time <= 0:
            raise ValueError("default_service_time must be > 0")


@dataclass(frozen=True)
class Policy:
    pools: Mapping[str, PoolPolicy] = field(default_factory=dict)
    default: PoolPolicy = field(default_factory=PoolPolicy)

    def for_queue(self, queue: str) -> PoolPolicy:
        return self.pools.get(queue, self.default)


@dataclass(frozen=True)
class State:
    """Recommendation history per queue: ``(time, recommendation)`` pairs, oldest first."""

    history: Mapping[str, tuple[tuple[float, int], ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    desired: Mapping[str, int]
    reasons: Mapping[str, str]
    state: State

    def changed(self, observation: Observation) -> dict[str, tuple[int, int]]:
        """Queues whose desired capacity differs from the observed one: ``(from, to)``."""
        return {
            q: (observation.queues[q].capacity, n)
            for q, n in self.desired.items()
            if q in observation.queues and observation.queues[q].capacity != n
        }


# -- the individual rules ---------------------------------------------------------


def service_time(obs: QueueObservation, pool: PoolPolicy) -> float:
    if obs.service_time is None or obs.service_time <= 0:
        return pool.default_service_time
    return obs.service_time


def projected_backlog(obs: QueueObservation, pool: PoolPolicy) -> float:
    """Backlog when instances started now would be serving.

    Only the shortfall of arrivals over what running + pending capacity can serve
    accumulates during ``boot_seconds``; with enough capacity this is the backlog.
    """
    rate_served = obs.capacity * pool.concurrency / service_time(obs, pool)
    shortfall = max(0.0, obs.arrival_rate - rate_served)
    return obs.backlog + shortfall * pool.boot_seconds


def demand(obs: QueueObservation, pool: PoolPolicy) -> float:
    """Workers needed (fractional) for the work waiting and arriving."""
    s = service_time(obs, pool)
    drain = projected_backlog(obs, pool) * s / (pool.concurrency * pool.target_backlog_seconds)
    flow = max(0.0, obs.arrival_rate) * s / (pool.concurrency * pool.target_utilization)
    return drain + flow


def in_flight_floor(obs: QueueObservation, pool: PoolPolicy) -> int:
    needed = math.ceil(obs.in_flight / pool.concurrency - EPSILON) if obs.in_flight > 0 else 0
    return min(needed, obs.capacity)


def recommend(obs: QueueObservation, pool: PoolPolicy) -> tuple[int, str]:
    """Raw recommendation (before stabilisation, steps and clamping) and why."""
    need = demand(obs, pool)
    cap = obs.capacity
    if cap > 0 and abs(need / cap - 1.0) <= pool.tolerance:
        rec, why = cap, f"demand {need:.2f} within ±{pool.tolerance:.0%} of {cap}"
    else:
        rec = max(0, math.ceil(need - EPSILON))
        why = (
            f"demand {need:.2f} workers (backlog {obs.backlog}, "
            f"{obs.arrival_rate:.2f}/s x {service_time(obs, pool):.2f}s)"
        )
    floor = in_flight_floor(obs, pool)
    if rec < floor:
        rec, why = floor, f"{why}; kept {floor} for {obs.in_flight} in-flight"
    return rec, why


def stabilize(
    queue_history: tuple[tuple[float, int], ...],
    now: float,
    rec: int,
    capacity: int,
    window: float,
) -> tuple[int, tuple[tuple[float, int], ...]]:
    """HPA scale-down stabilisation: the highest recommendation within ``window``.

    Returns the stabilised recommendation and the trimmed history (including ``rec``).
    Scale-up is not delayed.
    """
    kept = tuple((t, r) for t, r in queue_history if now - t < window and t <= now)
    history = (*kept, (now, rec))
    if rec >= capacity:
        return rec, history
    highest = max(r for _, r in history)
    return min(capacity, highest), history


def limit_step(target: int, capacity: int, pool: PoolPolicy) -> int:
    return max(capacity - pool.max_step_down, min(capacity + pool.max_step_up, target))


def clamp(target: int, pool: PoolPolicy) -> int:
    return max(pool.min_workers, min(pool.max_workers, target))


# -- the whole decision -----------------------------------------------------------


def decide_queue(
    queue: str, obs: QueueObservation, pool: PoolPolicy, state: State, now: float
) -> tuple[int, str, tuple[tuple[float, int], ...]]:
    rec, why = recommend(obs, pool)
    cap = obs.capacity
    stable, history = stabilize(
        tuple(state.history.get(queue, ())), now, rec, cap, pool.stabilization_seconds
    )
    if stable != rec:
        why = f"{why}; holding {stable} (highest in {pool.stabilization_seconds:.0f}s window)"
    stepped = limit_step(stable, cap, pool)
    if stepped != stable:
        why = f"{why}; step-limited to {stepped}"
    final = clamp(stepped, pool)
    if final != stepped:
        why = f"{why}; clamped to [{pool.min_workers}, {pool.max_workers}]"
    verb = "scale up" if final > cap else "scale down" if final < cap else "keep"
    return final, f"{queue}: {verb} {cap} -> {final}: {why}", history


def decide(observation: Observation, policy: Policy, state: State | None = None) -> Decision:
    """Desired capacity per queue's pool, with a reason each, and the next state."""
    state = state or State()
    desired: dict[str, int] = {}
    reasons: dict[str, str] = {}
    history = dict(state.history)
    for queue, obs in observation.queues.items():
        n, why, hist = decide_queue(
            queue, obs, policy.for_queue(queue), state, observation.now
        )
        desired[queue], reasons[queue], history[queue] = n, why, hist
    return Decision(desired=desired, reasons=reasons, state=replace(state, history=history))
