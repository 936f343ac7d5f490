"""``tasks.message.celery_message``: the bytes kombu would push, so the admit script can
push them itself; a real worker runs a job published that way (the end-to-end tests run
every API job through it)."""

from __future__ import annotations

import json

import pytest
import redis

from tasks import enqueue, make_celery
from tasks.message import celery_message
from visionq.custom_models import CUSTOM_QUEUE
from visionq.settings import QUEUES, Settings

VARYING = {("properties", "delivery_tag")}
"""A fresh UUID per message, in both."""


def _normalised(raw: bytes) -> dict:
    message = json.loads(raw)
    for section, key in VARYING:
        assert message[section][key], f"{section}.{key} must be set"
        message[section][key] = "<varies>"
    return message


@pytest.mark.parametrize("queue", [*QUEUES, CUSTOM_QUEUE])
def test_same_message_as_celery_and_kombu_publish(queue: str, idle_redis_url: str) -> None:
    celery = make_celery(Settings(redis_url=idle_redis_url))
    enqueue(celery, queue, "job-42")
    conn = redis.Redis.from_url(idle_redis_url)
    published = conn.lpop(queue)
    key, payload = celery_message(celery, queue, "job-42")
    assert key == queue
    assert _normalised(payload) == _normalised(published)


def test_each_message_has_its_own_delivery_tag(idle_redis_url: str) -> None:
    celery = make_celery(Settings(redis_url=idle_redis_url))
    tags = {json.loads(celery_message(celery, "detect", f"job-{i}")[1])["properties"]
            ["delivery_tag"] for i in range(3)}
    assert len(tags) == 3
