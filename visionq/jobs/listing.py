"""Listing recent jobs: the ``visionq:recent`` index (job ids scored by ``queued_at``),
newest first, a page at a time, filtered by status, task and submitter."""

from __future__ import annotations

import redis

from visionq.jobs.record import Job, job_key, parse_job
from visionq.keys import RECENT_KEY

LISTING_FIELDS = ("status", "task", "submitter")
"""What a filtered listing reads of each recent job before reading a match in full."""


def recent(client: redis.Redis, *, status: str | None = None, task: str | None = None,
           limit: int = 50, before: float | None = None,
           submitter: str | None = None) -> list[Job]:
    """Newest first, optionally filtered (``submitter``: only that caller's jobs, the
    tenant filter), only jobs queued strictly before ``before`` (a cursor: the
    ``queued_at`` of the last job of the previous page).  With a filter, each chunk's
    status, task and submitter are read first and only matching records in full.
    Ids whose record expired are dropped from the index on the way."""
    found: list[Job] = []
    upper: str = f"({before!r}" if before is not None else "+inf"
    chunk = max(limit * 2, 100)
    wanted = (status, task, submitter)
    filtered = any(value is not None for value in wanted)
    while len(found) < limit:
        rows = client.zrevrangebyscore(RECENT_KEY, upper, "-inf", start=0, num=chunk,
                                       withscores=True)
        if not rows:
            break
        ids = [raw.decode() for raw, _ in rows]
        expired: list[str] = []
        if filtered:
            ids = _matching(client, ids, wanted, expired, limit - len(found))
        pipe = client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(job_key(job_id))
        for job_id, raw in zip(ids, pipe.execute(), strict=True):
            if not raw:
                expired.append(job_id)
                continue
            found.append(parse_job(job_id, raw))
            if len(found) == limit:
                break
        if expired:
            client.zrem(RECENT_KEY, *expired)
        upper = f"({rows[-1][1]!r}"
        if len(rows) < chunk:
            break
    return found


def _matching(client: redis.Redis, ids: list[str], wanted: tuple[str | None, ...],
              expired: list[str], most: int) -> list[str]:
    """The first ``most`` of ``ids`` whose status, task and submitter match ``wanted``
    (``None``: any), read with one ``HMGET`` each; expired ids go to ``expired``."""
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hmget(job_key(job_id), LISTING_FIELDS)
    matching: list[str] = []
    for job_id, values in zip(ids, pipe.execute(), strict=True):
        if values[0] is None:
            expired.append(job_id)
        elif all(want is None or (value or b"").decode() == want
                 for want, value in zip(wanted, values, strict=True)):
            matching.append(job_id)
            if len(matching) == most:
                break
    return matching
