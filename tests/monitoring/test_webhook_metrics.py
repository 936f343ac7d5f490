"""The exporter's webhook gauges (``monitoring.collector``): deliveries pending and how late
the sender is, read from the sender's own keys on a real Redis."""

from __future__ import annotations

import time

import pytest
import redis
from prometheus_client import CollectorRegistry

from monitoring.collector import BrokerCollector
from visionq.keys import CALLBACK_DUE_KEY, CALLBACK_PENDING_KEY


def test_webhook_backlog_and_lateness(idle_redis_url: str) -> None:
    conn = redis.Redis.from_url(idle_redis_url)
    registry = CollectorRegistry()
    registry.register(BrokerCollector(conn, ["classify"], {}))
    assert registry.get_sample_value("visionq_webhooks_pending") == 0
    assert registry.get_sample_value("visionq_webhooks_overdue_seconds") == 0
    conn.hset(CALLBACK_PENDING_KEY, mapping={"a:job": "{}", "b:job": "{}"})
    conn.zadd(CALLBACK_DUE_KEY, {"a:job": time.time() - 30, "b:job": time.time() + 60})
    assert registry.get_sample_value("visionq_webhooks_pending") == 2
    assert registry.get_sample_value("visionq_webhooks_overdue_seconds") == pytest.approx(
        30, abs=5)
    conn.zadd(CALLBACK_DUE_KEY, {"a:job": time.time() + 5})  # retried later: not late
    assert registry.get_sample_value("visionq_webhooks_overdue_seconds") == 0
