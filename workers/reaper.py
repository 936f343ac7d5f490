"""Re-publishes jobs whose message was lost in delivery.

Kombu's Redis transport takes a message off the queue (BRPOP) and then records it as
unacknowledged in a second step; a worker killed between the two (kill -9, OOM, a lost
node) takes the message with it, and the job would stay ``queued`` for good (seen once
in 4,486 jobs by ``bench/soak.py``).  Every live worker runs this sweep from its
heartbeat thread; a Redis lock lets one of them do it at a time.

A job still ``queued`` well after any message for it could be in flight (the visibility
timeout plus ``VISIONQ_REAPER_GRACE_S``) is published again, once.  If its original
message was merely waiting in a long queue, both copies exist: whichever runs first
finishes the job and the other is dropped as a duplicate (``JobStore.start`` refuses a
final job), so the worst case is the same one result, computed once more at most.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

from visionq.jobs import JobStore
from visionq.keys import REAPER_LOCK_KEY as LOCK_KEY
from visionq.keys import RECENT_KEY
from visionq.redis_conn import redis_client
from visionq.settings import get_settings
from visionq.shards import shard_map

log = logging.getLogger(f"visionq.{__name__}")

SWEEP_INTERVAL_S = 30.0
SCAN_LIMIT = 10_000


def sweep(client: redis.Redis, jobs: JobStore, enqueue: Callable[[str, str], None],
          older_than_s: float, now: float | None = None) -> list[str]:
    """Re-publish every job queued before ``now - older_than_s`` and not yet re-published;
    returns their ids."""
    now = time.time() if now is None else now
    candidates = client.zrangebyscore(RECENT_KEY, "-inf", now - older_than_s,
                                      start=0, num=SCAN_LIMIT)
    if not candidates:
        return []
    pipe = client.pipeline(transaction=False)
    for raw in candidates:
        pipe.hmget(JobStore.key(raw.decode()), "status", "task", "republished")
    republished = []
    for raw, (status, task, already) in zip(candidates, pipe.execute(), strict=True):
        if status != b"queued" or already is not None or task is None:
            continue
        job_id = raw.decode()
        if not client.hsetnx(JobStore.key(job_id), "republished", repr(now)):
            continue  # another sweeper got there first
        enqueue(task.decode(), job_id)
        republished.append(job_id)
        log.warning("job %s (%s) was still queued after %.0f s: message presumed lost in "
                    "delivery, published again", job_id, task.decode(), older_than_s)
    return republished


def maybe_sweep(client: redis.Redis, jobs: JobStore, enqueue: Callable[[str, str], None],
                older_than_s: float, holder: str) -> list[str]:
    """Sweep if no other worker swept in the last ``SWEEP_INTERVAL_S``; sharded by queue
    (``visionq.shards``), each shard's jobs too (a lock per shard; ``enqueue`` publishes
    to the job's queue's Redis)."""
    swept = []
    if client.set(LOCK_KEY, holder, nx=True, ex=int(SWEEP_INTERVAL_S)):
        swept = sweep(client, jobs, enqueue, older_than_s)
    shards = shard_map(get_settings())
    for url in shards.urls[1:]:
        shard = redis_client(url)
        if shard.set(LOCK_KEY, holder, nx=True, ex=int(SWEEP_INTERVAL_S)):
            swept += sweep(shard, JobStore(shard, get_settings().result_ttl_s), enqueue,
                           older_than_s)
    return swept
