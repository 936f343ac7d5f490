"""The workers' exporter: ``python -m monitoring.exporter --port 9808``.

One small HTTP server per host serves ``/metrics``: the samples every Celery process on the
host wrote to the workers' ``PROMETHEUS_MULTIPROC_DIR`` (main processes and prefork
children, all queues) merged, plus the broker state read from Redis at scrape time.

Why a separate process rather than a server inside each worker: ``visionq up`` runs one
Celery main process per queue, so in-worker servers would need one port each and one
scrape target each; the multiprocess files already aggregate everything on the host, and
the exporter keeps answering (queue length, "no workers" alerts) while every worker is
down, which is exactly when those numbers matter.

It also serves ``visionq_process_restarts_total{role}``: how often ``visionq up``'s
supervisor restarted each of its children, read from Redis (``visionq.keys``) at scrape time.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Iterator, Sequence

import redis
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from monitoring.collector import BrokerCollector
from monitoring.metrics import multiprocess_dir
from monitoring.settings import get_monitoring_settings
from visionq.keys import SUPERVISOR_RESTARTS_KEY
from visionq.redis_conn import redis_client
from visionq.settings import QUEUES, get_settings
from visionq.shards import shard_map

log = logging.getLogger("visionq.exporter")
PROCESS_RESTARTS = "visionq_process_restarts"
"""``_total`` is added by prometheus_client (a counter)."""


class RestartsCollector(Collector):
    """Restarts per role recorded by ``visionq up``'s supervisor (none without it)."""

    def __init__(self, conn: redis.Redis) -> None:
        self._conn = conn

    def describe(self) -> Iterator[CounterMetricFamily]:
        return iter([self._family()])

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = self._family()
        try:
            counts = self._conn.hgetall(SUPERVISOR_RESTARTS_KEY)
        except redis.RedisError as exc:
            log.warning("restart counts unavailable: %s", exc)
            return iter([])
        for role, count in sorted(counts.items()):
            name = role.decode() if isinstance(role, bytes) else str(role)
            family.add_metric([name], float(count))
        return iter([family])

    @staticmethod
    def _family() -> CounterMetricFamily:
        return CounterMetricFamily(PROCESS_RESTARTS, "Times `visionq up` restarted the role "
                                   "after it exited unexpectedly.", labels=["role"])


def build_registry(redis_url: str, queues: Sequence[str], directory: str | None,
                   slos: dict[str, float] | None = None) -> CollectorRegistry:
    registry = CollectorRegistry()
    if directory:
        MultiProcessCollector(registry, path=directory)
    else:
        log.warning("PROMETHEUS_MULTIPROC_DIR is not set: serving broker metrics only; "
                    "set it (the same directory as the workers') for task and job metrics")
    slos = slos or get_monitoring_settings().slos()
    # Sharded by queue (visionq.shards), a queue's length and in-flight are on its Redis.
    shards = shard_map(get_settings())
    queue_conns = {queue: shards.client_for(queue) for queue in queues
                   if shards.url_for(queue) != shards.main}
    registry.register(BrokerCollector(redis_client(redis_url), queues, slos, queue_conns))
    registry.register(RestartsCollector(redis_client(redis_url)))
    return registry


def main(argv: Sequence[str] | None = None) -> int:
    settings = get_monitoring_settings()
    parser = argparse.ArgumentParser(prog="visionq-exporter", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default=settings.exporter_host)
    parser.add_argument("--port", type=int, default=settings.exporter_port)
    parser.add_argument("--redis-url", default=get_settings().redis_url)
    parser.add_argument("--multiproc-dir", default=multiprocess_dir(),
                        help="the workers' PROMETHEUS_MULTIPROC_DIR")
    parser.add_argument("--queues", default=",".join(QUEUES))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    registry = build_registry(args.redis_url, [q for q in args.queues.split(",") if q],
                              args.multiproc_dir)
    server, _thread = start_http_server(args.port, args.host, registry)
    log.info("serving worker and broker metrics on http://%s:%d/metrics", args.host, args.port)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    stopping.wait()
    server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
