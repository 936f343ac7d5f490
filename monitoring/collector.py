"""Broker state read from Redis at scrape time: queue length, in-flight, age of the oldest
waiting job, workers online per queue, the SLOs, whether Redis answers and the length of
the job history's dead-letter list.

Read on demand rather than polled, so the numbers are as fresh as the scrape and an idle
exporter costs nothing.  Queue length and in-flight reuse the autoscaler's broker functions
(``visionq.kombu_redis``), so both see the same numbers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping

import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from monitoring import metrics as names
from visionq.broker import workers_by_queue
from visionq.history import DEAD_LETTER_KEY
from visionq.jobs import JobStore
from visionq.keys import CALLBACK_DUE_KEY, CALLBACK_PENDING_KEY
from visionq.kombu_redis import in_flight, oldest_message_ids, queue_length

log = logging.getLogger(f"visionq.{__name__}")


def oldest_age(conn: redis.Redis, queue: str, now: float | None = None) -> float:
    """Seconds the oldest waiting job of ``queue`` has been queued (0 when empty).

    The oldest message's id (``kombu_redis.oldest_message_ids``) is the job id, whose
    record holds ``queued_at``.
    """
    now = time.time() if now is None else now
    ids = oldest_message_ids(conn, queue)
    if not ids:
        return 0.0
    pipe = conn.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(JobStore.key(job_id), "queued_at")
    stamps = [float(v) for v in pipe.execute() if v]
    return max(0.0, now - min(stamps)) if stamps else 0.0


class BrokerCollector(Collector):
    """A prometheus_client collector over the Celery broker (kombu's Redis layout)."""

    def __init__(self, conn: redis.Redis, queues: Iterable[str],
                 slos: Mapping[str, float],
                 queue_conns: Mapping[str, redis.Redis] | None = None) -> None:
        """``queue_conns``: the Redis of each queue that has one of its own
        (``visionq.shards``); the others, and the worker heartbeats, are on ``conn``."""
        self._conn, self._queues, self._slos = conn, list(queues), dict(slos)
        self._queue_conns = dict(queue_conns or {})

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(self._families())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = self._families()
        length, flight, workers, age, slo, up, dead, hooks, overdue = families
        try:
            online = workers_by_queue(self._conn)
            flying = self._in_flight()
            for queue in self._queues:
                conn = self._queue_conns.get(queue, self._conn)
                length.add_metric([queue], queue_length(conn, queue))
                flight.add_metric([queue], flying.get(queue, 0))
                workers.add_metric([queue], len(online.get(queue, [])))
                age.add_metric([queue], oldest_age(conn, queue))
            dead.add_metric([], self._dead_letters())
            pending, late = self._webhooks()
            hooks.add_metric([], pending)
            overdue.add_metric([], late)
            up.add_metric([], 1)
        except redis.RedisError as exc:
            log.warning("broker metrics unavailable: %s", exc)
            families = [slo, up]
            up.add_metric([], 0)
        for queue in self._queues:
            slo.add_metric([queue, queue], self._slos.get(queue, 0.0))
        return iter(families)

    def _dead_letters(self) -> int:
        """History rows set aside (``visionq.history``), summed over every Redis whose
        stream a writer drains (the main one and each queue's own)."""
        conns = {id(conn): conn for conn in (self._conn, *self._queue_conns.values())}
        return sum(int(conn.llen(DEAD_LETTER_KEY)) for conn in conns.values())

    def _webhooks(self) -> tuple[int, float]:
        """(deliveries pending, seconds the earliest due one is overdue), on the main Redis."""
        pipe = self._conn.pipeline(transaction=False)
        pipe.hlen(CALLBACK_PENDING_KEY)
        pipe.zrange(CALLBACK_DUE_KEY, 0, 0, withscores=True)
        pending, first = pipe.execute()
        late = max(0.0, time.time() - float(first[0][1])) if first else 0.0
        return int(pending), late

    def _in_flight(self) -> dict[str, int]:
        """In-flight per queue, each read from its queue's Redis (``kombu_redis.in_flight``)."""
        by_conn: dict[int, tuple[redis.Redis, list[str]]] = {}
        for queue in self._queues:
            conn = self._queue_conns.get(queue, self._conn)
            by_conn.setdefault(id(conn), (conn, []))[1].append(queue)
        flying: dict[str, int] = {}
        for conn, queues in by_conn.values():
            flying.update(in_flight(conn, queues))
        return flying

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily(names.QUEUE_LENGTH, "Messages waiting in the broker queue.",
                              labels=["queue_name"]),
            GaugeMetricFamily(names.QUEUE_IN_FLIGHT,
                              "Messages delivered to a worker and not yet acknowledged "
                              "(running or prefetched).", labels=["queue_name"]),
            GaugeMetricFamily(names.ACTIVE_WORKERS,
                              "Workers online for the queue (visionq heartbeats).",
                              labels=["queue_name"]),
            GaugeMetricFamily(names.QUEUE_OLDEST_AGE,
                              "How long the oldest waiting job has been queued.",
                              labels=["queue_name"]),
            GaugeMetricFamily(names.SLO_SECONDS, "End-to-end SLO of the task.",
                              labels=["task", "queue_name"]),
            GaugeMetricFamily(names.REDIS_UP, "1 if the broker answered this scrape."),
            GaugeMetricFamily(names.HISTORY_DEAD_LETTER_LENGTH,
                              "Job history rows the store refused, waiting in the "
                              "dead-letter list visionq:history:dead for an operator."),
            GaugeMetricFamily(names.WEBHOOKS_PENDING, "Webhook deliveries not yet delivered "
                              "nor given up (retrying, or waiting for the sender)."),
            GaugeMetricFamily(names.WEBHOOKS_OVERDUE, "Seconds the earliest due webhook "
                              "attempt is late (0: the sender keeps up)."),
        ]
