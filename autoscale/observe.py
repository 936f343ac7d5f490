"""The autoscaler's view of the broker: everything for one poll in one snapshot.

The readers (kombu's Redis layout, service times, busy marks) live in ``visionq.broker``,
shared with the metrics collector and the workers that write the hints.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from redis import Redis

from visionq.broker import (
    PRIORITY_STEPS,
    SERVICE_SAMPLES,
    as_text,
    in_flight,
    mean_recent,
    priority_keys,
)
from visionq.keys import BUSY_KEY, DONE_KEY, SERVICE_KEY


@dataclass(frozen=True)
class BrokerSnapshot:
    backlog: dict[str, int]
    in_flight: dict[str, int]
    service_time: dict[str, float | None]
    done: dict[str, int]
    busy: frozenset[str]


def snapshot(conn: Redis, queues: Iterable[str], now: float | None = None) -> BrokerSnapshot:
    """Everything for one poll in two pipelined round trips (plus bindings if needed)."""
    names = list(queues)
    now = time.time() if now is None else now
    pipe = conn.pipeline(transaction=False)
    for q in names:
        for key in priority_keys(q):
            pipe.llen(key)
        pipe.lrange(SERVICE_KEY.format(queue=q), 0, SERVICE_SAMPLES - 1)
        pipe.get(DONE_KEY.format(queue=q))
    pipe.zrangebyscore(BUSY_KEY, now, "+inf")
    results = pipe.execute()
    backlog, service, done = {}, {}, {}
    step = len(PRIORITY_STEPS) + 2
    for i, q in enumerate(names):
        chunk = results[i * step:(i + 1) * step]
        backlog[q] = sum(int(n) for n in chunk[: len(PRIORITY_STEPS)])
        service[q] = mean_recent(chunk[-2], now)
        done[q] = int(chunk[-1] or 0)
    busy = frozenset(as_text(m).split("/", 1)[0] for m in results[-1])
    return BrokerSnapshot(backlog, in_flight(conn, names), service, done, busy)
