"""``ClaimRequest``: what a job's finish claims along, in the finish's own round trip
(``workers.claim``; the command itself is kombu's layout: ``visionq.kombu_redis``)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from visionq import kombu_redis
from visionq.broker import Command


@dataclass(frozen=True)
class ClaimRequest:
    """What a job's finish claims along (``workers.claim``): up to ``most`` messages of
    ``task_name`` from ``queue`` (``visionq.kombu_redis.claim_command``), only if the
    queue holds ``concurrency`` per claimed one (the other pool processes' share), noted
    in ``ledger_key`` (TTL ``ttl_s``)."""

    queue: str
    ledger_key: str
    task_name: str
    most: int
    concurrency: int
    ttl_s: int
    busy: tuple[str, str, float] | None = None
    """``(busy set key, member, expiry)``: marks the host busy while it holds claimed jobs
    (scale-in protection between one claimed job's finish and the next one's begin); a
    claim that takes nothing clears it."""

    def end_commands(self) -> list[Command]:
        """What ends the host's busy mark without claiming (a job that did not run)."""
        return [] if self.busy is None else [("ZREM", self.busy[0], self.busy[1])]

    def command(self, job_key: str, finished_at: str) -> Command:
        """The claim, for the pipeline of the finish that writes ``finished_at`` to
        ``job_key``."""
        return kombu_redis.claim_command(job_key, finished_at, self.queue, self.ledger_key,
                                         self.task_name, self.most, self.concurrency,
                                         self.ttl_s, time.time(), self.busy)
