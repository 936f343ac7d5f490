"""Celery configuration as a plain object, built from visionq's settings."""

from __future__ import annotations

import os

from kombu import Exchange, Queue

from tasks.signatures import SENTINEL_TRANSPORT, TASK_NAMES
from visionq import kombu_redis
from visionq.custom_models import CUSTOM_QUEUE
from visionq.redis_conn import is_sentinel_url
from visionq.settings import QUEUES, Settings

WORKER_MODULES = ("workers.app",)
"""Celery's ``imports``: modules a worker (and Flower) imports when it starts, never a
producer.  ``workers.app`` registers the task implementations and the worker hooks, so
``celery -A tasks worker`` is wired without ``tasks`` importing worker code."""


def celery_config(settings: Settings) -> dict[str, object]:
    transport: dict[str, object] = {
        # Redis has no acks: a message not acknowledged comes back after this long, swept
        # every few seconds.  See DEFAULT_VISIBILITY_TIMEOUT_S for why it must exceed the
        # hard time limit.
        **kombu_redis.transport_options(settings.visibility_timeout_s),
        "socket_connect_timeout": 5,
        "health_check_interval": 10,
    }
    result_transport: dict[str, object] = {"visibility_timeout": settings.visibility_timeout_s}
    # A worker of a sharded queue (visionq.shards) is pointed at its queue's Redis by
    # celery's -b, i.e. CELERY_BROKER_URL: that URL decides the broker's transport.
    broker = os.environ.get("CELERY_BROKER_URL") or settings.redis_url
    sentinel = is_sentinel_url(broker)
    if sentinel:  # kombu's and Celery's own Sentinel support
        transport["master_name"] = settings.redis_sentinel_master
    if is_sentinel_url(settings.redis_url):  # the result backend stays on the main Redis
        result_transport["master_name"] = settings.redis_sentinel_master
    return {
        "broker_url": broker,
        # kombu's Sentinel transport with a failover bug guarded (tasks.sentinel).
        "broker_transport": SENTINEL_TRANSPORT if sentinel else None,
        "result_backend": settings.redis_url,
        "result_expires": settings.result_ttl_s,
        "broker_transport_options": transport,
        "result_backend_transport_options": result_transport,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        # JSON only: no pickle anywhere on the wire.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # Never lose an accepted job: ack after the task ran, requeue if the process died.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "worker_max_tasks_per_child": settings.worker_max_tasks_per_child,
        "worker_max_memory_per_child": settings.worker_max_memory_per_child_kb,
        "task_soft_time_limit": settings.soft_time_limit_s,
        "task_time_limit": settings.hard_time_limit_s,
        "task_ignore_result": True,  # results live in visionq's job records (visionq.jobs)
        "task_queues": [Queue(name, Exchange(name, type="direct"), routing_key=name)
                        for name in (*QUEUES, CUSTOM_QUEUE)],
        "task_routes": {TASK_NAMES[name]: {"queue": name, "routing_key": name}
                        for name in (*QUEUES, CUSTOM_QUEUE)},
        "task_default_queue": QUEUES[0],
        "task_create_missing_queues": False,
        # Task events cost a Redis publish per state (received, started, succeeded) and a
        # third of the worker's main-process CPU per job; only Flower reads them, and Flower
        # enables them itself (its ``enable_events``).  VISIONQ_TASK_EVENTS=1 sends them always.
        "worker_send_task_events": settings.task_events,
        # No task-sent event: one more Redis publish on every submit, and nothing reads it
        # (the API counts submissions itself; Flower shows received/started/succeeded).
        "task_send_sent_event": False,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "broker_channel_error_retry": True,
        "imports": WORKER_MODULES,
    }
