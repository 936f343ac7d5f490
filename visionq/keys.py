"""Every Redis key and channel visionq writes, in one place.

Celery's own keys (queues, delivered messages, bindings) belong to kombu's Redis
transport and are known to ``visionq.kombu_redis`` only.  Everything of ours starts with
``visionq:`` so that ``SCAN visionq:*`` shows exactly what the service keeps.
"""

from __future__ import annotations

# -- jobs (visionq.jobs) ---------------------------------------------------------------
JOB_KEY_PREFIX = "visionq:job:"
"""Hash per job: status, task, blob, options, timings, result or error."""
RECENT_KEY = "visionq:jobs:recent"
"""Sorted set of job ids scored by ``queued_at``, capped: the index behind ``GET /v1/jobs``."""
COUNTS_KEY = "visionq:jobs:counts"
"""Hash ``<task>:<status>`` -> count, updated by the scripts that move a job."""
DONE_CHANNEL_PREFIX = "visionq:done:"
"""Pub/sub channel per job, published when it reaches a final status (long-poll wake-up)."""
HISTORY_STREAM_KEY = "visionq:history"
"""Stream of final job records, appended by the finishing and revoking scripts and drained
into the durable history store (``visionq.history``) by a consumer group per store."""
HISTORY_PRUNE_LOCK_KEY = "visionq:history:prune-lock"
"""Held by the process applying history retention (one at a time)."""

# -- webhooks (visionq.callbacks), on the main Redis ------------------------------------
CALLBACK_DUE_KEY = "visionq:callbacks:due"
"""Sorted set delivery id (``<job id>:job`` or ``<job id>:global``) -> when its next attempt
is due (Unix time); an attempt in flight is pushed ahead by its lease."""
CALLBACK_PENDING_KEY = "visionq:callbacks:pending"
"""Hash delivery id -> JSON (URL, body, submitter, first attempt, attempts so far)."""
CALLBACK_SINCE_KEY = "visionq:callbacks:since"
"""When the first sender started (Unix time): ``VISIONQ_CALLBACK_URL`` gets only jobs that
finished after it."""
CALLBACK_LOG_PREFIX = "visionq:callbacks:log:"
"""List per job id of its delivery attempts (JSON, oldest first, capped; ``callbacks`` in
``GET /v1/jobs/<id>``)."""

# -- images and faces ------------------------------------------------------------------
BLOB_KEY_PREFIX = "visionq:blob:"
"""String per uploaded image (the Redis blob store), deleted when its job ends."""


def job_blob_key(job_id: str) -> str:
    """Where the API stores job ``job_id``'s image (``RedisBlobStore.key_for``)."""
    return f"{BLOB_KEY_PREFIX}{job_id}"


FACES_KEY = "visionq:faces"
"""Hash userid -> JSON list of face encodings (the DeepStack face registry)."""

# -- API -------------------------------------------------------------------------------
IDEMPOTENCY_KEY_PREFIX = "visionq:idem:"
"""String per ``Idempotency-Key`` (hashed) -> job id."""
RATE_KEY_PREFIX = "visionq:rate:"
"""Counter per caller and window: ``visionq:rate:<who>:<window>``."""

# -- workers ---------------------------------------------------------------------------
WORKER_KEY_PREFIX = "visionq:worker:"
"""String per worker hostname (JSON heartbeat, short TTL)."""
REAPER_LOCK_KEY = "visionq:reaper:lock"
"""Held by the worker sweeping for lost messages (one at a time)."""
CLAIM_LEDGER_PREFIX = "visionq:claimed:"
"""Hash per Celery delivery that claimed more jobs (``workers.claim``): delivery tag ->
the claimed message, until its job finishes; what the main process gives back if the pool
process dies."""

# -- scaling hints, written by workers and read by the autoscaler -----------------------
SERVICE_KEY = "visionq:autoscale:service:{queue}"
"""List of ``"<unix time>:<seconds>"`` service-time samples per queue, newest first."""
DONE_KEY = "visionq:autoscale:done:{queue}"
"""Counter of completed tasks per queue (the autoscaler derives the arrival rate)."""
BUSY_KEY = "visionq:autoscale:busy"
"""Sorted set ``<worker>/<task id>`` scored by expiry: which hosts hold a running task."""

# -- bucket watcher (api.watch), per watch id (bucket, prefix, task, results) -------------
WATCH_KEY_PREFIX = "visionq:watch:"
"""``visionq:watch:<watch id>:seen:<digest>`` (String, TTL): the claim of one object version
(bucket/key/ETag) -> its job id, the duplicate filter;
``visionq:watch:<watch id>:pending`` (Hash job id -> JSON): objects whose job was claimed
and whose result JSON is not written yet (what a restarted watcher finishes);
``visionq:watch:<watch id>:scanned`` (Hash key -> ETag): the scan mode's cursor."""

# -- visionq up's supervisor (launcher.supervisor) ---------------------------------------
SUPERVISOR_RESTARTS_KEY = "visionq:supervisor:restarts"
"""Hash role -> times ``visionq up`` restarted it since it started (the exporter's
``visionq_process_restarts_total``)."""
SUPERVISOR_GAVE_UP_KEY = "visionq:supervisor:gave_up"
"""Hash role -> JSON ``{"reason", "critical"}`` of the roles ``visionq up`` stopped
restarting; ``/readyz`` lists them and answers 503 while a critical one is there."""
