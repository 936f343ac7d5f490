"""Where a queue's jobs live, as the worker reaches them: the job store and blob store of the
queue's Redis (``visionq.shards``), built once per process, and a retry for Redis going away.

Redis going away (a restart, a failover) is not a failure of the job: every read and write
of the job record and the blob is retried for up to ``REDIS_RETRY_S`` (``retrying``).
Without that a restart in the middle of a job made the outcome write fail, the task raised,
Celery acked the message, and the job stayed ``running`` for good (found by
``bench/soak.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

import redis

from visionq.blobstore import BlobStore, RedisBlobStore, S3ObjectReader, blob_store_from_url
from visionq.broker import Command, busy_command, done_commands
from visionq.jobs import JobStore
from visionq.redis_conn import min_replicas_ack, redis_client
from visionq.settings import get_settings
from visionq.shards import ShardMap, shard_map

log = logging.getLogger(f"visionq.{__name__}")

REDIS_RETRY_S = 30.0
"""How long a job waits for Redis to come back (a restart takes seconds); below the soft
time limit's default (50 s) so the job's own limits still apply."""
REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError)
T = TypeVar("T")


@dataclass(frozen=True)
class QueueStores:
    """A queue's job store and blob store; ``host``: the instance whose scaling hints ride
    on this queue's job round trips (``hints_ride_along``), ``None`` when they cannot."""

    jobs: JobStore
    blobs: BlobStore
    host: str | None

    @property
    def in_redis(self) -> bool:
        """Images are blobs on the queue's Redis (read by ``JobStore.begin``, deleted by the
        finishing script)."""
        return isinstance(self.blobs, RedisBlobStore)

    def busy(self, job_id: str) -> tuple[Command, ...]:
        """What marks the host busy, riding on the job's begin."""
        return (busy_command(self.host, job_id),) if self.host is not None else ()

    def done(self, job_id: str, task: str, seconds: float) -> tuple[Command, ...]:
        """What clears the busy mark and records the service time, riding on the finish."""
        if self.host is None:
            return ()
        return tuple(done_commands(self.host, job_id, task, seconds))


def queue_stores(task: str) -> QueueStores:
    """The stores of ``task``'s queue: its records and images live on its Redis."""
    settings = get_settings()
    shards = shard_map(settings)
    jobs, blobs = _stores(shards.url_for(task), settings.result_ttl_s, settings.blob_url,
                          settings.blob_ttl_s, settings.s3_endpoint_url)
    return QueueStores(jobs, blobs,
                       settings.instance_id if hints_ride_along(shards, task) else None)


def queue_client(task: str) -> redis.Redis:
    """The Redis of ``task``'s queue: its messages, records and images."""
    return queue_stores(task).jobs.client


def claim_host(task: str) -> str | None:
    """The host whose busy mark covers jobs of ``task``'s queue, claimed ones included
    (``workers.claim``): this instance when the scaling hints live on that queue's Redis,
    else ``None``."""
    settings = get_settings()
    return settings.instance_id if hints_ride_along(shard_map(settings), task) else None


def hints_ride_along(shards: ShardMap, task: str) -> bool:
    """Whether ``task``'s jobs live on the Redis the scaling hints go to (the main one:
    always, unless the queue is sharded elsewhere, ``visionq.shards``): then the job's
    begin and finish round trips carry the busy mark and the service time, two round
    trips fewer per job than ``workers.hooks.ScalingHints`` writing them itself."""
    return shards.url_for(task) == shards.main


def retrying(call: Callable[..., T], *args: Any) -> T:
    """``call(*args)``, retried while Redis is unreachable (up to ``REDIS_RETRY_S``)."""
    deadline = time.monotonic() + REDIS_RETRY_S
    while True:
        try:
            return call(*args)
        except REDIS_ERRORS as exc:
            if time.monotonic() > deadline:
                raise
            name = getattr(call, "__name__", None) or getattr(
                getattr(call, "func", None), "__name__", "call")  # a partial: its function
            log.warning("Redis unavailable (%s); retrying %s", exc, name)
            time.sleep(0.5)


@cache
def borrowed_reader(s3_endpoint_url: str | None) -> S3ObjectReader:
    """Reads borrowed blobs (``s3://bucket/key`` of any bucket), built on first use."""
    return S3ObjectReader(s3_endpoint_url)


def discard(blobs: BlobStore, key: str) -> None:
    """Delete an image the job owned outside Redis (S3); its TTL collects it otherwise."""
    try:
        blobs.delete(key)
    except Exception:  # noqa: BLE001 - the blob's TTL will collect it
        log.warning("could not delete blob %s; it will expire", key)


@cache
def _stores(redis_url: str, result_ttl_s: int, blob_url: str, blob_ttl_s: int,
            s3_endpoint_url: str | None) -> tuple[JobStore, BlobStore]:
    """The job store and blob store of one queue's Redis (built once per URL: an S3 client
    is costly)."""
    client = redis_client(redis_url)
    return (JobStore(client, result_ttl_s, replicas=min_replicas_ack(redis_url)),
            blob_store_from_url(blob_url, client, blob_ttl_s, s3_endpoint_url))
