"""Task signatures, one per queue, and how a producer publishes a job.

A message carries only the job id: the job record holds the image's blob key and the
options (images travel by reference).  Producers send by name, so they need no task
objects; the implementations are registered on the worker side (``workers.app``).
"""

from __future__ import annotations

import threading

from celery import Celery
from kombu import Connection, pools
from kombu.pools import ProducerPool

from visionq.custom_models import CUSTOM_QUEUE, queue_of_task
from visionq.redis_conn import is_sentinel_url
from visionq.settings import QUEUES, get_settings
from visionq.shards import shard_map

SENTINEL_TRANSPORT = "tasks.sentinel:Transport"
"""kombu's Sentinel transport with a failover bug guarded (``tasks.sentinel``)."""
_pools: dict[tuple[int, str], ProducerPool] = {}
_pools_lock = threading.Lock()

TASK_NAMES = {queue: f"visionq.{queue}" for queue in (*QUEUES, CUSTOM_QUEUE)}
"""Queue -> task name; the ``custom`` queue carries every custom model's jobs (job task
``custom/<name>``; the worker reads the model's name from the job record)."""


def queue_of(task_name: str) -> str | None:
    """The queue (= job task) a task name belongs to; ``None`` for anything else."""
    queue = task_name.rpartition(".")[2]
    return queue if TASK_NAMES.get(queue) == task_name else None


def enqueue(celery: Celery, task: str, job_id: str, broker_url: str | None = None) -> None:
    """Publish job ``job_id`` to the ``task`` queue (routing is declared in tasks.config).

    ``ignore_result``: results live in the job record, so the producer must not subscribe
    to Celery's result channel for every message (a pub/sub round trip per submit, and a
    broken result connection — a Redis restart — would fail the submit with a 500).  A
    custom model's task (``custom/<name>``) goes to the ``custom`` queue.

    ``broker_url``: the Redis of the job's queue (``visionq.shards``; ``None``: the one
    ``VISIONQ_REDIS_URL_<QUEUE>`` names, if any).  When it is the app's own broker — always,
    without sharding — the app's producer pool publishes, as it always did; another URL gets
    a producer from a kombu pool of that URL's connections (thread-safe: the API publishes
    from 16 threads per process)."""
    queue = queue_of_task(task)
    name = TASK_NAMES[queue]
    url = broker_url if broker_url is not None else _configured_url(queue)
    if url is None or url == celery.conf.broker_url:
        celery.send_task(name, args=[job_id], task_id=job_id, ignore_result=True)
        return
    with producer_pool(celery, url).acquire(block=True) as producer:
        celery.send_task(name, args=[job_id], task_id=job_id, ignore_result=True,
                         producer=producer)


def _configured_url(queue: str) -> str | None:
    """``VISIONQ_REDIS_URL_<QUEUE>``'s URL when sharding is configured, else ``None``."""
    shards = shard_map(get_settings())
    return shards.url_for(queue) if shards.sharded else None


def producer_pool(celery: Celery, url: str) -> ProducerPool:
    """kombu's producer pool for ``url`` with ``celery``'s transport options (Sentinel's
    master name when ``url`` is a ``sentinel://`` list), built once per app and URL."""
    key = (id(celery), url)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            options = dict(celery.conf.broker_transport_options or {})
            sentinel = is_sentinel_url(url)
            if sentinel:
                options["master_name"] = get_settings().redis_sentinel_master
            connection = Connection(url, transport=SENTINEL_TRANSPORT if sentinel else None,
                                    transport_options=options)
            pool = _pools[key] = pools.producers[connection]
        return pool
