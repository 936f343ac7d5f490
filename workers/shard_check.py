"""A worker must consume from the Redis its queues live on (``visionq.shards``).

Celery gives a worker one broker.  Sharded by queue, ``celery -A tasks worker -Q detect``
without ``-b "$VISIONQ_REDIS_URL_DETECT"`` would listen on the main Redis, where no detect
message ever arrives: it would idle silently while the detect backlog grows.  This check
runs at ``worker_init`` (before any model loads) and stops such a worker with one clear
line instead; ``visionq worker --queues detect`` passes the right ``-b`` itself.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from celery import signals

from visionq.settings import get_settings
from visionq.shards import ShardMap, redact, shard_map
from workers.queues import consumed_queues

log = logging.getLogger("visionq.worker")


def broker_mismatch(shards: ShardMap, broker_url: str, queues: Sequence[str]) -> str | None:
    """Why a worker on ``broker_url`` consuming ``queues`` cannot work, or ``None``."""
    urls = {queue: shards.url_for(queue) for queue in queues}
    if len(set(urls.values())) > 1:
        spans = ", ".join(f"{queue} on {redact(url)}" for queue, url in urls.items())
        return (f"the queues {', '.join(queues)} live on different Redis servers ({spans}); "
                "a Celery worker has one broker: start one worker per Redis (-Q)")
    wrong = [queue for queue, url in urls.items() if url != broker_url.strip()]
    if wrong:
        wanted = urls[wrong[0]]
        return (f"the {', '.join(wrong)} queue lives on {redact(wanted)} but this worker's "
                f"broker is {redact(broker_url)}: it would never receive a job; start it "
                f"as `celery -A tasks -b \"$VISIONQ_REDIS_URL_{wrong[0].upper()}\" worker "
                f"-Q {','.join(queues)}` or `visionq worker --queues {','.join(queues)}`")
    return None


def check_worker_broker(sender: Any = None, **_: Any) -> None:
    """``worker_init`` handler: exit (status 1, one critical log line) on a mismatch.
    ``SystemExit`` is not an ``Exception``, so Celery's signal dispatch lets it through."""
    shards = shard_map(get_settings())
    if not shards.sharded or sender is None:
        return
    problem = broker_mismatch(shards, str(sender.app.conf.broker_url or ""),
                              consumed_queues(sender))
    if problem is not None:
        message = f"visionq worker refused to start: {problem}"
        log.critical(message)
        raise SystemExit(message)


def connect() -> None:
    signals.worker_init.connect(check_worker_broker, weak=False,
                                dispatch_uid="visionq-shard-check")
