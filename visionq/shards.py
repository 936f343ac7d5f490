"""Sharding by queue: which Redis holds each queue's messages, job records and images.

Celery cannot use Redis Cluster, so the way past one Redis is one Redis per queue:
``VISIONQ_REDIS_URL_<QUEUE>`` (``_FACE``, ``_DETECT``, ``_CLASSIFY``, ``_CUSTOM``; unset: the
main ``REDIS_URL``).  A queue's Redis holds its Celery messages (the list, kombu's
records of delivered ones) *and* its jobs' records and images: the admit, begin and finish scripts
touch a record, its image and the queue's list atomically, so they must share a server.
What those scripts write beside the record stays with it on the queue's Redis too: the
recent-jobs index, the per-task counters, the history stream and the done-channel
publish.  Their readers (``GET /v1/jobs``, ``/v1/stats``, the history writer, the wake-up
listener) therefore look at every shard (``ShardedJobStore``, one ``HistoryWriter`` per
shard, ``DoneListener`` over every shard's client).

Everything else stays on the main Redis: API keys, idempotency claims, rate limits, the
face registry, the supervisor's marks, worker heartbeats and autoscaling hints
(``visionq:worker:*``, ``visionq:autoscale:*``) and Celery's result backend.

With no per-queue URL (the default) there is one store and one client: every call below
is the single ``JobStore``'s own, with the same round trips as before sharding existed.
"""

from __future__ import annotations

import heapq
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import redis

from visionq.blobstore import BlobNotFoundError, RedisBlobStore
from visionq.custom_models import CUSTOM_QUEUE, queue_of_task
from visionq.jobs import REVOKE_UNKNOWN, Job, JobStore
from visionq.redis_conn import redis_client
from visionq.settings import QUEUES, Settings

log = logging.getLogger(__name__)

SHARDABLE_QUEUES = (*QUEUES, CUSTOM_QUEUE)
VARIABLE_PREFIX = "VISIONQ_REDIS_URL_"
LOCATED_JOBS = 10_000
"""Job ids whose shard a ``ShardedJobStore`` remembers (the ones it admitted): a
DeepStack call or a long-poll right after its submit then reads one shard, not each."""


@dataclass(frozen=True)
class ShardMap:
    """Queue -> Redis URL.  ``own`` lists only the queues whose URL is not ``main``."""

    main: str
    own: Mapping[str, str]

    def url_for(self, queue: str) -> str:
        """The Redis of ``queue`` (a queue name, or a task such as ``custom/<name>``)."""
        return self.own.get(queue_of_task(queue), self.main)

    @property
    def urls(self) -> tuple[str, ...]:
        """Distinct URLs, the main one first."""
        return tuple(dict.fromkeys([self.main, *self.own.values()]))

    @property
    def sharded(self) -> bool:
        return len(self.urls) > 1

    def queues_on(self, url: str, queues: Iterable[str] = SHARDABLE_QUEUES) -> list[str]:
        return [queue for queue in queues if self.url_for(queue) == url]

    def clients(self) -> dict[str, redis.Redis]:
        """One shared client per distinct URL (``visionq.redis_conn``: Sentinel too)."""
        return {url: redis_client(url) for url in self.urls}

    def client_for(self, queue: str) -> redis.Redis:
        return redis_client(self.url_for(queue))


def shard_map(settings: Settings) -> ShardMap:
    """The map ``settings`` describe: ``redis_url_<queue>`` fields, blank ones unset."""
    main = settings.redis_url.strip()
    own = {}
    for queue in SHARDABLE_QUEUES:
        url = (getattr(settings, f"redis_url_{queue}") or "").strip()
        if url and url != main:
            own[queue] = url
    return ShardMap(main, own)


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """``VISIONQ_REDIS_URL_*`` variables that name no queue (a typo such as
    ``VISIONQ_REDIS_URL_DETECTION``): ignored, but worth a warning, since the queue they
    meant silently stays on the main Redis."""
    env = os.environ if environ is None else environ
    known = {f"{VARIABLE_PREFIX}{queue.upper()}" for queue in SHARDABLE_QUEUES}
    return sorted(name for name in env
                  if name.upper().startswith(VARIABLE_PREFIX) and name.upper() not in known)


def warn_unknown_variables(environ: Mapping[str, str] | None = None) -> None:
    for name in unknown_variables(environ):
        log.warning("%s names no queue (one of %s) and is ignored", name,
                    ", ".join(q.upper() for q in SHARDABLE_QUEUES))


def redact(url: str) -> str:
    """``url`` without its password (each part of a ``sentinel://a;sentinel://b`` list)."""
    parts = []
    for part in url.split(";"):
        password = urlsplit(part.strip()).password if "://" in part else None
        parts.append(part.replace(f":{password}@", ":***@") if password else part)
    return ";".join(parts)


class ShardedJobStore:
    """``JobStore``'s interface over one store per shard, so the handlers keep calling
    ``svc.jobs.get/wait/revoke/recent/counts/admit`` unchanged.

    Writes go to the job's queue's store.  A lookup by id tries the store that admitted
    it (remembered for ``LOCATED_JOBS`` ids), else each store in turn: ids carry no
    queue.  Listings merge every store's newest jobs."""

    def __init__(self, shards: ShardMap, stores: Mapping[str, JobStore]) -> None:
        self.shards = shards
        self._stores = dict(stores)
        self._order = [self._stores[url] for url in shards.urls]
        self._located: OrderedDict[str, JobStore] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def stores(self) -> list[JobStore]:
        """One per distinct Redis, the main one first."""
        return list(self._order)

    @property
    def listener(self) -> Any:
        """The process's done-channel listener (over every shard), shared by the stores."""
        return self._order[0].listener

    key = staticmethod(JobStore.key)
    channel = staticmethod(JobStore.channel)

    def for_queue(self, queue: str) -> JobStore:
        """The store of ``queue`` (or of a task such as ``custom/<name>``)."""
        return self._stores[self.shards.url_for(queue)]

    # -- writes: on the job's queue's shard ----------------------------------------------
    def admit(self, task: str, entries: list[tuple[str, str, bytes | None]],
              options: dict[str, Any] | None = None, *, queue: str, **kwargs: Any) -> list[Job]:
        store = self.for_queue(queue)
        jobs = store.admit(task, entries, options, queue=queue, **kwargs)
        self._remember([job.id for job in jobs], store)
        return jobs

    def create(self, task: str, blob: str, options: dict[str, Any] | None = None,
               job_id: str | None = None) -> Job:
        store = self.for_queue(task)
        job = store.create(task, blob, options, job_id)
        self._remember([job.id], store)
        return job

    def confirm_published(self, job_ids: list[str], queue: str | None = None) -> None:
        """``JobStore.confirm_published`` on ``queue``'s shard (the main one without it)."""
        store = self.for_queue(queue) if queue is not None else self._order[0]
        store.confirm_published(job_ids)

    # -- reads by id: the shard that holds the job ---------------------------------------
    def locate(self, job_id: str) -> tuple[JobStore | None, Job | None]:
        """The store holding ``job_id`` and its record (``(None, None)``: none has it)."""
        known = self._located_store(job_id)
        for store in [known] if known is not None else self._order:
            job = store.get(job_id)
            if job is not None:
                return store, job
        return None, None

    def get(self, job_id: str) -> Job | None:
        return self.locate(job_id)[1]

    def wait(self, job_id: str, timeout_s: float) -> Job | None:
        if len(self._order) == 1:
            return self._order[0].wait(job_id, timeout_s)  # no lookup: one shard has it
        store, job = self.locate(job_id)
        if store is None or job is None or timeout_s <= 0 or job.status in ("succeeded",
                                                                             "failed"):
            return job
        self._remember([job_id], store)
        return store.wait(job_id, timeout_s)

    def revoke(self, job_id: str, reason: str = "revoked before it ran") -> int:
        known = self._located_store(job_id)
        for store in [known] if known is not None else self._order:
            outcome = store.revoke(job_id, reason)
            if outcome != REVOKE_UNKNOWN:
                return outcome
        return REVOKE_UNKNOWN

    def statuses(self, job_ids: list[str]) -> list[bytes | None]:
        """Each job's raw ``status`` (``None``: no record on any shard), one pipelined
        round trip per shard that still has ids to look for."""
        found: list[bytes | None] = [None] * len(job_ids)
        missing = list(range(len(job_ids)))
        for store in self._order:
            if not missing:
                break
            pipe = store.client.pipeline(transaction=False)
            for index in missing:
                pipe.hget(JobStore.key(job_ids[index]), "status")
            replies = pipe.execute()
            for index, raw in zip(missing, replies, strict=True):
                found[index] = raw
            missing = [index for index in missing if found[index] is None]
        return found

    # -- listings: every shard merged ------------------------------------------------------
    def recent(self, *, status: str | None = None, task: str | None = None, limit: int = 50,
               before: float | None = None, submitter: str | None = None) -> list[Job]:
        stores = [self.for_queue(task)] if task is not None else self._order
        pages = [store.recent(status=status, task=task, limit=limit, before=before,
                              submitter=submitter) for store in stores]
        if len(pages) == 1:
            return pages[0]
        merged = heapq.merge(*pages, key=lambda job: -(job.queued_at or 0.0))
        return list(merged)[:limit]

    def counts(self) -> dict[str, dict[str, int]]:
        table: dict[str, dict[str, int]] = {}
        for store in self._order:
            for task, row in store.counts().items():
                for status, count in row.items():
                    cell = table.setdefault(task, {})
                    cell[status] = cell.get(status, 0) + count
        return table

    # -- which shard admitted a job --------------------------------------------------------
    def _remember(self, job_ids: list[str], store: JobStore) -> None:
        if len(self._order) == 1:
            return
        with self._lock:
            for job_id in job_ids:
                self._located[job_id] = store
                self._located.move_to_end(job_id)
            while len(self._located) > LOCATED_JOBS:
                self._located.popitem(last=False)

    def _located_store(self, job_id: str) -> JobStore | None:
        if len(self._order) == 1:
            return self._order[0]
        with self._lock:
            return self._located.get(job_id)


class ShardedRedisBlobStore(RedisBlobStore):
    """Redis blobs when jobs live on several shards: an image is stored by the admit script
    on its job's shard, so a read tries each shard and a delete (a revoke's clean-up)
    reaches whichever holds it.  ``put`` (no job yet) stores on the main Redis."""

    def __init__(self, clients: list[redis.Redis], ttl_s: int) -> None:
        super().__init__(clients[0], ttl_s)
        self._clients = clients

    def get(self, key: str) -> bytes:
        for client in self._clients:
            data = client.get(key)
            if data is not None:
                return data
        raise BlobNotFoundError(f"image {key} expired or was deleted")

    def delete(self, key: str) -> None:
        for client in self._clients:
            client.delete(key)
