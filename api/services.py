"""What the handlers need, built once per app and kept on ``app.extensions``."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from celery import Celery
from flask import current_app

from tasks.signatures import enqueue
from visionq.blobstore import BlobStore, RedisBlobStore, blob_store_from_url
from visionq.custom_models import queue_of_task
from visionq.faces_registry import FaceRegistry, policy_from
from visionq.history import HistoryStore
from visionq.imaging import ImageLimits
from visionq.jobs import JobStore
from visionq.redis_conn import min_replicas_ack, redis_client
from visionq.settings import Settings
from visionq.shards import (
    ShardedJobStore,
    ShardedRedisBlobStore,
    ShardMap,
    shard_map,
    warn_unknown_variables,
)
from visionq.wakeup import DoneListener

EXTENSION_KEY = "visionq"


@dataclass
class Services:
    settings: Settings
    redis: redis.Redis
    """The main Redis: API keys, idempotency claims, rate limits, faces, heartbeats."""
    jobs: ShardedJobStore
    """Job records on their queue's Redis (``visionq.shards``), behind ``JobStore``'s API."""
    blobs: BlobStore
    limits: ImageLimits
    celery: Celery
    """This app's producer (``tasks.make_celery``): it publishes, it never runs tasks."""
    faces: FaceRegistry
    history: HistoryStore
    """Finished jobs after their Redis record expired (``visionq.history``)."""
    shards: ShardMap

    def enqueue(self, task: str, job_id: str) -> None:
        """Publish job ``job_id`` to the ``task`` queue (the message is the id only), on
        that queue's Redis."""
        queue = queue_of_task(task)
        enqueue(self.celery, task, job_id, self.shards.url_for(queue))
        # behind Sentinel: on a replica before the 202
        self.jobs.confirm_published([job_id], queue)

    def queue_lengths(self, queues: list[str]) -> list[int]:
        """Messages waiting in each queue (kombu's list, on the queue's Redis): one
        pipelined round trip per Redis involved."""
        by_url: dict[str, list[int]] = {}
        for index, queue in enumerate(queues):
            by_url.setdefault(self.shards.url_for(queue), []).append(index)
        lengths = [0] * len(queues)
        for url, indexes in by_url.items():
            pipe = redis_client(url).pipeline(transaction=False)
            for index in indexes:
                pipe.llen(queues[index])
            for index, length in zip(indexes, pipe.execute(), strict=True):
                lengths[index] = int(length)
        return lengths

    def queue_length(self, queue: str) -> int:
        return int(self.shards.client_for(queue).llen(queue))


def build_services(settings: Settings, celery: Celery) -> Services:
    shards = shard_map(settings)
    warn_unknown_variables()
    clients = shards.clients()
    client = clients[shards.main]
    # One pub/sub listener per API process wakes every long-poll (visionq.wakeup): one
    # subscription per shard, since jobs finish (and announce it) on their queue's Redis.
    listener = DoneListener(list(clients.values()))
    stores = {url: JobStore(each, settings.result_ttl_s, settings.recent_jobs,
                            listener=listener, replicas=min_replicas_ack(url))
              for url, each in clients.items()}
    blobs = blob_store_from_url(settings.blob_url, client, settings.blob_ttl_s,
                                settings.s3_endpoint_url)
    if shards.sharded and isinstance(blobs, RedisBlobStore):
        blobs = ShardedRedisBlobStore(list(clients.values()), settings.blob_ttl_s)
    return Services(
        settings=settings,
        redis=client,
        jobs=ShardedJobStore(shards, stores),
        blobs=blobs,
        limits=ImageLimits(settings.max_bytes, settings.max_pixels),
        celery=celery,
        faces=FaceRegistry(client, policy=policy_from(settings)),
        history=HistoryStore(settings.history_store_url),  # connects on first use
        shards=shards,
    )


def services() -> Services:
    return current_app.extensions[EXTENSION_KEY]
