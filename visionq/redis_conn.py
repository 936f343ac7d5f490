"""Redis connections from a URL, shared per URL.

Two kinds of URL:

- ``redis://[:password@]host:port/db`` (or ``rediss://``): one server.
- ``sentinel://[:password@]host:port[/db];sentinel://host2:port2;...``: Redis Sentinel, in
  the form Celery's broker takes.  The connection always goes to the current primary of
  the master named ``VISIONQ_REDIS_SENTINEL_MASTER`` (default ``mymaster``); after a
  failover the next command finds the new one.  The password in the URL is the data
  servers' password (sentinels without one, as Celery's ``sentinel://`` means it).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from urllib.parse import unquote, urlsplit

import redis
from redis.sentinel import Sentinel

from visionq.settings import get_settings

SENTINEL_SCHEME = "sentinel"
TIMEOUTS = {"socket_connect_timeout": 2, "socket_timeout": 5}
"""Short timeouts so a down Redis turns into a quick 503, not a hang."""


@dataclass(frozen=True)
class SentinelTarget:
    sentinels: tuple[tuple[str, int], ...]
    db: int
    password: str | None
    username: str | None


def is_sentinel_url(url: str) -> bool:
    return url.strip().lower().startswith(f"{SENTINEL_SCHEME}://")


def parse_sentinel_url(url: str) -> SentinelTarget:
    """``sentinel://[:pw@]h1:p1[/db];sentinel://h2:p2`` → the sentinels, db and password
    (taken from the first part that has them)."""
    sentinels: list[tuple[str, int]] = []
    db, password, username = 0, None, None
    for part in url.split(";"):
        part = part.strip()
        if not part:
            continue
        parsed = urlsplit(part)
        if parsed.scheme.lower() != SENTINEL_SCHEME or not parsed.hostname:
            raise ValueError(f"not a sentinel:// URL part: {part!r}")
        sentinels.append((parsed.hostname, parsed.port or 26379))
        if parsed.password and password is None:
            password = unquote(parsed.password)
            username = unquote(parsed.username) if parsed.username else None
        path = parsed.path.strip("/")
        if path:
            db = int(path)
    if not sentinels:
        raise ValueError("a sentinel URL names no sentinel")
    return SentinelTarget(tuple(sentinels), db, password, username)


def sentinel_master_name() -> str:
    return get_settings().redis_sentinel_master


def min_replicas_ack(url: str) -> int:
    """Replicas a write must reach before we acknowledge it (``VISIONQ_REDIS_MIN_REPLICAS_ACK``;
    by default 1 behind Sentinel — a failover then loses no acknowledged job — else 0)."""
    configured = get_settings().redis_min_replicas_ack
    if configured is not None:
        return configured
    return 1 if is_sentinel_url(url) else 0


@cache
def redis_client(url: str) -> redis.Redis:
    """The shared client for ``url`` (a server or, through Sentinel, the current primary)."""
    if is_sentinel_url(url):
        target = parse_sentinel_url(url)
        sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=dict(TIMEOUTS),
                            **TIMEOUTS)
        return sentinel.master_for(sentinel_master_name(), db=target.db,
                                   password=target.password, username=target.username,
                                   health_check_interval=10, retry_on_timeout=True,
                                   **TIMEOUTS)
    return redis.Redis.from_url(url, health_check_interval=10, retry_on_timeout=True,
                                **TIMEOUTS)

