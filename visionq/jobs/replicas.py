"""Replica acknowledgement (Redis ``WAIT``): with ``replicas``, admissions, publications
and results are acknowledged only once that many replicas have them, so a Sentinel
failover cannot lose an accepted job or a written result."""

from __future__ import annotations

import logging
import time

import redis

from visionq.jobs.record import job_key

log = logging.getLogger("visionq.jobs")

REPLICAS_RECHECK_S = 5.0
"""How often a store with ``replicas`` re-reads how many replicas the primary has."""


class ReplicaWait:
    """How many replicas a write waits for, and the check of what ``WAIT`` answered."""

    def __init__(self, client: redis.Redis, replicas: int, timeout_ms: int) -> None:
        self._client = client
        self.replicas = replicas
        self.timeout_ms = timeout_ms
        self._connected = (0, float("-inf"))
        """(replicas the primary has, when read): ``WAIT`` asks for no more than that, so a
        primary left alone after a failover does not stall every write for the timeout."""

    def wanted(self) -> int:
        """``replicas``, capped by how many the primary has now (read every few seconds)."""
        if not self.replicas:
            return 0
        count, read_at = self._connected
        now = time.monotonic()
        if now - read_at > REPLICAS_RECHECK_S:
            try:
                count = int(self._client.info("replication").get("connected_slaves", 0))
            except redis.RedisError:
                count = self.replicas  # unknown: ask for all, WAIT's timeout bounds it
            if count < self.replicas:
                log.warning("the Redis primary has %d of the %d replicas writes should reach: "
                            "acknowledged writes are not protected against a failover",
                            count, self.replicas)
            self._connected = (count, now)
        return min(self.replicas, count)

    def check(self, acked: int, wanted: int) -> None:
        """What ``WAIT`` answered: fewer than ``wanted`` is logged, and the replica count
        is read again before the next write."""
        if acked < wanted:
            log.warning("only %d of %d replicas confirmed a write within %d ms",
                        acked, wanted, self.timeout_ms)
            self._connected = (0, float("-inf"))  # read the replica count again

    def confirm(self, job_ids: list[str], ttl_s: int) -> None:
        """After the jobs' messages were published (on the producer's own connection): with
        ``replicas``, wait until the replicas have them too.  A write on our connection
        (the records' TTL, unchanged in effect) lets ``WAIT`` cover everything before it in
        the replication stream, the messages included."""
        wanted = self.wanted() if job_ids else 0
        if not wanted:
            return
        pipe = self._client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.expire(job_key(job_id), ttl_s)
        pipe.execute_command("WAIT", wanted, self.timeout_ms)
        self.check(int(pipe.execute()[-1]), wanted)
