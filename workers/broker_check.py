"""A worker starts only on the kombu/Celery its broker adapter was verified against.

``visionq.kombu_redis`` writes kombu's Redis layout by hand (claims, acks, give-backs); a
kombu outside ``VERIFIED_KOMBU``, a Celery outside ``VERIFIED_CELERY`` or a key prefix in
``broker_transport_options`` would make those keys ones kombu never reads.  This check
runs at ``worker_init`` (before any model loads) and stops such a worker with one clear
line.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals

from visionq import kombu_redis

log = logging.getLogger("visionq.worker")


def refusal(app: Celery) -> str | None:
    """Why a worker of ``app`` must not start (installed versions, transport options), or
    ``None``."""
    try:
        kombu_redis.check_installed(app.conf.broker_transport_options)
    except kombu_redis.UnsupportedBrokerError as exc:
        return f"visionq worker refused to start: {exc}"
    return None


def check_worker_broker(sender: Any = None, **_: Any) -> None:
    """``worker_init`` handler: exit (status 1, one critical log line) on a refusal.
    ``SystemExit`` is not an ``Exception``, so Celery's signal dispatch lets it through."""
    if sender is None:
        return
    message = refusal(sender.app)
    if message is not None:
        log.critical(message)
        raise SystemExit(message)


def connect() -> None:
    signals.worker_init.connect(check_worker_broker, weak=False,
                                dispatch_uid="visionq-broker-check")
