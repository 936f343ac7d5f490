"""kombu's Redis Sentinel transport, with one failover bug guarded.

kombu 5.7's ``SentinelChannel`` drops its connection pool when the connection breaks (to
close its sentinel connections, celery/kombu#1108); closing the channel afterwards restores
unacknowledged messages through ``pool``, which rebuilds the pool from ``connection.client`` —
``None`` by then — and the ``AttributeError`` is "unrecoverable": the worker's main process
exits in the middle of a failover (seen in ``tests/test_sentinel_failover.py``).  Here a
closed connection is a connection error instead, which kombu's close path ignores and its
reconnect loop retries; the unacknowledged messages come back through the visibility timeout as
after any lost connection.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport.redis import SentinelChannel, SentinelTransport


class Channel(SentinelChannel):
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise redis.exceptions.ConnectionError("the broker connection is closed")
        return super()._connparams(asynchronous=asynchronous)


class Transport(SentinelTransport):
    Channel = Channel
