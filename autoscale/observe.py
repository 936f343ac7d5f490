"""The autoscaler's view of the broker: everything for one poll in one snapshot.

The readers live in ``visionq.kombu_redis`` (kombu's Redis layout) and ``visionq.broker``
(service times, busy marks), shared with the metrics collector and the workers that write the hints.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from redis import Redis

from visionq.broker import SERVICE_SAMPLES, as_text, mean_recent
from visionq.keys import BUSY_KEY, DONE_KEY, SERVICE_KEY
from visionq.kombu_redis import in_flight, length_commands


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
    lengths = {q: length_commands(q) for q in names}
    for q in names:
        for command in lengths[q]:
            pipe.execute_command(*command)
        pipe.lrange(SERVICE_KEY.format(queue=q), 0, SERVICE_SAMPLES - 1)
        pipe.get(DONE_KEY.format(queue=q))
    pipe.zrangebyscore(BUSY_KEY, now, "+inf")
    results = pipe.execute()
    backlog, service, done = {}, {}, {}
    at = 0
    for q in names:
        step = len(lengths[q]) + 2
        chunk = results[at:at + step]
        at += step
        backlog[q] = sum(int(n) for n in chunk[: len(lengths[q])])
        service[q] = mean_recent(chunk[-2], now)
        done[q] = int(chunk[-1] or 0)
    busy = frozenset(as_text(m).split("/", 1)[0] for m in results[-1])
    return BrokerSnapshot(backlog, in_flight(conn, names), service, done, busy)
