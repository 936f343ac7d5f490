"""The Celery application: ``celery -A tasks worker -Q face`` starts a face worker."""

from __future__ import annotations

import kombu.pools
from celery import Celery

from tasks.config import celery_config
from visionq.settings import get_settings

app = Celery("visionq")
app.config_from_object(celery_config(get_settings()))


def use_broker(url: str) -> None:
    """Point this process's producer at another Redis (an API built with an explicit
    ``redis_url``, tests).  Drops pooled connections to the previous broker."""
    if app.conf.broker_url == url:
        return
    app.conf.broker_url = url
    app.conf.result_backend = url
    if app._pool is not None:
        app._pool.force_close_all()
        app._pool = None
    app.amqp._producer_pool = None
    # kombu caches producer pools per connection in module-level groups: without a reset,
    # switching back to an earlier URL reuses its (now closed) pool -> "Acquire on closed pool".
    kombu.pools.reset()
