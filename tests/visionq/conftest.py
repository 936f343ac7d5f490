"""Fixtures of the core's tests that read the broker: a Redis database no worker
consumes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis


@pytest.fixture()
def scaler_redis_url(idle_redis_url: str) -> str:
    """A database no worker consumes (flushed around each test)."""
    return idle_redis_url


@pytest.fixture()
def rconn(scaler_redis_url: str) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(scaler_redis_url)
    try:
        yield conn
    finally:
        conn.close()
