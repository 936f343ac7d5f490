"""Runs one job: fetch the image by reference, decode it, predict, record the outcome.

Every failure of the job itself (bad image, model error, time limit) ends as a ``failed``
job with a reason; nothing here lets an exception kill the worker process.  ``run_job``
returns what happened (``JobOutcome``); the worker hooks (``workers.hooks``) receive it and
record it (metrics): the runner only finishes the job record — and, when they live on the
same Redis, lets the job's begin and finish round trips carry the autoscaler's scaling
hints (busy mark, service time), which ``ScalingHints`` would otherwise send in two more.

Redis going away (a restart, a failover) is not a failure of the job: every read and write
of the job record and the blob is retried for up to ``REDIS_RETRY_S``.  Without that a
restart in the middle of a job made the outcome write fail, the task raised, Celery acked
the message, and the job stayed ``running`` for good (found by ``bench/soak.py``).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache, partial
from typing import Any, TypeVar

import redis
from celery.exceptions import SoftTimeLimitExceeded

from visionq.blobstore import (
    SOURCE_UNAVAILABLE,
    BlobNotFoundError,
    BlobStore,
    RedisBlobStore,
    S3ObjectReader,
    SourceUnavailableError,
    blob_store_from_url,
)
from visionq.broker import Command, busy_command, done_commands, send
from visionq.custom_models import is_custom_task
from visionq.imaging import ImageError, ImageLimits, decode, probe
from visionq.jobs import ClaimRequest, Job, JobStore
from visionq.redis_conn import min_replicas_ack, redis_client
from visionq.settings import get_settings
from visionq.shards import ShardMap, shard_map
from workers.claim import Claimed
from workers.model import LoadListener, ModelLoadError
from workers.runtime import model_for

log = logging.getLogger(f"visionq.{__name__}")

MAX_ATTEMPTS = 3
"""A job whose worker died this many times (hard time limit, OOM, segfault) is failed
as a poison job instead of being redelivered forever."""
REDIS_RETRY_S = 30.0
"""How long a job waits for Redis to come back (a restart takes seconds); below the soft
time limit's default (50 s) so the job's own limits still apply."""
REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError)
T = TypeVar("T")


@dataclass(frozen=True)
class JobOutcome:
    """What ``run_job`` did with one message.

    ``outcome`` is ``succeeded`` or ``failed`` (with ``code``) for a job that reached a final
    state here, ``duplicate`` for a job already final (a redelivery) and ``unknown_job`` for
    a message without a record (expired).  ``job`` is the record as the job started
    (``queued_at``, ``started_at``: its stage latencies) when the job ran, ``None`` when it
    did not (unknown, duplicate, poison).
    """

    task: str
    job_id: str
    outcome: str
    code: str | None = None
    job: Job | None = field(default=None, repr=False)
    hints: bool = field(default=False, compare=False)
    """The finishing round trip carried the scaling hints (busy mark cleared, service time
    recorded): ``workers.hooks.ScalingHints`` has nothing left to write."""
    claimed: tuple[Claimed, ...] = field(default=(), compare=False, repr=False)
    """The next of the queue's jobs, claimed for this delivery by the finishing round trip
    (``workers.claim``), to run next in this process."""
    seconds: float | None = field(default=None, compare=False, repr=False)
    """How long ``run_job`` took for this job alone."""

    @property
    def final(self) -> bool:
        """The job reached its final state in this run."""
        return self.outcome in ("succeeded", "failed")


def _retrying(call: Callable[..., T], *args: Any) -> T:
    """``call(*args)``, retried while Redis is unreachable (up to ``REDIS_RETRY_S``)."""
    deadline = time.monotonic() + REDIS_RETRY_S
    while True:
        try:
            return call(*args)
        except REDIS_ERRORS as exc:
            if time.monotonic() > deadline:
                raise
            name = getattr(call, "__name__", None) or getattr(
                getattr(call, "func", None), "__name__", "call")  # a partial: its function
            log.warning("Redis unavailable (%s); retrying %s", exc, name)
            time.sleep(0.5)


def run_job(task: str, job_id: str, worker: str,
            on_model_loaded: LoadListener | None = None, *, claim: ClaimRequest | None = None,
            ack: Sequence[Command] = (), claimed: bool = False) -> JobOutcome:
    """Run job ``job_id`` of ``task`` on this worker; ``on_model_loaded`` hears about a model
    this job had to load first (normally the worker loaded it at start-up).

    Two Redis round trips when the image is in Redis: ``JobStore.begin`` (mark running,
    read the record and the image) and the finishing script (result, counters, wake-up,
    and the blob's deletion).

    Claiming (``workers.claim``): ``claim`` rides on the finishing round trip (if it records
    the outcome) and what it claimed comes back in ``JobOutcome.claimed``; ``ack`` (a
    claimed job's acknowledgement) rides on it too, or is sent alone when the job does not
    run.  ``claimed``: this job was claimed, so its delivery's soft time limit is not its
    own — reaching it raises ``SoftTimeLimitExceeded`` to the caller, who gives the job
    back, instead of failing it."""
    begun = time.perf_counter()
    settings = get_settings()
    shards = shard_map(settings)
    # The job's record and image are on its queue's Redis (visionq.shards).
    jobs, blobs = _stores(shards.url_for(task), settings.result_ttl_s,
                          settings.blob_url, settings.blob_ttl_s, settings.s3_endpoint_url)
    in_redis = isinstance(blobs, RedisBlobStore)
    # The scaling hints ride on the job's own round trips when they share a Redis.
    host = settings.instance_id if hints_ride_along(shards, task) else None
    busy = (busy_command(host, job_id),) if host is not None else ()

    def done() -> tuple[Command, ...]:
        if host is None:
            return tuple(ack)
        return (*done_commands(host, job_id, task, time.perf_counter() - begun), *ack)

    pairs: list[tuple[str, str]] = []

    def finish(call: Callable[..., bool]) -> Callable[..., bool]:
        """``call`` (``jobs.succeed``/``fail``) with what rides on the finishing round trip."""
        return partial(call, also=done(), claim=claim, claimed=pairs)

    def claimed_next() -> tuple[Claimed, ...]:
        return tuple(Claimed(tag, claimed_id) for tag, claimed_id in pairs)

    # One token per delivery: a retried begin (reply lost) does not count another attempt.
    attempt, job, data = _retrying(partial(jobs.begin, also=busy), job_id, worker, in_redis,
                                   uuid.uuid4().hex)
    if attempt <= 0:
        if ack or claim:  # a claimed job's ack; the claiming ends here (no finish)
            _retrying(send, jobs.client, [*ack, *(claim.end_commands() if claim else ())])
        if attempt == -1:
            log.warning("job %s: no record (expired or never created); dropping message",
                        job_id)
            return JobOutcome(task, job_id, "unknown_job")
        log.info("job %s: already finished, duplicate delivery ignored", job_id)
        return JobOutcome(task, job_id, "duplicate")
    if job is None:  # begin returns the record with every attempt it starts
        raise RuntimeError(f"job {job_id}: started without its record")
    # An owned Redis blob is deleted by the finishing script itself; a borrowed one (a
    # watched bucket's object, ``blob_owned`` 0) is read in place and never deleted.
    blob = job.blob if in_redis and job.blob_owned else None
    discard = not in_redis and job.blob_owned
    if attempt > MAX_ATTEMPTS:
        _retrying(finish(jobs.fail), job_id, "poison_job",
                  f"the worker died {attempt - 1} times running this job; giving up", blob)
        if discard:
            _discard(blobs, job.blob)
        return JobOutcome(task, job_id, "failed", "poison_job", hints=host is not None,
                          claimed=claimed_next())
    started = time.perf_counter()
    outcome, code = "succeeded", None
    recorded = True  # False: another delivery finished the job first (first finish wins)
    try:
        if not job.blob_owned:
            data = _borrowed_reader(settings.s3_endpoint_url).get(job.blob,
                                                                  settings.max_bytes)
        elif data is None:
            if in_redis:
                raise BlobNotFoundError(f"image {job.blob} expired or was deleted")
            data = _retrying(blobs.get, job.blob)
        # The custom queue serves many models: the job's task (custom/<name>) names it.
        model = model_for(job.task if is_custom_task(job.task) else task, on_model_loaded)
        limits = ImageLimits(settings.max_bytes, settings.max_pixels)
        image = decode(data, limits, max_side=model.max_side_for(probe(data, limits)))
        result = model.predict([image], job.options)[0]
        recorded = _retrying(finish(jobs.succeed), job_id, result, blob)
    except ImageError as exc:
        outcome, code = "failed", exc.code
        recorded = _retrying(finish(jobs.fail), job_id, exc.code, exc.message,
                             blob)
    except BlobNotFoundError as exc:
        outcome, code = "failed", "image_expired"
        recorded = _retrying(finish(jobs.fail), job_id, code, str(exc), blob)
    except SourceUnavailableError as exc:  # the watcher makes a new job later
        outcome, code = "failed", SOURCE_UNAVAILABLE
        recorded = _retrying(finish(jobs.fail), job_id, code, str(exc), blob)
    except SoftTimeLimitExceeded:
        if claimed:
            raise  # the delivery's limit, not this job's: the caller gives the job back
        outcome, code = "failed", "timeout"
        recorded = _retrying(finish(jobs.fail), job_id, code,
                             f"the job exceeded its time limit of "
                             f"{settings.soft_time_limit_s} s", blob)
    except REDIS_ERRORS:
        raise  # Redis stayed away past REDIS_RETRY_S: not the image's or the model's fault
    except Exception as exc:  # noqa: BLE001 - a model error fails the job, not the worker
        log.exception("job %s: inference failed", job_id)
        outcome = "failed"
        code = exc.code if isinstance(exc, ModelLoadError) and exc.code else "inference_error"
        recorded = _retrying(finish(jobs.fail), job_id, code,
                             f"inference failed: {type(exc).__name__}: {exc}", blob)
    if not recorded:
        log.info("job %s: finished elsewhere meanwhile (%s here not recorded)", job_id, outcome)
        outcome, code = "duplicate", None
    if discard:
        _discard(blobs, job.blob)
    elapsed = time.perf_counter() - started
    log.info("job %s (%s) %s in %.1f ms%s", job_id, task, outcome, elapsed * 1000,
             f" [{code}]" if code else "")
    return JobOutcome(task, job_id, outcome, code, job, hints=host is not None,
                      claimed=claimed_next(), seconds=time.perf_counter() - begun)


def queue_client(task: str) -> redis.Redis:
    """The Redis of ``task``'s queue: its messages, records and images."""
    settings = get_settings()
    return _stores(shard_map(settings).url_for(task), settings.result_ttl_s,
                   settings.blob_url, settings.blob_ttl_s, settings.s3_endpoint_url)[0].client


def claim_host(task: str) -> str | None:
    """The host whose busy mark covers jobs claimed from ``task``'s queue (``workers.claim``):
    this instance when the scaling hints live on that queue's Redis, else ``None``."""
    settings = get_settings()
    return settings.instance_id if hints_ride_along(shard_map(settings), task) else None


def hints_ride_along(shards: ShardMap, task: str) -> bool:
    """Whether ``task``'s jobs live on the Redis the scaling hints go to (the main one:
    always, unless the queue is sharded elsewhere, ``visionq.shards``): then the job's
    begin and finish round trips carry the busy mark and the service time, two round
    trips fewer per job than ``workers.hooks.ScalingHints`` writing them itself."""
    return shards.url_for(task) == shards.main


@cache
def _stores(redis_url: str, result_ttl_s: int, blob_url: str, blob_ttl_s: int,
            s3_endpoint_url: str | None) -> tuple[JobStore, BlobStore]:
    """The job store and blob store of one queue's Redis (built once per URL: an S3 client
    is costly)."""
    client = redis_client(redis_url)
    return (JobStore(client, result_ttl_s, replicas=min_replicas_ack(redis_url)),
            blob_store_from_url(blob_url, client, blob_ttl_s, s3_endpoint_url))


@cache
def _borrowed_reader(s3_endpoint_url: str | None) -> S3ObjectReader:
    """Reads borrowed blobs (``s3://bucket/key`` of any bucket), built on first use."""
    return S3ObjectReader(s3_endpoint_url)


def _discard(blobs: Any, key: str) -> None:
    try:
        blobs.delete(key)
    except Exception:  # noqa: BLE001 - the blob's TTL will collect it
        log.warning("could not delete blob %s; it will expire", key)
