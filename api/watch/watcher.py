"""``Watcher``: the loop of ``visionq watch`` (the protocol is in ``api.watch``'s
docstring): intake (a listing or SQS), claim (``claim.lua``), create and publish, and a
second thread that writes the results of finished jobs."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from api.watch.config import WatchConfig
from api.watch.documents import error_document, job_document
from visionq.blobstore import SOURCE_UNAVAILABLE
from visionq.jobs import FINAL_STATUSES, JobStore, QueueFullError
from visionq.keys import WATCH_KEY_PREFIX
from visionq.s3events import (
    MalformedMessage,
    ObjectRef,
    normalize_etag,
    object_digest,
    parse_message,
    result_key,
    retry_transient,
    skip_reason,
)

log = logging.getLogger("visionq.watch")

CLAIMED, CREATED, QUEUED = "claimed", "created", "queued"
"""The states of a ``pending`` entry."""
SQS_WAIT_S = 5
"""SQS long-poll length: an idle watcher makes one request per 5 s and stops within 5 s."""
RESULTS_POLL_S = 0.5
"""How often the records of pending jobs are read (one pipelined round trip)."""
QUEUE_FULL_RETRY_S = 2.0
"""Backpressure: how long to wait before offering a job to a full queue again."""
SUMMARY_EVERY_S = 30.0
HEAD_ATTEMPTS = 4
"""Tries of an object's HEAD while S3 is unreachable, answers 5xx or throttles (waits of
``HEAD_BACKOFF_S``, doubling); then the object is left for the next round."""
HEAD_BACKOFF_S = 0.5
REREAD_ROUNDS = 3
"""New jobs made for an object whose job ended ``source_unavailable``, before that error
is written as its result."""

CLAIM_SCRIPT = (Path(__file__).parent / "claim.lua").read_text()


class Watcher:
    """The loop of ``visionq watch``; every dependency is passed in (tests use real ones:
    Redis, moto_server, a worker)."""

    def __init__(self, config: WatchConfig, client: redis.Redis, jobs: JobStore, s3: Any,
                 enqueue: Callable[[str, str], None], metrics: Any, sqs: Any = None) -> None:
        self.config = config
        self._client = client
        self._jobs = jobs
        self._s3 = s3
        self._sqs = sqs
        self._enqueue = enqueue
        self._metrics = metrics
        base = f"{WATCH_KEY_PREFIX}{config.id}"
        self._seen_prefix = f"{base}:seen:"
        self._pending_key = f"{base}:pending"
        self._scanned_key = f"{base}:scanned"
        self._claim = client.register_script(CLAIM_SCRIPT)
        self._stop = threading.Event()
        self._retry: set[str] = set()  # job ids to (re)create: the intake thread does it
        self._retry_lock = threading.Lock()
        self.counts = {"seen": 0, "created": 0, "duplicates": 0, "errors": 0, "written": 0}

    # -- the loop ------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def run(self, once: bool = False) -> None:
        """Until ``stop()``; with ``once``: one listing (or SQS until empty), then until every
        pending result is written."""
        c = self.config
        log.info("watching s3://%s/%s (%s mode) for %s jobs; results to s3://%s/%s; "
                 "state visionq:watch:%s", c.bucket, c.prefix, c.mode, c.task,
                 c.results_bucket, c.results_prefix, c.id)
        self.recover()
        results = threading.Thread(target=self._results_loop, name="watch-results",
                                   daemon=True)
        results.start()
        next_summary = time.monotonic() + SUMMARY_EVERY_S
        try:
            while not self._stop.is_set():
                self._retry_failed()
                try:
                    found = self.poll_once() if c.sqs_url else self.scan_once()
                except Exception:  # noqa: BLE001 - S3/SQS/Redis hiccup: try again later
                    log.exception("could not read new objects; retrying")
                    found = -1
                if time.monotonic() >= next_summary:
                    self._summary()
                    next_summary = time.monotonic() + SUMMARY_EVERY_S
                if once and found == 0 and not self._retry:
                    break
                if not c.sqs_url or found < 0:
                    self._stop.wait(c.interval_s if not once else 0.2)
            while once and not self._stop.is_set() and self._client.hlen(self._pending_key):
                self._retry_failed()
                self._stop.wait(RESULTS_POLL_S)
        finally:
            self._stop.set()
            results.join()
            with contextlib.suppress(redis.RedisError):
                self._summary()

    def _summary(self) -> None:
        pending = self._client.hlen(self._pending_key)
        self._metrics.pending.set(pending)
        log.info("objects seen %(seen)d, jobs created %(created)d, duplicates %(duplicates)d, "
                 "errors %(errors)d, results written %(written)d", self.counts)
        log.info("pending results: %d", pending)

    # -- intake --------------------------------------------------------------------------
    def scan_once(self) -> int:
        """List the prefix; handle each key whose ETag differs from the cursor's.  The
        number of objects handled."""
        c = self.config
        handled = 0
        listed: set[str] = set()
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=c.bucket, Prefix=c.prefix):
            contents = page.get("Contents", [])
            if not contents:
                continue
            keys = [item["Key"] for item in contents]
            listed.update(keys)
            known = self._client.hmget(self._scanned_key, keys)
            for item, before in zip(contents, known, strict=True):
                if self._stop.is_set():
                    return handled
                etag = normalize_etag(item.get("ETag"))
                if before is not None and before.decode() == etag:
                    continue
                obj = ObjectRef(bucket=c.bucket, key=item["Key"], etag=etag,
                                size=item.get("Size"),
                                created_at=item["LastModified"].timestamp()
                                if item.get("LastModified") else None)
                self.handle(obj)
                self._client.hset(self._scanned_key, item["Key"], etag)  # after: see claim
                handled += 1
        gone = [raw for raw in self._client.hkeys(self._scanned_key)
                if raw.decode() not in listed]
        if gone:  # deleted objects: a re-upload of the same bytes is a new object
            self._client.hdel(self._scanned_key, *gone)
        return handled

    def poll_once(self) -> int:
        """One SQS receive; every message whose objects are all handled is deleted.  The
        number of messages received."""
        reply = self._sqs.receive_message(QueueUrl=self.config.sqs_url, MaxNumberOfMessages=10,
                                          WaitTimeSeconds=SQS_WAIT_S)
        messages = reply.get("Messages", [])
        for message in messages:
            if self._stop.is_set():
                break  # not deleted: it comes back after its visibility timeout
            try:
                self._handle_message(message["Body"])
            except Exception:  # noqa: BLE001 - left in the queue, redelivered later
                log.exception("message %s not handled; it will be redelivered",
                              message.get("MessageId"))
                continue
            self._sqs.delete_message(QueueUrl=self.config.sqs_url,
                                     ReceiptHandle=message["ReceiptHandle"])
        return len(messages)

    def _handle_message(self, body: str) -> None:
        try:
            parsed = parse_message(body)
        except MalformedMessage as exc:
            log.error("dropping a message that is not an S3 notification (%s): %.200s",
                      exc, body)
            self._metrics.skipped.labels("malformed").inc()
            return
        for reason, detail in parsed.skipped:
            log.info("skipped %s: %s", reason, detail)
            self._metrics.skipped.labels(reason).inc()
        for obj in parsed.objects:
            self.handle(obj)

    def handle(self, obj: ObjectRef) -> str:
        """Claim ``obj`` and create its job (or write its error file).  What happened:
        ``created``, ``duplicate``, ``error``, ``superseded`` or a skip reason."""
        c = self.config
        self.counts["seen"] += 1
        self._metrics.objects_seen.labels(c.mode).inc()
        reason = skip_reason(obj, c.bucket, c.prefix, c.results_bucket, c.results_prefix)
        if reason:
            log.info("skipped %s: s3://%s/%s", reason, obj.bucket, obj.key)
            self._metrics.skipped.labels(reason).inc()
            return reason
        job_id = uuid.uuid4().hex
        entry = {"bucket": obj.bucket, "key": obj.key, "etag": obj.etag, "size": obj.size,
                 "created_at": obj.created_at, "claimed_at": time.time(), "state": CLAIMED}
        seen = f"{self._seen_prefix}{object_digest(obj.bucket, obj.key, obj.etag)}"
        if not int(self._claim(keys=[seen, self._pending_key],
                               args=[c.dedupe_ttl_s, job_id, json.dumps(entry)])):
            self.counts["duplicates"] += 1
            self._metrics.duplicates.inc()
            log.info("duplicate: s3://%s/%s (ETag %s) already has a job", obj.bucket, obj.key,
                     obj.etag)
            return "duplicate"
        try:
            return self._create(job_id, entry)
        except Exception:
            self._retry_later(job_id)  # claimed: this watcher must finish it
            raise

    def _create(self, job_id: str, entry: dict[str, Any]) -> str:
        """Steps 2 of a claimed (or ``created``) entry; safe to repeat."""
        c = self.config
        url = f"s3://{entry['bucket']}/{entry['key']}"
        job = self._jobs.get(job_id)
        if job is None:
            problem = self._check_object(entry)
            if problem is not None:
                if problem[0] == "superseded":
                    self._client.hdel(self._pending_key, job_id)
                    self._metrics.skipped.labels("superseded").inc()
                    log.info("skipped %s (ETag %s): overwritten since, the newer version is "
                             "handled on its own", url, entry["etag"])
                    return "superseded"
                self._write(job_id, entry, error_document(entry, c.task, *problem))
                self.counts["errors"] += 1
                return "error"
            self._admit(job_id, url)
            self.counts["created"] += 1
            self._metrics.jobs_created.labels(c.task).inc()
            log.info("job %s (%s) created for %s", job_id, c.task, url)
        if entry["state"] == CLAIMED:
            entry["state"] = CREATED
            self._client.hset(self._pending_key, job_id, json.dumps(entry))
        if job is None or job.status == "queued":
            self._enqueue(c.task, job_id)
        entry["state"] = QUEUED
        self._client.hset(self._pending_key, job_id, json.dumps(entry))
        return "created"

    def _check_object(self, entry: dict[str, Any]) -> tuple[str, str] | None:
        """``(code, message)`` when the object cannot become a job, else ``None``."""
        url = f"s3://{entry['bucket']}/{entry['key']}"
        try:
            head = self._head(entry["bucket"], entry["key"])
        except Exception as exc:
            status = getattr(exc, "response", {}).get("ResponseMetadata", {}).get(
                "HTTPStatusCode")
            if status == 404:
                return "object_not_found", f"{url} no longer exists (deleted before its job " \
                                           "was created)"
            raise
        etag = normalize_etag(head.get("ETag"))
        if entry["etag"] and etag and etag != entry["etag"]:
            return "superseded", ""
        size = int(head.get("ContentLength", 0))
        if size > self.config.max_bytes:
            self._metrics.skipped.labels("too_large").inc()
            log.warning("skipped %s (ETag %s): %d bytes, more than VISIONQ_MAX_BYTES=%d; not "
                        "read, its result file says payload_too_large", url, entry["etag"],
                        size, self.config.max_bytes)
            return "payload_too_large", (f"{url} is {size} bytes, more than the limit of "
                                         f"{self.config.max_bytes} (VISIONQ_MAX_BYTES)")
        return None

    def _head(self, bucket: str, key: str) -> dict[str, Any]:
        """HEAD, retried with back-off on transient errors (``HEAD_ATTEMPTS`` tries)."""
        return retry_transient(lambda: self._s3.head_object(Bucket=bucket, Key=key),
                               f"HEAD s3://{bucket}/{key}", attempts=HEAD_ATTEMPTS,
                               first_s=HEAD_BACKOFF_S, max_s=HEAD_BACKOFF_S * 8,
                               wait=self._stop.wait)

    def _admit(self, job_id: str, url: str) -> None:
        """Create the record, waiting while the queue is full (backpressure)."""
        c = self.config
        while True:
            try:
                self._jobs.admit(c.task, [(job_id, url, None)], c.options, queue=c.task,
                                 backlog_limit=c.backlog_limit, blob_ttl_s=c.blob_ttl_s,
                                 blob_owned=False, callback_url=c.callback_url)
                return
            except QueueFullError as exc:
                log.warning("%s; waiting %.0f s", exc, QUEUE_FULL_RETRY_S)
                if self._stop.wait(QUEUE_FULL_RETRY_S):
                    raise

    def recover(self) -> None:
        """Finish what a previous run left half done (claimed or created, not queued)."""
        for raw_id, raw in self._client.hgetall(self._pending_key).items():
            entry = json.loads(raw)
            if entry["state"] != QUEUED:
                self._retry_later(raw_id.decode())
        pending = self._client.hlen(self._pending_key)
        if pending:
            log.info("resuming: %d pending object(s) from a previous run, %d to (re)create",
                     pending, len(self._retry))

    def _retry_later(self, job_id: str) -> None:
        with self._retry_lock:
            self._retry.add(job_id)

    def _retry_failed(self) -> None:
        with self._retry_lock:
            retry, self._retry = self._retry, set()
        for job_id in sorted(retry):
            raw = self._client.hget(self._pending_key, job_id)
            if raw is None:
                continue
            entry = json.loads(raw)
            if entry.get("not_before", 0) > time.time():  # a re-read waiting its turn
                self._retry_later(job_id)
                continue
            try:
                self._create(job_id, entry)
            except Exception:  # noqa: BLE001 - S3 or Redis hiccup: the next round retries
                log.exception("job %s: could not create it yet; retrying", job_id)
                self._retry_later(job_id)

    # -- results -------------------------------------------------------------------------
    def _results_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.drain_results()
            except Exception:  # noqa: BLE001 - S3 or Redis hiccup: try again
                log.exception("could not write results; retrying")
            self._stop.wait(RESULTS_POLL_S)

    def drain_results(self) -> int:
        """Write the result file of every queued job that is final; the number written."""
        pending = {job_id.decode(): json.loads(raw)
                   for job_id, raw in self._client.hgetall(self._pending_key).items()}
        queued = [job_id for job_id, entry in pending.items() if entry["state"] == QUEUED]
        self._metrics.pending.set(len(pending))
        if not queued:
            return 0
        pipe = self._client.pipeline(transaction=False)
        for job_id in queued:
            pipe.hget(JobStore.key(job_id), "status")
        written = 0
        for job_id, status in zip(queued, pipe.execute(), strict=True):
            entry = pending[job_id]
            if status is None:  # the record expired (a long outage) or Redis lost it
                log.warning("job %s for s3://%s/%s has no record any more; creating it again",
                            job_id, entry["bucket"], entry["key"])
                entry["state"] = CLAIMED
                self._client.hset(self._pending_key, job_id, json.dumps(entry))
                self._retry_later(job_id)
                continue
            if status.decode() not in FINAL_STATUSES:
                continue
            job = self._jobs.get(job_id)
            if job is None or job.status not in FINAL_STATUSES:
                continue
            if job.code == SOURCE_UNAVAILABLE and entry.get("rereads", 0) < REREAD_ROUNDS:
                self._read_again_later(job_id, entry, job.error or "")
                continue
            self._write(job_id, entry, job_document(entry, job))
            written += 1
        return written

    def _read_again_later(self, job_id: str, entry: dict[str, Any], error: str) -> None:
        """The worker could not read the object (S3 away): a new job for it, later, in
        place of this one (whose record stays, ``source_unavailable``)."""
        rereads = int(entry.get("rereads", 0)) + 1
        delay = self.config.reread_backoff_s * 2 ** (rereads - 1)
        entry.update(state=CLAIMED, rereads=rereads, not_before=time.time() + delay)
        new_id = uuid.uuid4().hex
        pipe = self._client.pipeline(transaction=True)
        pipe.hset(self._pending_key, new_id, json.dumps(entry))
        pipe.hdel(self._pending_key, job_id)
        pipe.execute()
        self._retry_later(new_id)
        self._metrics.skipped.labels(SOURCE_UNAVAILABLE).inc()
        log.warning("job %s could not read s3://%s/%s (%s); a new job in %.0f s (%d of %d)",
                    job_id, entry["bucket"], entry["key"], error, delay, rereads,
                    REREAD_ROUNDS)

    def _write(self, job_id: str, entry: dict[str, Any], document: dict[str, Any]) -> None:
        """Put the result file, then drop the pending entry (a crash in between writes the
        same file again after a restart)."""
        c = self.config
        name = result_key(entry["key"], c.prefix, c.results_prefix)
        self._s3.put_object(Bucket=c.results_bucket, Key=name, ContentType="application/json",
                            Body=json.dumps(document, indent=1).encode())
        self._client.hdel(self._pending_key, job_id)
        self.counts["written"] += 1
        self._metrics.results_written.labels(document["status"]).inc()
        self._metrics.lag.observe(max(0.0, time.time() - (entry.get("created_at")
                                                          or entry["claimed_at"])))
        log.info("result %s: s3://%s/%s%s", document["status"], c.results_bucket, name,
                 f" [{document['code']}]" if document.get("code") else "")
