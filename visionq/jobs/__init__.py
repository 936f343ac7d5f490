"""Job records in Redis: status, options, timings, result or error, with an expiry.

A job moves ``queued -> running -> succeeded | failed``; the first finish wins.  One
module per concern:

- ``record``: the ``Job`` a record's hash holds, its statuses and key;
- ``store``: ``JobStore``, every step of a job on one Redis, each one round trip;
- ``scripts``: the Lua those steps run (``admit.lua``, ``begin.lua``, ``finish.lua``,
  ``revoke.lua``, beside it);
- ``claim``: ``ClaimRequest``, the next messages a finish claims along (``workers.claim``);
- ``replicas``: waiting for replicas (``WAIT``) so a failover loses no acknowledged write;
- ``listing``: the recent-jobs index, filtered and paged;
- ``waiting``: long-poll until a job is final.

The names other packages use are here: ``from visionq.jobs import JobStore``.
"""

from __future__ import annotations

from visionq.jobs.claim import ClaimRequest
from visionq.jobs.record import FINAL_STATUSES, STATUSES, Job
from visionq.jobs.scripts import REVOKE_FINAL, REVOKE_TOO_LATE, REVOKE_UNKNOWN, REVOKED
from visionq.jobs.store import NO_BACKLOG_LIMIT, JobStore, QueueFullError

__all__ = [
    "FINAL_STATUSES",
    "NO_BACKLOG_LIMIT",
    "REVOKED",
    "REVOKE_FINAL",
    "REVOKE_TOO_LATE",
    "REVOKE_UNKNOWN",
    "STATUSES",
    "ClaimRequest",
    "Job",
    "JobStore",
    "QueueFullError",
]
