"""The webhook sender: the ``callbacks`` role (``python -m visionq.callbacks``, started by
``visionq up``), off every worker's path.

1. The script that finishes (or revokes) a job already appends its final record to the
   ``visionq:history`` stream (``visionq.jobs``).  The sender reads that stream through a
   consumer group of its own (``GROUP``, beside the history writer's), on every Redis jobs
   finish on (``visionq.shards``).  For a record with a ``callback_url`` (and for every
   record when ``VISIONQ_CALLBACK_URL`` is set) it stores a delivery — the URL, the body
   (the job as ``GET /v1/jobs/<id>`` shows it), the submitter — in ``CALLBACK_PENDING_KEY``
   and schedules it in ``CALLBACK_DUE_KEY`` on the main Redis, and only then acknowledges
   the stream entry: a sender killed at any point loses nothing (entries pending with a
   dead consumer are claimed after ``CLAIM_IDLE_MS``).
2. A dispatcher claims due deliveries atomically (each claim pushes the delivery's due time
   ahead by ``lease_s``, so a sender that dies mid-attempt leaves it to be retried, and
   several senders never send the same attempt), and runs up to ``concurrency`` attempts
   at once in a thread pool (``visionq.callbacks.delivery``).
3. Every attempt is appended to the job's log (``CALLBACK_LOG_PREFIX``, ``callbacks`` in
   ``GET /v1/jobs/<id>``).  A 2xx ends the delivery; anything else is retried after a
   back-off doubling from ``backoff_first_s`` to ``backoff_max_s`` until ``retry_s`` after
   the first attempt; a destination that is not allowed (``visionq.callbacks.destinations``)
   is given up at once.  At least once: a receiver may see a delivery twice (its
   ``X-Visionq-Delivery`` header is the same), never zero times while it answers within
   the retry window.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from visionq.callbacks.delivery import Outcome, post
from visionq.callbacks.destinations import AllowList
from visionq.callbacks.signing import CallbackSecrets, headers
from visionq.history import record_from_fields
from visionq.job_json import job_json  # GET /v1/jobs/<id>: one shape for both
from visionq.jobs import Job
from visionq.keys import (
    CALLBACK_DUE_KEY,
    CALLBACK_LOG_PREFIX,
    CALLBACK_PENDING_KEY,
    CALLBACK_SINCE_KEY,
    HISTORY_STREAM_KEY,
)

log = logging.getLogger("visionq.callbacks")

GROUP = "callbacks"
"""The sender's consumer group on ``visionq:history`` (the history writer has its own)."""
BATCH = 200
BLOCK_MS = 1000
CLAIM_IDLE_MS = 60_000
CLAIM_EVERY_S = 30.0
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 300.0
LOG_MAX = 100
"""Attempts kept per job (the oldest dropped): 6 h of retries at most 5 min apart is ~80."""
IDLE_POLL_S = 1.0
"""Longest the dispatcher sleeps between looks at the due set."""
JOB_TARGET, GLOBAL_TARGET = "job", "global"

# KEYS[1] due set, KEYS[2] pending hash; ARGV: now, lease until, most.  Claims due
# deliveries by pushing their due time to the lease's end: {id, item JSON, ...}.
_CLAIM_SCRIPT = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local item = redis.call('HGET', KEYS[2], id)
  if item then
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    out[#out + 1] = id
    out[#out + 1] = item
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
"""


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC).isoformat(timespec="milliseconds")


def job_body(fields: dict[str, str]) -> bytes:
    """The webhook's body: the finished job as ``GET /v1/jobs/<id>`` shows it."""
    row = record_from_fields(fields)
    job = Job(id=row["id"], task=row["task"], status=row["status"], blob=row["blob"] or "",
              options=json.loads(row["options"]) if row["options"] else {},
              queued_at=row["queued_at"], started_at=row["started_at"],
              finished_at=row["finished_at"],
              result=json.loads(row["result"]) if row["result"] else None,
              error=row["error"], code=row["code"], worker=row["worker"],
              attempts=row["attempts"], submitter=row["submitter"])
    return json.dumps(job_json(job), separators=(",", ":")).encode()


def read_log(client: redis.Redis, job_id: str) -> list[dict[str, Any]]:
    """A job's delivery attempts, oldest first (the API's ``callbacks``)."""
    return [json.loads(raw) for raw in client.lrange(f"{CALLBACK_LOG_PREFIX}{job_id}", 0, -1)]


class CallbackSender:
    """``start()`` runs the readers (one per stream Redis) and the dispatcher in daemon
    threads; ``schedule_once`` and ``dispatch_once`` are single steps (tests)."""

    def __init__(self, main: redis.Redis, secrets: CallbackSecrets, allow: AllowList, *,
                 streams: list[redis.Redis] | None = None, global_url: str = "",
                 retry_s: float = 6 * 3600.0, timeout_s: float = 10.0, concurrency: int = 16,
                 log_ttl_s: int = 30 * 3600, backoff_first_s: float = BACKOFF_FIRST_S,
                 backoff_max_s: float = BACKOFF_MAX_S, block_ms: int = BLOCK_MS,
                 claim_idle_ms: int = CLAIM_IDLE_MS, lease_s: float | None = None,
                 send: Callable[..., Outcome] = post) -> None:
        """``lease_s``: how long a claimed attempt is this sender's (default: the attempt's
        time limit + 30 s); a sender that dies mid-attempt leaves it due again after that."""
        self._main = main
        self._streams = streams or [main]
        self._secrets, self._allow = secrets, allow
        self._global_url = global_url
        self._retry_s, self._timeout_s = retry_s, timeout_s
        self._concurrency = concurrency
        self._log_ttl_s = log_ttl_s
        self._backoff = (backoff_first_s, backoff_max_s)
        self._block_ms, self._claim_idle_ms = block_ms, claim_idle_ms
        self._send = send
        self._lease_s = lease_s if lease_s is not None else timeout_s + 30.0
        self._claim = main.register_script(_CLAIM_SCRIPT)
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix="visionq-callback")
        self._inflight = 0
        self._lock = threading.Lock()
        self._state = {id(client): {"own_pending": True, "group": False, "next_claim": 0.0}
                       for client in self._streams}
        self._since = 0.0
        self.scheduled = 0
        self.delivered = 0
        self.given_up = 0

    # -- threads -----------------------------------------------------------------------
    def start(self) -> CallbackSender:
        for index, client in enumerate(self._streams):
            self._threads.append(threading.Thread(
                target=self._loop, args=(lambda c=client: self.schedule_once(c),),
                name=f"visionq-callback-reader-{index}", daemon=True))
        self._threads.append(threading.Thread(target=self._loop, args=(self._dispatch_step,),
                                              name="visionq-callback-dispatch", daemon=True))
        for thread in self._threads:
            thread.start()
        log.info("webhook sender %s: %d stream(s), %d attempts at once, retried for %.0f s%s",
                 self.consumer, len(self._streams), self._concurrency, self._retry_s,
                 f", every result to {self._global_url}" if self._global_url else "")
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout_s)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._forget_consumer()

    def _forget_consumer(self) -> None:
        """Remove this consumer from the group unless it holds pending entries (those stay
        with it, for another sender to claim): restarts do not pile up consumers, and the
        health check (``python -m visionq.callbacks --check``) stops seeing it."""
        for client in self._streams:
            try:
                if not client.xpending_range(HISTORY_STREAM_KEY, GROUP, "-", "+", 1,
                                             consumername=self.consumer):
                    client.xgroup_delconsumer(HISTORY_STREAM_KEY, GROUP, self.consumer)
            except redis.RedisError as exc:
                log.warning("webhooks: could not leave the consumer group: %s", exc)

    def wait_stopped(self) -> None:
        while not self._stop.wait(1.0):
            pass

    def _loop(self, step: Callable[[], Any]) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                step()
                delay = 0.5
            except Exception as exc:  # noqa: BLE001 - Redis down: keep everything, retry
                log.warning("webhooks: %s; retrying in %.1f s", exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)

    # -- the stream -> scheduled deliveries ----------------------------------------------
    def _ensure_group(self, client: redis.Redis) -> None:
        state = self._state[id(client)]
        if state["group"]:
            return
        # The first sender ever marks when webhooks began: the global URL gets no job that
        # finished before (a first start must not replay the stream's past to it).
        self._main.set(CALLBACK_SINCE_KEY, repr(time.time()), nx=True)
        try:  # from the start: jobs that finished while no sender ran (old ones skipped)
            client.xgroup_create(HISTORY_STREAM_KEY, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        state["group"] = True
        self._since = float(self._main.get(CALLBACK_SINCE_KEY) or 0)

    def _read(self, client: redis.Redis, start: str, block: bool) -> list[Any]:
        try:
            reply = client.xreadgroup(GROUP, self.consumer, {HISTORY_STREAM_KEY: start},
                                      count=BATCH, block=self._block_ms if block else None)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._state[id(client)]["group"] = False  # the stream was deleted: again
            return []
        return [(i, f) for i, f in reply[0][1] if f] if reply else []

    def schedule_once(self, client: redis.Redis, block: bool = True) -> int:
        """Turn one batch of finished jobs into scheduled deliveries; entries handled."""
        self._ensure_group(client)
        state = self._state[id(client)]
        entries: list[Any] = []
        if state["own_pending"]:
            entries = self._read(client, "0", block=False)
            state["own_pending"] = bool(entries)
        if not entries and time.monotonic() >= state["next_claim"]:
            state["next_claim"] = time.monotonic() + CLAIM_EVERY_S
            reply = client.xautoclaim(HISTORY_STREAM_KEY, GROUP, self.consumer,
                                      self._claim_idle_ms, "0-0", count=BATCH)
            entries = [entry for entry in reply[1] if entry and entry[1]]
        if not entries:
            entries = self._read(client, ">", block=block)
        if not entries:
            return 0
        try:
            self._schedule(client, entries)
        except Exception:
            state["own_pending"] = True
            raise
        return len(entries)

    def _schedule(self, client: redis.Redis, entries: list[Any]) -> None:
        now = time.time()
        pipe = self._main.pipeline(transaction=True)
        count = 0
        for _, raw in entries:
            fields = {k.decode(): v.decode(errors="replace") for k, v in raw.items()}
            targets = []
            if fields.get("callback_url"):
                targets.append((JOB_TARGET, fields["callback_url"]))
            if self._global_url and float(fields.get("finished_at") or now) >= self._since:
                targets.append((GLOBAL_TARGET, self._global_url))
            if not targets or "id" not in fields:
                continue
            finished = float(fields.get("finished_at") or now)
            if now - finished > self._retry_s:
                continue  # older than the retry window (a first start on an old stream)
            try:
                body = job_body(fields).decode()
            except (KeyError, ValueError) as exc:
                log.error("webhooks: skipping a malformed stream entry of job %s: %s",
                          fields.get("id"), exc)
                continue
            for target, url in targets:
                delivery = f"{fields['id']}:{target}"
                item = {"job": fields["id"], "target": target, "url": url, "body": body,
                        "submitter": fields.get("submitter") or None, "first_at": now,
                        "attempt": 0}
                pipe.hsetnx(CALLBACK_PENDING_KEY, delivery, json.dumps(item))
                pipe.zadd(CALLBACK_DUE_KEY, {delivery: now}, nx=True)
                count += 1
        if count:
            pipe.execute()
        client.xack(HISTORY_STREAM_KEY, GROUP, *[entry_id for entry_id, _ in entries])
        if count:
            self.scheduled += count
            self._wake.set()

    # -- due deliveries -> attempts ------------------------------------------------------
    def _dispatch_step(self) -> None:
        if self.dispatch_once() == 0:
            self._wake.wait(self._idle_wait())
            self._wake.clear()

    def _idle_wait(self) -> float:
        with self._lock:
            if self._inflight >= self._concurrency:
                return IDLE_POLL_S  # woken when an attempt ends
        first = self._main.zrange(CALLBACK_DUE_KEY, 0, 0, withscores=True)
        if not first:
            return IDLE_POLL_S
        return max(0.01, min(IDLE_POLL_S, float(first[0][1]) - time.time()))

    def dispatch_once(self, wait: bool = False) -> int:
        """Claim the due deliveries this process has room for and start their attempts
        (``wait``: and wait for them to end).  Attempts started."""
        with self._lock:
            room = self._concurrency - self._inflight
        if room <= 0:
            return 0
        now = time.time()
        reply = self._claim(keys=[CALLBACK_DUE_KEY, CALLBACK_PENDING_KEY],
                            args=[repr(now), repr(now + self._lease_s), room])
        futures = []
        for i in range(0, len(reply), 2):
            delivery = reply[i].decode()
            with self._lock:
                self._inflight += 1
            futures.append(self._pool.submit(self._attempt, delivery, json.loads(reply[i + 1])))
        if wait:
            concurrent.futures.wait(futures)
        return len(futures)

    def _attempt(self, delivery: str, item: dict[str, Any]) -> None:
        try:
            body = item["body"].encode()
            secret = (self._secrets.global_secret if item["target"] == GLOBAL_TARGET
                      else self._secrets.for_submitter(item.get("submitter")))
            outcome = self._send(item["url"], body,
                                 headers(secret, int(time.time()), body, delivery),
                                 self._allow, self._timeout_s)
            self._record(delivery, item, outcome)
        except Exception:  # noqa: BLE001 - the lease brings it back; never kill the pool
            log.exception("webhooks: attempt of %s failed unexpectedly", delivery)
        finally:
            with self._lock:
                self._inflight -= 1
            self._wake.set()

    def _backoff_s(self, attempt: int) -> float:
        first, most = self._backoff
        return min(most, first * 2 ** (attempt - 1)) * random.uniform(0.9, 1.1)  # noqa: S311 (jitter, not a secret)

    def _record(self, delivery: str, item: dict[str, Any], outcome: Outcome) -> None:
        now = time.time()
        item["attempt"] = attempt = int(item.get("attempt", 0)) + 1
        entry: dict[str, Any] = {"at": _iso(now), "target": item["target"], "attempt": attempt,
                                 "status": outcome.status, "error": outcome.error}
        retry_at = now + self._backoff_s(attempt)
        if outcome.delivered:
            entry["outcome"] = "delivered"
        elif outcome.refused:
            entry["outcome"] = "refused"
        elif retry_at - float(item["first_at"]) > self._retry_s:
            entry["outcome"] = "gave_up"
        else:
            entry["outcome"] = "retrying"
            entry["next_at"] = _iso(retry_at)
        log_key = f"{CALLBACK_LOG_PREFIX}{item['job']}"
        pipe = self._main.pipeline(transaction=True)
        if entry["outcome"] == "retrying":
            pipe.hset(CALLBACK_PENDING_KEY, delivery, json.dumps(item))
            pipe.zadd(CALLBACK_DUE_KEY, {delivery: retry_at})
        else:
            pipe.zrem(CALLBACK_DUE_KEY, delivery)
            pipe.hdel(CALLBACK_PENDING_KEY, delivery)
        pipe.rpush(log_key, json.dumps(entry))
        pipe.ltrim(log_key, -LOG_MAX, -1)
        pipe.expire(log_key, self._log_ttl_s)
        pipe.execute()
        if outcome.delivered:
            self.delivered += 1
        elif entry["outcome"] != "retrying":
            self.given_up += 1
            log.warning("webhook %s to %s %s after %d attempt(s): %s", delivery, item["url"],
                        "refused" if outcome.refused else "given up", attempt,
                        outcome.error or f"HTTP {outcome.status}")
        elif attempt == 1:
            log.info("webhook %s to %s failed (%s); retrying with back-off for up to %.0f s",
                     delivery, item["url"], outcome.error or f"HTTP {outcome.status}",
                     self._retry_s)
