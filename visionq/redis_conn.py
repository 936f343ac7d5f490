"""Redis connections from a URL (redis://, rediss://, with password), shared per URL."""

from __future__ import annotations

from functools import cache

import redis


@cache
def redis_client(url: str) -> redis.Redis:
    """A client with short timeouts so a down Redis turns into a quick 503, not a hang."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=10,
        retry_on_timeout=True,
    )
