"""The control loop: observe -> decide -> apply, every ``--interval`` seconds.

``main(argv)`` is the entry point (``visionq-autoscale`` / ``python -m autoscale``).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server

from autoscale import observe
from autoscale.backends import Backend, Drains
from autoscale.backends.ec2 import EC2Backend, make_client
from autoscale.backends.local import DEFAULT_COMMAND, LocalBackend
from autoscale.policy import (
    Decision,
    Observation,
    Policy,
    PoolPolicy,
    QueueObservation,
    State,
    decide,
)
from autoscale.rates import ArrivalRates
from monitoring.metrics import AutoscalerMetrics
from visionq.kombu_redis import in_flight, queue_length
from visionq.redis_conn import redis_client
from visionq.settings import DEFAULT_REDIS_URL, QUEUES, Settings
from visionq.shards import shard_map

log = logging.getLogger("visionq.autoscale")

DEFAULT_INTERVAL_SECONDS = 5.0
DEFAULT_ASG_TEMPLATE = "visionq-{queue}"
DEFAULT_METRICS_PORT = 9809
"""Where monitoring/prometheus.yml expects the autoscaler."""


def publish_metrics(port: int) -> Callable[[Decision, Observation], None]:
    """Serve the desired/current worker gauges on ``port`` and return the updater."""
    gauges = AutoscalerMetrics(CollectorRegistry())
    start_http_server(port, addr="127.0.0.1", registry=gauges.registry)

    def update(decision: Decision, obs: Observation) -> None:
        for queue, desired in decision.desired.items():
            gauges.desired.labels(queue_name=queue).set(desired)
            gauges.current.labels(queue_name=queue).set(obs.queues[queue].current)

    return update


def sharded_snapshot(conn: Any, queues: Sequence[str], now: float,
                     queue_conns: Mapping[str, Any]) -> observe.BrokerSnapshot:
    """``observe.snapshot`` on the main Redis, with the backlog and in-flight of each queue
    in ``queue_conns`` read from that queue's own Redis instead."""
    snap = observe.snapshot(conn, queues, now)
    if not queue_conns:
        return snap
    backlog, flying = dict(snap.backlog), dict(snap.in_flight)
    for queue in queues:
        if queue in queue_conns:
            backlog[queue] = queue_length(queue_conns[queue], queue)
            flying[queue] = in_flight(queue_conns[queue], [queue]).get(queue, 0)
    return replace(snap, backlog=backlog, in_flight=flying)


@dataclass
class Controller:
    conn: Any
    backend: Backend
    queues: Sequence[str]
    policy: Policy
    dry_run: bool = False
    clock: Callable[[], float] = time.time
    rates: ArrivalRates = field(default_factory=ArrivalRates)
    state: State = field(default_factory=State)
    on_decision: Callable[[Decision, Observation], None] | None = None
    """Called after every decision (the metrics gauges)."""
    queue_conns: Mapping[str, Any] = field(default_factory=dict)
    """The Redis of each queue that has one of its own (``visionq.shards``): its backlog
    and in-flight are read there; service times, completions and busy marks stay on
    ``conn`` (the workers write them to the main Redis)."""

    def observe(self) -> tuple[Observation, frozenset[str], set[str]]:
        now = self.clock()
        snap = sharded_snapshot(self.conn, self.queues, now, self.queue_conns)
        capacity = self.backend.current()
        queues = {}
        ids: set[str] = set()
        for q in self.queues:
            cap = capacity[q]
            ids.update(cap.ids)
            depth = snap.backlog[q] + snap.in_flight.get(q, 0)
            queues[q] = QueueObservation(
                backlog=snap.backlog[q],
                in_flight=snap.in_flight.get(q, 0),
                arrival_rate=self.rates.update(q, now, depth, snap.done[q]),
                service_time=snap.service_time[q],
                current=cap.current,
                pending=cap.pending,
            )
        return Observation(now=now, queues=queues), snap.busy, ids

    def tick(self) -> Decision:
        obs, busy, ids = self.observe()
        decision = decide(obs, self.policy, self.state)
        self.state = decision.state
        if self.on_decision is not None:
            self.on_decision(decision, obs)
        changed = decision.changed(obs)
        for q in self.queues:
            level = logging.INFO if q in changed else logging.DEBUG
            log.log(level, "%s%s", "[dry-run] " if self.dry_run else "", decision.reasons[q])
        if self.dry_run:
            return decision
        if changed:
            self.backend.apply({q: decision.desired[q] for q in changed})
        self.backend.protect(busy & ids)
        if isinstance(self.backend, Drains):
            self.backend.release_drained(busy)
        return decision

    def run(self, interval: float, stop: threading.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.tick()
            except Exception:  # keep scaling through a transient broker/API error
                log.exception("autoscale tick failed")
            stop.wait(max(0.0, interval - (time.monotonic() - started)))


# -- command line -------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    d = PoolPolicy()
    p = argparse.ArgumentParser(
        prog="visionq-autoscale",
        description="Scale visionq workers from the Celery queues in Redis.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--backend", choices=("local", "ec2"), default="local")
    p.add_argument("--queues", default=",".join(QUEUES),
                   help="comma-separated queues, one worker pool each")
    p.add_argument("--interval", type=float, default=DEFAULT_INTERVAL_SECONDS,
                   help="seconds between polls")
    p.add_argument("--once", action="store_true",
                   help="one observe/decide/apply and exit (with the local backend, workers "
                        "started stay running; mostly useful with --dry-run)")
    p.add_argument("--dry-run", action="store_true", help="log decisions, change nothing")
    p.add_argument("--redis-url", default=None,
                   help="broker URL (default: REDIS_URL or VISIONQ_REDIS_URL, as for the "
                        f"workers, else {DEFAULT_REDIS_URL})")
    g = p.add_argument_group("policy (every pool)")
    g.add_argument("--target-backlog-seconds", type=float, default=d.target_backlog_seconds,
                   help="seconds of queued work per worker before adding workers")
    g.add_argument("--concurrency", type=int, default=d.concurrency,
                   help="tasks one worker runs at once")
    g.add_argument("--min", dest="min_workers", type=int, default=d.min_workers)
    g.add_argument("--max", dest="max_workers", type=int, default=d.max_workers)
    g.add_argument("--max-step-up", type=int, default=d.max_step_up)
    g.add_argument("--max-step-down", type=int, default=d.max_step_down)
    g.add_argument("--stabilization-seconds", type=float, default=d.stabilization_seconds,
                   help="scale-down uses the highest recommendation over this window")
    g.add_argument("--boot-seconds", type=float, default=d.boot_seconds,
                   help="time from request to a serving worker")
    g.add_argument("--tolerance", type=float, default=d.tolerance)
    g.add_argument("--target-utilization", type=float, default=d.target_utilization)
    e = p.add_argument_group("ec2 backend")
    e.add_argument("--asg", action="append", default=[], metavar="QUEUE=GROUP",
                   help=f"group per queue (default {DEFAULT_ASG_TEMPLATE!r})")
    e.add_argument("--region", default=None)
    e.add_argument("--endpoint-url", default=None, help="e.g. a moto_server for testing")
    e.add_argument("--lifecycle-hook", action="store_true",
                   help="create/update the termination lifecycle hook on start")
    loc = p.add_argument_group("local backend")
    loc.add_argument("--worker-command", default=None,
                     help="command template with {queue} and {index} (shell-quoted)")
    p.add_argument("--metrics-port", type=int, default=DEFAULT_METRICS_PORT,
                   help="serve visionq_autoscale_workers_desired/current on this port "
                        "(0: off)")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def build_policy(args: argparse.Namespace) -> Policy:
    return Policy(default=PoolPolicy(
        target_backlog_seconds=args.target_backlog_seconds, concurrency=args.concurrency,
        min_workers=args.min_workers, max_workers=args.max_workers,
        max_step_up=args.max_step_up, max_step_down=args.max_step_down,
        stabilization_seconds=args.stabilization_seconds, boot_seconds=args.boot_seconds,
        tolerance=args.tolerance, target_utilization=args.target_utilization,
    ))


def build_backend(args: argparse.Namespace, queues: Sequence[str]) -> Backend:
    if args.backend == "ec2":
        groups = {q: DEFAULT_ASG_TEMPLATE.format(queue=q) for q in queues}
        for item in args.asg:
            queue, _, group = item.partition("=")
            if queue not in groups or not group:
                raise SystemExit(f"--asg {item!r}: expected QUEUE=GROUP for one of {queues}")
            groups[queue] = group
        ec2 = EC2Backend(groups, client=make_client(args.region, args.endpoint_url))
        if args.lifecycle_hook and not args.dry_run:
            ec2.ensure_lifecycle_hooks()
        return ec2
    command = shlex.split(args.worker_command) if args.worker_command else DEFAULT_COMMAND
    return LocalBackend(queues, command=command)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    if not queues:
        raise SystemExit("--queues: at least one queue")
    try:
        policy = build_policy(args)
    except ValueError as exc:
        raise SystemExit(f"invalid policy: {exc}") from exc
    backend = build_backend(args, queues)
    settings = Settings()
    redis_url = args.redis_url or settings.redis_url
    conn = redis_client(redis_url)  # redis:// or sentinel:// (visionq.redis_conn)
    shards = shard_map(settings)
    queue_conns = {q: shards.client_for(q) for q in queues if shards.url_for(q) != shards.main}
    serve = args.metrics_port and not args.once  # a one-shot run has nothing to scrape
    on_decision = publish_metrics(args.metrics_port) if serve else None
    controller = Controller(conn, backend, queues, policy, dry_run=args.dry_run,
                            on_decision=on_decision, queue_conns=queue_conns)
    stop = threading.Event()
    try:
        if args.once:
            controller.tick()
        else:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
            log.info("autoscaling %s with the %s backend every %.1fs%s", ", ".join(queues),
                     args.backend, args.interval, " (dry run)" if args.dry_run else "")
            controller.run(args.interval, stop)
    finally:
        close = getattr(backend, "close", None)
        if close is not None and not args.once:
            close()
        conn.close()
    return 0
