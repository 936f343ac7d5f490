"""``JobStore``: the job records of one Redis (one shard, ``visionq.shards``).

A job moves ``queued -> running -> succeeded | failed``.  Finishing is atomic and
idempotent: the first ``finish`` wins, so a message delivered twice (a worker killed
after finishing but before acking) still yields exactly one result.  Each step is one of
the Lua scripts (``visionq.jobs.scripts``) in one round trip, with what rides along
(images, claims, scaling hints, ``WAIT``) pipelined beside it."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

import redis

from visionq.broker import Command
from visionq.jobs import listing, scripts, waiting
from visionq.jobs.claim import ClaimRequest
from visionq.jobs.record import Job, job_key, parse_job
from visionq.jobs.replicas import ReplicaWait
from visionq.keys import COUNTS_KEY, HISTORY_STREAM_KEY, RECENT_KEY, job_blob_key
from visionq.wakeup import DoneListener

NO_BACKLOG_LIMIT = 2**53 - 1
"""``admit`` without backpressure (an integer Lua reads exactly)."""


class QueueFullError(Exception):
    """``JobStore.admit`` refused: the queue's backlog is at its limit (nothing written)."""

    def __init__(self, queue: str, backlog: int, limit: int) -> None:
        super().__init__(f"the {queue} queue is full ({backlog} jobs waiting, limit {limit})")
        self.queue, self.backlog, self.limit = queue, backlog, limit


class JobStore:
    def __init__(self, client: redis.Redis, ttl_s: int,
                 recent_cap: int = 10_000, listener: DoneListener | None = None, *,
                 replicas: int = 0, replica_timeout_ms: int = 1000) -> None:
        """``replicas``: admissions, publications and results are acknowledged only once
        that many replicas have them (Redis ``WAIT``, up to ``replica_timeout_ms``), so a
        Sentinel failover cannot lose an accepted job or a written result."""
        self._client = client
        self._replica_wait = ReplicaWait(client, replicas, replica_timeout_ms)
        self._listener = listener
        self._ttl_s = ttl_s
        self._recent_cap = recent_cap
        self._finish = client.register_script(scripts.FINISH)
        self._begin = client.register_script(scripts.BEGIN)
        self._admit = client.register_script(scripts.ADMIT)
        self._revoke = client.register_script(scripts.REVOKE)

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
        return job_key(job_id)

    @staticmethod
    def channel(job_id: str) -> str:
        """Pub/sub channel on which finishing (or revoking) a job is announced."""
        return waiting.done_channel(job_id)

    # -- admission -----------------------------------------------------------------------
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

    def confirm_published(self, job_ids: list[str]) -> None:
        """After the jobs' messages were published (on the producer's own connection): with
        ``replicas``, wait until the replicas have them too (``ReplicaWait.confirm``)."""
        self._replica_wait.confirm(job_ids, self._ttl_s)

    # -- reading -------------------------------------------------------------------------
    def get(self, job_id: str) -> Job | None:
        raw = self._client.hgetall(self.key(job_id))
        if not raw:
            return None
        return parse_job(job_id, raw)

    def recent(self, *, status: str | None = None, task: str | None = None, limit: int = 50,
               before: float | None = None, submitter: str | None = None) -> list[Job]:
        """Newest first, filtered and paged (``visionq.jobs.listing.recent``)."""
        return listing.recent(self._client, status=status, task=task, limit=limit,
                              before=before, submitter=submitter)

    def counts(self) -> dict[str, dict[str, int]]:
        """``{task: {"running": n, "succeeded": n, "failed": n}}`` from the counters."""
        table: dict[str, dict[str, int]] = {}
        for raw_field, raw_value in self._client.hgetall(COUNTS_KEY).items():
            task, _, status = raw_field.decode().partition(":")
            table.setdefault(task, {})[status] = max(0, int(raw_value))
        return table

    def wait(self, job_id: str, timeout_s: float) -> Job | None:
        """Long-poll until the job is final or ``timeout_s`` passes
        (``visionq.jobs.waiting.wait``: woken by the process's ``DoneListener`` when there
        is one, else by a subscription of its own)."""
        return waiting.wait(self.get, self._client, self._listener, job_id, timeout_s)

    # -- running and finishing -----------------------------------------------------------
    def revoke(self, job_id: str, reason: str = "revoked before it ran") -> int:
        """Fail a queued job atomically so a worker that later receives it skips it
        (``start`` returns 0 for final jobs).  One of the ``REVOKE_*`` codes."""
        return int(self._revoke(keys=[self.key(job_id), COUNTS_KEY, self.channel(job_id),
                                      HISTORY_STREAM_KEY],
                                args=[repr(time.time()), reason]))

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
        job = parse_job(job_id, {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)})
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
        wanted = self._replica_wait.wanted() if replicate else 0
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
                pipe.execute_command("WAIT", wanted, self._replica_wait.timeout_ms)
            replies = pipe.execute(raise_on_error=False)
            reply = replies[len(writes)]
            if isinstance(reply, redis.exceptions.NoScriptError) and attempt == 1:
                self._client.script_load(script.script)  # Redis restarted or flushed scripts
                continue
            for result in replies:
                if isinstance(result, Exception):
                    raise result
            if wanted:
                self._replica_wait.check(int(replies[-1]), wanted)
            if also_replies:
                start = len(writes) + 1
                return reply, replies[start:start + len(also)]
            return reply
        raise AssertionError("unreachable")
