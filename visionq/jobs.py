"""Job records in Redis: status, options, timings, result or error, with an expiry.

A job moves ``queued -> running -> succeeded | failed``.  Finishing is atomic and
idempotent: the first ``finish`` wins, so a message delivered twice (a worker killed
after finishing but before acking) still yields exactly one result.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from visionq import kombu_redis
from visionq.broker import Command
from visionq.keys import (
    COUNTS_KEY,
    DONE_CHANNEL_PREFIX,
    HISTORY_STREAM_KEY,
    JOB_KEY_PREFIX,
    RECENT_KEY,
    job_blob_key,
)
from visionq.wakeup import DoneListener

log = logging.getLogger("visionq.jobs")

REPLICAS_RECHECK_S = 5.0
"""How often a store with ``replicas`` re-reads how many replicas the primary has."""
WAIT_RECHECK_S = 1.0
"""A waiting thread re-reads the job record this often even without an announcement."""
UNSUBSCRIBED_RECHECK_S = 0.1
"""... and this often while the process's wake-up listener is reconnecting."""
READY_WAIT_S = 2.0
"""How long a waiter gives a starting listener before it falls back to re-reading."""
FINAL_STATUSES = frozenset({"succeeded", "failed"})
STATUSES = ("queued", "running", "succeeded", "failed")
LISTING_FIELDS = ("status", "task", "submitter")
"""What a filtered listing reads of each recent job before reading a match in full."""
HISTORY_STREAM_MAXLEN = 1_000_000
"""Final records waiting in the ``visionq:history`` stream for the history store (trimmed
approximately): how many jobs can finish while the store is down before any is lost."""

# Appends the (just finished) job's record to the history stream: the job id, then every
# field of its hash.  Used inside the finishing and revoking scripts, so a job that ends
# is in the stream in the same atomic step.  With no history writer draining it (no API
# process, or VISIONQ_HISTORY_WRITER=false everywhere) the stream stops growing at
# HISTORY_STREAM_MAXLEN entries (about 1 KB each; README, "Job history").
_HISTORY_XADD = (
    "redis.call('XADD', KEYS[4], 'MAXLEN', '~', " + str(HISTORY_STREAM_MAXLEN) + ", '*', "
    "'id', string.sub(KEYS[1], " + str(len(JOB_KEY_PREFIX) + 1) + "), "
    "unpack(redis.call('HGETALL', KEYS[1])))\n")

# KEYS[1] job key, KEYS[2] counts, KEYS[3] done channel, KEYS[4] history stream, KEYS[5]
# (optional) the blob; ARGV: ttl, then field/value pairs (the first pair is status).
# Returns 1 when this call finished the job, 0 when it was already final (a duplicate
# delivery).
_FINISH_SCRIPT = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return -1 end
if status == 'succeeded' or status == 'failed' then return 0 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
local task = redis.call('HGET', KEYS[1], 'task') or '?'
if status == 'running' then redis.call('HINCRBY', KEYS[2], task .. ':running', -1) end
redis.call('HINCRBY', KEYS[2], task .. ':' .. ARGV[3], 1)
if KEYS[5] and redis.call('HGET', KEYS[1], 'blob_owned') ~= '0' then
  redis.call('DEL', KEYS[5])  -- a borrowed blob (blob_owned 0) is never deleted
end
""" + _HISTORY_XADD + """redis.call('PUBLISH', KEYS[3], ARGV[3])
return 1
"""

# Mark running unless final and, in the same round trip, read the record: {attempt,
# {field, value, ...}}; {-1} unknown, {0} already final.  A redelivery counts another
# attempt (the running gauge only once); the same call re-sent with its token ARGV[3]
# counts nothing.  The image is not read here (Lua would copy it): ``JobStore.begin``
# pipelines a plain GET after the script.
_BEGIN_SCRIPT = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {-1} end
if status == 'succeeded' or status == 'failed' then return {0} end
local attempt
if ARGV[3] ~= '' and redis.call('HGET', KEYS[1], 'begin_token') == ARGV[3] then
  -- the same call again (its reply was lost and the client re-sent it): not an attempt
  attempt = tonumber(redis.call('HGET', KEYS[1], 'attempts'))
else
  redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[1], 'worker', ARGV[2],
             'begin_token', ARGV[3])
  if status == 'queued' then
    redis.call('HINCRBY', KEYS[2], (redis.call('HGET', KEYS[1], 'task') or '?') .. ':running', 1)
  end
  attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
end
return {attempt, redis.call('HGETALL', KEYS[1])}
"""

# Admit a batch of jobs all or nothing, after the backlog check, in one round trip.
# KEYS[1] the queue's list (kombu: the bare name), KEYS[2] recent index, then per job its
# record key and blob key.  ARGV: backlog limit, job ttl, recent cap, queued_at, task,
# options JSON, submitter ('' none), callback URL ('' none), then per job: job id, mode.
# Mode '1': the image was stored under the blob key by a SET in the same MULTI
# transaction, just before this script (natively: passing the bytes through Lua copied
# them, ~1.2 CPU-µs per KB in Redis); a refused admission deletes it again.  '0': stored
# elsewhere, owned (deleted when the job ends); '2': borrowed, never deleted.  After
# those, optionally one Celery message per job (``tasks.message``), pushed onto KEYS[1]
# once every record is written: the job and its message exist together or not at all.
# Returns {0, backlog} when the queue is full (nothing kept), {1} otherwise.
_ADMIT_SCRIPT = """
local n = (#KEYS - 2) / 2
local backlog = redis.call('LLEN', KEYS[1])
if backlog + n > tonumber(ARGV[1]) then
  for i = 1, n do
    if ARGV[8 + 2 * i] == '1' then redis.call('DEL', KEYS[2 + 2 * i]) end
  end
  return {0, backlog}
end
for i = 1, n do
  local job_key, blob_key = KEYS[1 + 2 * i], KEYS[2 + 2 * i]
  local job_id, mode = ARGV[7 + 2 * i], ARGV[8 + 2 * i]
  redis.call('HSET', job_key, 'task', ARGV[5], 'status', 'queued', 'blob', blob_key,
             'options', ARGV[6], 'queued_at', ARGV[4], 'attempts', 0)
  if mode == '2' then redis.call('HSET', job_key, 'blob_owned', '0') end
  if ARGV[7] ~= '' then redis.call('HSET', job_key, 'submitter', ARGV[7]) end
  if ARGV[8] ~= '' then redis.call('HSET', job_key, 'callback_url', ARGV[8]) end
  redis.call('EXPIRE', job_key, tonumber(ARGV[2]))
  redis.call('ZADD', KEYS[2], tonumber(ARGV[4]), job_id)
end
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -tonumber(ARGV[3]) - 1)
for i = 9 + 2 * n, #ARGV do redis.call('LPUSH', KEYS[1], ARGV[i]) end
return {1}
"""

# Revoke a queued job: 1 revoked, 2 running (too late), 0 already final, -1 unknown.
# KEYS[1] job key, KEYS[2] counts, KEYS[3] done channel, KEYS[4] history stream; ARGV:
# finished_at, error message.
_REVOKE_SCRIPT = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return -1 end
if status == 'succeeded' or status == 'failed' then return 0 end
if status == 'running' then return 2 end
redis.call('HSET', KEYS[1], 'status', 'failed', 'code', 'revoked', 'error', ARGV[2],
           'finished_at', ARGV[1])
redis.call('HINCRBY', KEYS[2], (redis.call('HGET', KEYS[1], 'task') or '?') .. ':failed', 1)
""" + _HISTORY_XADD + """redis.call('PUBLISH', KEYS[3], 'failed')
return 1
"""
REVOKED, REVOKE_TOO_LATE, REVOKE_FINAL, REVOKE_UNKNOWN = 1, 2, 0, -1


NO_BACKLOG_LIMIT = 2**53 - 1
"""``admit`` without backpressure (an integer Lua reads exactly)."""


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


class QueueFullError(Exception):
    """``JobStore.admit`` refused: the queue's backlog is at its limit (nothing written)."""

    def __init__(self, queue: str, backlog: int, limit: int) -> None:
        super().__init__(f"the {queue} queue is full ({backlog} jobs waiting, limit {limit})")
        self.queue, self.backlog, self.limit = queue, backlog, limit


@dataclass
class Job:
    id: str
    task: str
    status: str
    blob: str
    options: dict[str, Any] = field(default_factory=dict)
    queued_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    result: Any = None
    error: str | None = None
    code: str | None = None
    worker: str | None = None
    attempts: int = 0
    blob_owned: bool = True
    """False: the blob is borrowed (a watched bucket's object, read in place) and must
    never be deleted by the worker, the finishing script or a revoke."""
    submitter: str | None = None
    """Who submitted it: the API caller's non-secret name (``key:<HMAC prefix>`` or
    ``ip:<address>``, ``api.security.Caller.who``), ``None`` when not recorded.  Callers
    with an API key see only their own jobs (``api.security.Caller.owner_filter``)."""
    callback_url: str | None = None
    """Where the finished job is POSTed (``visionq.callbacks``), checked at submit."""

    @property
    def queue_wait_ms(self) -> float | None:
        if self.queued_at is None or self.started_at is None:
            return None
        return round((self.started_at - self.queued_at) * 1000, 1)

    @property
    def inference_ms(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return round((self.finished_at - self.started_at) * 1000, 1)

    @property
    def total_ms(self) -> float | None:
        if self.queued_at is None or self.finished_at is None:
            return None
        return round((self.finished_at - self.queued_at) * 1000, 1)


def _float(value: bytes | None) -> float | None:
    return float(value) if value not in (None, b"") else None


class JobStore:
    def __init__(self, client: redis.Redis, ttl_s: int,
                 recent_cap: int = 10_000, listener: DoneListener | None = None, *,
                 replicas: int = 0, replica_timeout_ms: int = 1000) -> None:
        """``replicas``: admissions, publications and results are acknowledged only once
        that many replicas have them (Redis ``WAIT``, up to ``replica_timeout_ms``), so a
        Sentinel failover cannot lose an accepted job or a written result."""
        self._client = client
        self._replicas = replicas
        self._replica_timeout_ms = replica_timeout_ms
        self._connected_replicas = (0, float("-inf"))
        """(replicas the primary has, when read): ``WAIT`` asks for no more than that, so a
        primary left alone after a failover does not stall every write for the timeout."""
        self._listener = listener
        self._ttl_s = ttl_s
        self._recent_cap = recent_cap
        self._finish = client.register_script(_FINISH_SCRIPT)
        self._begin = client.register_script(_BEGIN_SCRIPT)
        self._admit = client.register_script(_ADMIT_SCRIPT)
        self._revoke = client.register_script(_REVOKE_SCRIPT)

    @property
    def client(self) -> redis.Redis:
        """The Redis this store's jobs live on (one shard, ``visionq.shards``)."""
        return self._client

    @property
    def listener(self) -> DoneListener | None:
        """The process's shared done-channel listener (``visionq.wakeup``), if any."""
        return self._listener

    @staticmethod
    def key(job_id: str) -> str:
        return f"{JOB_KEY_PREFIX}{job_id}"

    def create(self, task: str, blob: str, options: dict[str, Any] | None = None,
               job_id: str | None = None) -> Job:
        """One queued job whose image is already stored under ``blob`` (no backlog check):
        ``admit``'s record, for callers that publish by other means."""
        return self.admit(task, [(job_id or uuid.uuid4().hex, blob, None)], options,
                          queue=task, backlog_limit=NO_BACKLOG_LIMIT, blob_ttl_s=0)[0]

    def admit(self, task: str, entries: list[tuple[str, str, bytes | None]],
              options: dict[str, Any] | None = None, *, queue: str, backlog_limit: int,
              blob_ttl_s: int, blob_owned: bool = True,
              submitter: str | None = None, callback_url: str | None = None,
              messages: list[bytes] | None = None) -> list[Job]:
        """Create queued jobs all or nothing, in one round trip, unless ``queue`` already
        holds more than ``backlog_limit - len(entries)`` messages (``QueueFullError``).
        ``messages``: each job's Celery message (``tasks.message.celery_message``), pushed
        onto ``queue`` by the same script — published with the job, no ``enqueue`` after.

        ``entries``: ``(job_id, blob_key, data)``; with ``data`` the image is stored under
        ``blob_key`` in this Redis (TTL ``blob_ttl_s``) by the same script, with ``None``
        the blob is already stored elsewhere (S3).  ``blob_owned=False``: the blobs are
        borrowed (``Job.blob_owned``), never deleted.  ``submitter``: ``Job.submitter``;
        ``callback_url``: ``Job.callback_url`` (already checked, ``visionq.callbacks``)."""
        queued_at = time.time()
        opts = options or {}
        keys: list[str] = [queue, RECENT_KEY]
        args: list[Any] = [backlog_limit, self._ttl_s, self._recent_cap,
                           repr(queued_at), task, json.dumps(opts), submitter or "",
                           callback_url or ""]
        blobs: list[tuple[str, bytes]] = []
        for job_id, blob_key, data in entries:
            keys += [self.key(job_id), blob_key]
            args += [job_id, "1" if data is not None else "0" if blob_owned else "2"]
            if data is not None:
                blobs.append((blob_key, data))
        if messages is not None:
            if len(messages) != len(entries):
                raise ValueError(f"{len(messages)} messages for {len(entries)} jobs")
            args += messages
        reply = self._run(self._admit, keys, args,
                          [(key, data, blob_ttl_s) for key, data in blobs])
        if int(reply[0]) == 0:
            raise QueueFullError(queue, int(reply[1]), backlog_limit)
        return [Job(id=job_id, task=task, status="queued", blob=blob_key, options=opts,
                    queued_at=queued_at, blob_owned=blob_owned, submitter=submitter,
                    callback_url=callback_url)
                for job_id, blob_key, _ in entries]

    def recent(self, *, status: str | None = None, task: str | None = None, limit: int = 50,
               before: float | None = None, submitter: str | None = None) -> list[Job]:
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
            rows = self._client.zrevrangebyscore(RECENT_KEY, upper, "-inf", start=0, num=chunk,
                                                 withscores=True)
            if not rows:
                break
            ids = [raw.decode() for raw, _ in rows]
            expired: list[str] = []
            if filtered:
                ids = self._matching(ids, wanted, expired, limit - len(found))
            pipe = self._client.pipeline(transaction=False)
            for job_id in ids:
                pipe.hgetall(self.key(job_id))
            for job_id, raw in zip(ids, pipe.execute(), strict=True):
                if not raw:
                    expired.append(job_id)
                    continue
                found.append(self._parse(job_id, raw))
                if len(found) == limit:
                    break
            if expired:
                self._client.zrem(RECENT_KEY, *expired)
            upper = f"({rows[-1][1]!r}"
            if len(rows) < chunk:
                break
        return found

    def _matching(self, ids: list[str], wanted: tuple[str | None, ...], expired: list[str],
                  most: int) -> list[str]:
        """The first ``most`` of ``ids`` whose status, task and submitter match ``wanted``
        (``None``: any), read with one ``HMGET`` each; expired ids go to ``expired``."""
        pipe = self._client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(self.key(job_id), LISTING_FIELDS)
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

    def counts(self) -> dict[str, dict[str, int]]:
        """``{task: {"running": n, "succeeded": n, "failed": n}}`` from the counters."""
        table: dict[str, dict[str, int]] = {}
        for raw_field, raw_value in self._client.hgetall(COUNTS_KEY).items():
            task, _, status = raw_field.decode().partition(":")
            table.setdefault(task, {})[status] = max(0, int(raw_value))
        return table

    def revoke(self, job_id: str, reason: str = "revoked before it ran") -> int:
        """Fail a queued job atomically so a worker that later receives it skips it
        (``start`` returns 0 for final jobs).  One of the ``REVOKE_*`` codes."""
        return int(self._revoke(keys=[self.key(job_id), COUNTS_KEY, self.channel(job_id),
                                      HISTORY_STREAM_KEY],
                                args=[repr(time.time()), reason]))

    def get(self, job_id: str) -> Job | None:
        raw = self._client.hgetall(self.key(job_id))
        if not raw:
            return None
        return self._parse(job_id, raw)

    @staticmethod
    def _parse(job_id: str, raw: dict[bytes, bytes]) -> Job:
        data = {k.decode(): v for k, v in raw.items()}

        def text(name: str) -> str | None:
            value = data.get(name)
            return value.decode() if value is not None else None

        result = text("result")
        return Job(
            id=job_id, task=text("task") or "", status=text("status") or "queued",
            blob=text("blob") or "", options=json.loads(text("options") or "{}"),
            queued_at=_float(data.get("queued_at")), started_at=_float(data.get("started_at")),
            finished_at=_float(data.get("finished_at")),
            result=json.loads(result) if result else None,
            error=text("error"), code=text("code"), worker=text("worker"),
            attempts=int(text("attempts") or 0), blob_owned=data.get("blob_owned") != b"0",
            submitter=text("submitter"), callback_url=text("callback_url"),
        )

    def start(self, job_id: str, worker: str) -> int:
        """Mark running; the attempt number, 0 if already final, -1 if the job is unknown
        (``begin`` without the record's bytes)."""
        return self.begin(job_id, worker)[0]

    def begin(self, job_id: str, worker: str, with_blob: bool = False,
              token: str = "", *, also: Sequence[Command] = ()
              ) -> tuple[int, Job | None, bytes | None]:
        """``start``, the record and (``with_blob``: the image is a key in this Redis) the
        image's bytes, in one round trip: ``(attempt, job, data)``.  ``attempt`` is as for
        ``start``; ``job`` is ``None`` unless the job started; ``data`` is ``None`` when not
        asked for or when the blob expired.  ``token`` (one per delivery) makes a retried
        call idempotent: the same token again does not count another attempt, so a reply
        lost to a Redis stall cannot push a healthy job towards ``poison_job``.  ``also``:
        commands pipelined with it (the worker's busy mark), in the same round trip.

        The image is read with a plain ``GET`` of the key the API derives from the job id
        (``job_blob_key``), pipelined after the script; a job whose image has another key
        (stored before its job existed) costs one more round trip for it."""
        guess = job_blob_key(job_id) if with_blob else None
        reply, extra = self._run(self._begin, [self.key(job_id), COUNTS_KEY],
                                 [repr(time.time()), worker, token],
                                 also=[*also, ("GET", guess)] if guess else also,
                                 replicate=False, also_replies=True)
        attempt = int(reply[0])
        if attempt <= 0:
            return attempt, None, None
        flat = reply[1]
        job = self._parse(job_id, {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)})
        data = None
        if guess is not None and job.blob_owned:
            data = extra[-1] if job.blob == guess else self._client.get(job.blob)
        return attempt, job, data

    def succeed(self, job_id: str, result: Any, blob: str | None = None, *,
                also: Sequence[Command] = ()) -> bool:
        """Record the result; ``blob``: a key in this Redis deleted in the same script;
        ``also``: commands pipelined with it.  ``False``: the job was final already (the
        first finish wins)."""
        return self.finish(job_id, result=result, blob=blob, also=also)[0]

    def fail(self, job_id: str, code: str, error: str, blob: str | None = None, *,
             also: Sequence[Command] = ()) -> bool:
        return self.finish(job_id, code=code, error=error, blob=blob, also=also)[0]

    def finish(self, job_id: str, *, result: Any = None, code: str | None = None,
               error: str = "", blob: str | None = None, also: Sequence[Command] = (),
               claim: ClaimRequest | None = None) -> tuple[bool, tuple[tuple[str, str], ...]]:
        """Record the job's end in one round trip: ``succeeded`` with ``result``, or, with a
        ``code``, ``failed`` with ``error``; ``blob``: a key in this Redis deleted in the
        same script; ``also``: commands pipelined with it (the worker's scaling hints, a
        claimed job's ack).  ``claim``: if this call records the end, claim the next of the
        queue's messages in the same round trip (``workers.claim``).  Returns whether it
        was recorded (the first finish wins) and the ``(delivery tag, job id)`` claimed."""
        fields = ({"status": "succeeded", "result": json.dumps(result)} if code is None else
                  {"status": "failed", "code": code, "error": error})
        # ``status`` must be the first field: the script counts ARGV[3].
        fields["finished_at"] = repr(time.time())
        args: list[Any] = [self._ttl_s]
        for name, value in fields.items():
            args += [name, value]
        keys = [self.key(job_id), COUNTS_KEY, self.channel(job_id), HISTORY_STREAM_KEY]
        if blob:
            keys.append(blob)
        if claim is None:
            return int(self._run(self._finish, keys, args, also=also)) == 1, ()
        reply, extra = self._run(self._finish, keys, args,
                                 also=[*also, claim.command(self.key(job_id),
                                                            fields["finished_at"])],
                                 also_replies=True)
        items = [item.decode() if isinstance(item, bytes) else str(item) for item in extra[-1]]
        return int(reply) == 1, tuple(zip(items[0::2], items[1::2], strict=True))

    def _run(self, script: Any, keys: list[str], args: list[Any],
             writes: list[tuple[str, bytes, int]] | None = None, *,
             also: Sequence[Command] = (), replicate: bool = True,
             also_replies: bool = False) -> Any:
        """Run ``script``, after ``writes`` (``SET key value EX ttl``: an admission's
        images, kept out of the script's arguments — Lua would copy them), then ``also``
        (commands that ride along, not part of the script's atomic step) and, with
        ``replicas`` and ``replicate``, ``WAIT``: all pipelined on one connection, one
        round trip.  A connection lost between a SET and the script leaves at most an
        unreferenced image that expires with its TTL; the admit script deletes the images
        when it refuses.  ``also_replies``: return ``(the script's reply, also's replies)``."""
        wanted = self._wanted_replicas() if replicate else 0
        if not writes and not wanted and not also:
            reply = script(keys=keys, args=args)
            return (reply, []) if also_replies else reply
        writes = writes or []
        for attempt in (1, 2):
            pipe = self._client.pipeline(transaction=False)
            for key, data, ttl_s in writes:
                pipe.set(key, data, ex=ttl_s)
            # evalsha, not the Script object: a Script in a pipeline costs a SCRIPT EXISTS
            # round trip on every execute.
            pipe.evalsha(script.sha, len(keys), *keys, *args)
            for command in also:
                pipe.execute_command(*command)
            if wanted:
                pipe.execute_command("WAIT", wanted, self._replica_timeout_ms)
            replies = pipe.execute(raise_on_error=False)
            reply = replies[len(writes)]
            if isinstance(reply, redis.exceptions.NoScriptError) and attempt == 1:
                self._client.script_load(script.script)  # Redis restarted or flushed scripts
                continue
            for result in replies:
                if isinstance(result, Exception):
                    raise result
            if wanted:
                self._check_acked(int(replies[-1]), wanted)
            if also_replies:
                start = len(writes) + 1
                return reply, replies[start:start + len(also)]
            return reply
        raise AssertionError("unreachable")

    def _wanted_replicas(self) -> int:
        """``replicas``, capped by how many the primary has now (read every few seconds)."""
        if not self._replicas:
            return 0
        count, read_at = self._connected_replicas
        now = time.monotonic()
        if now - read_at > REPLICAS_RECHECK_S:
            try:
                count = int(self._client.info("replication").get("connected_slaves", 0))
            except redis.RedisError:
                count = self._replicas  # unknown: ask for all, WAIT's timeout bounds it
            if count < self._replicas:
                log.warning("the Redis primary has %d of the %d replicas writes should reach: "
                            "acknowledged writes are not protected against a failover",
                            count, self._replicas)
            self._connected_replicas = (count, now)
        return min(self._replicas, count)

    def confirm_published(self, job_ids: list[str]) -> None:
        """After the jobs' messages were published (on the producer's own connection): with
        ``replicas``, wait until the replicas have them too.  A write on our connection
        (the records' TTL, unchanged in effect) lets ``WAIT`` cover everything before it in
        the replication stream, the messages included."""
        wanted = self._wanted_replicas() if job_ids else 0
        if not wanted:
            return
        pipe = self._client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.expire(self.key(job_id), self._ttl_s)
        pipe.execute_command("WAIT", wanted, self._replica_timeout_ms)
        self._check_acked(int(pipe.execute()[-1]), wanted)

    def _check_acked(self, acked: int, wanted: int) -> None:
        if acked < wanted:
            log.warning("only %d of %d replicas confirmed a write within %d ms",
                        acked, wanted, self._replica_timeout_ms)
            self._connected_replicas = (0, float("-inf"))  # read the replica count again

    @staticmethod
    def channel(job_id: str) -> str:
        """Pub/sub channel on which finishing (or revoking) a job is announced."""
        return f"{DONE_CHANNEL_PREFIX}{job_id}"

    def wait(self, job_id: str, timeout_s: float) -> Job | None:
        """Long-poll until the job is final or ``timeout_s`` passes.

        With a ``DoneListener`` (the API's, one per process) the waiting thread is woken by
        the process's single pub/sub subscription; without one, it subscribes to the job's
        channel itself.  Either way the record is re-read every ``WAIT_RECHECK_S`` in case
        an announcement is lost (a reconnect)."""
        if self._listener is not None and timeout_s > 0:
            return self._wait_listening(self._listener, job_id, timeout_s)
        job = self.get(job_id)
        if job is None or job.status in FINAL_STATUSES or timeout_s <= 0:
            return job
        return self._wait_subscribed(job_id, timeout_s)

    def _wait_listening(self, listener: DoneListener, job_id: str,
                        timeout_s: float) -> Job | None:
        deadline = time.monotonic() + timeout_s
        event = listener.register(job_id)
        try:
            if not listener.ready:
                listener.wait_ready(min(timeout_s, READY_WAIT_S))
            while True:  # the first read is the only one when the job is already final
                # Registered before this read: a finish after it sets the event.
                try:
                    job = self.get(job_id)
                except (redis.ConnectionError, redis.TimeoutError):
                    if deadline - time.monotonic() <= 0:
                        raise
                    time.sleep(UNSUBSCRIBED_RECHECK_S)  # Redis restarting: keep waiting
                    continue
                remaining = deadline - time.monotonic()
                if job is None or job.status in FINAL_STATUSES or remaining <= 0:
                    return job
                period = WAIT_RECHECK_S if listener.ready else UNSUBSCRIBED_RECHECK_S
                event.wait(min(remaining, period))
                event.clear()
        finally:
            listener.unregister(job_id, event)

    def _wait_subscribed(self, job_id: str, timeout_s: float) -> Job | None:
        """Subscribes to the job's channel first, then reads the record, so a finish between
        the two is never missed; wakes within a millisecond of the announcement."""
        deadline = time.monotonic() + timeout_s
        pubsub = self._client.pubsub()
        try:
            pubsub.subscribe(self.channel(job_id))
            # SUBSCRIBE is asynchronous: read its confirmation before reading the record,
            # or a finish published in between would be missed (and cost a recheck).
            while time.monotonic() < deadline:
                message = pubsub.get_message(timeout=min(deadline - time.monotonic(), 1.0))
                if message is not None and message["type"] == "subscribe":
                    break
            while True:
                job = self.get(job_id)
                remaining = deadline - time.monotonic()
                if job is None or job.status in FINAL_STATUSES or remaining <= 0:
                    return job
                pubsub.get_message(ignore_subscribe_messages=True,
                                   timeout=min(remaining, WAIT_RECHECK_S))
        finally:
            pubsub.close()
