"""Runs one job: fetch the image by reference, decode it, predict, finish the job record.

``run_job`` reads top to bottom: begin (one round trip: mark running, read the record and,
when it is in Redis, the image), work out a ``Verdict`` (``_work``), then build one
``workers.finish.Finish`` and apply it once (one round trip: the outcome, the counters, the
wake-up, the blob's deletion, and what rides along: the scaling hints, a claimed job's ack,
the claim of the next job).  It returns what happened (``JobOutcome``); the worker hooks
(``workers.hooks``) record it (metrics).

Every failure of the job itself (bad image, model error, time limit) ends as a ``failed``
job with a reason; nothing here lets an exception kill the worker process.  Redis going
away is not a failure of the job: its round trips are retried (``workers.stores``).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field, replace
from functools import partial

from celery.exceptions import SoftTimeLimitExceeded

from visionq.blobstore import SOURCE_UNAVAILABLE, BlobNotFoundError, SourceUnavailableError
from visionq.custom_models import is_custom_task
from visionq.imaging import ImageError, ImageLimits, decode, probe
from visionq.jobs import Job
from visionq.settings import get_settings
from workers.claim import Claimed
from workers.finish import NO_RIDES, Finish, Rides, Verdict, apply, let_go
from workers.model import LoadListener, ModelLoadError
from workers.runtime import model_for
from workers.stores import (
    REDIS_ERRORS,
    QueueStores,
    borrowed_reader,
    discard,
    queue_stores,
    retrying,
)

log = logging.getLogger(f"visionq.{__name__}")

MAX_ATTEMPTS = 3
"""A job whose worker died this many times (hard time limit, OOM, segfault) is failed
as a poison job instead of being redelivered forever."""


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


def run_job(task: str, job_id: str, worker: str, on_model_loaded: LoadListener | None = None,
            rides: Rides = NO_RIDES) -> JobOutcome:
    """Run job ``job_id`` of ``task`` on this worker; ``on_model_loaded`` hears about a model
    this job had to load first (normally the worker loaded it at start-up).  ``rides``:
    what the delivery adds to the job's finish (``workers.delivery``); a claimed job that
    reaches its delivery's soft time limit raises ``SoftTimeLimitExceeded`` to the caller,
    who gives it back, instead of failing."""
    begun = time.perf_counter()
    stores = queue_stores(task)
    # One token per delivery: a retried begin (reply lost) does not count another attempt.
    attempt, job, data = retrying(partial(stores.jobs.begin, also=stores.busy(job_id)),
                                  job_id, worker, stores.in_redis, uuid.uuid4().hex)
    if attempt <= 0:
        retrying(let_go, stores.jobs, rides)  # no finish will carry what rode on it
        return _not_run(task, job_id, attempt)
    if job is None:  # begin returns the record with every attempt it starts
        raise RuntimeError(f"job {job_id}: started without its record")
    ran = attempt <= MAX_ATTEMPTS
    verdict = (_work(task, job, data, stores, on_model_loaded, rides.claimed) if ran else
               Verdict(code="poison_job", error=f"the worker died {attempt - 1} times "
                                                "running this job; giving up"))
    # An owned Redis blob is deleted by the finishing script itself; a borrowed one (a
    # watched bucket's object, ``blob_owned`` 0) is read in place and never deleted.
    finish = Finish(job_id, verdict, job.blob if stores.in_redis and job.blob_owned else None,
                    stores.done(job_id, task, time.perf_counter() - begun), rides)
    try:
        finished = retrying(apply, stores.jobs, finish)
    except SoftTimeLimitExceeded:  # the limit came during the finish (Redis away): fail it
        if rides.claimed:
            raise
        finish = replace(finish, verdict=_timed_out())
        finished = retrying(apply, stores.jobs, finish)
    if job.blob_owned and not stores.in_redis:
        discard(stores.blobs, job.blob)
    outcome, code = finish.verdict.outcome, finish.verdict.code
    if not finished.recorded:
        log.info("job %s: finished elsewhere meanwhile (%s here not recorded)", job_id, outcome)
        outcome, code = "duplicate", None
    seconds = time.perf_counter() - begun
    log.info("job %s (%s) %s in %.1f ms%s", job_id, task, outcome, seconds * 1000,
             f" [{code}]" if code else "")
    return JobOutcome(task, job_id, outcome, code, job if ran else None,
                      hints=stores.host is not None, claimed=finished.claimed, seconds=seconds)


def _work(task: str, job: Job, data: bytes | None, stores: QueueStores,
          on_model_loaded: LoadListener | None, claimed: bool) -> Verdict:
    """Read the image, decode it and predict: the job's result, or why it failed."""
    settings = get_settings()
    try:
        if not job.blob_owned:
            data = borrowed_reader(settings.s3_endpoint_url).get(job.blob, settings.max_bytes)
        elif data is None:
            if stores.in_redis:
                raise BlobNotFoundError(f"image {job.blob} expired or was deleted")
            data = retrying(stores.blobs.get, job.blob)
        # The custom queue serves many models: the job's task (custom/<name>) names it.
        model = model_for(job.task if is_custom_task(job.task) else task, on_model_loaded)
        limits = ImageLimits(settings.max_bytes, settings.max_pixels)
        image = decode(data, limits, max_side=model.max_side_for(probe(data, limits)))
        result = model.predict([image], job.options)[0]
        json.dumps(result)  # a result the record cannot hold fails the job, here
        return Verdict(result)
    except ImageError as exc:
        return Verdict(code=exc.code, error=exc.message)
    except BlobNotFoundError as exc:
        return Verdict(code="image_expired", error=str(exc))
    except SourceUnavailableError as exc:  # the watcher makes a new job later
        return Verdict(code=SOURCE_UNAVAILABLE, error=str(exc))
    except SoftTimeLimitExceeded:
        if claimed:
            raise  # the delivery's limit, not this job's: the caller gives the job back
        return _timed_out()
    except REDIS_ERRORS:
        raise  # Redis stayed away past REDIS_RETRY_S: not the image's or the model's fault
    except Exception as exc:  # noqa: BLE001 - a model error fails the job, not the worker
        log.exception("job %s: inference failed", job.id)
        code = exc.code if isinstance(exc, ModelLoadError) and exc.code else "inference_error"
        return Verdict(code=code, error=f"inference failed: {type(exc).__name__}: {exc}")


def _timed_out() -> Verdict:
    return Verdict(code="timeout", error=f"the job exceeded its time limit of "
                                         f"{get_settings().soft_time_limit_s} s")


def _not_run(task: str, job_id: str, attempt: int) -> JobOutcome:
    """The outcome of a message whose job did not run (``attempt`` -1: no record, 0: final)."""
    if attempt == -1:
        log.warning("job %s: no record (expired or never created); dropping message", job_id)
        return JobOutcome(task, job_id, "unknown_job")
    log.info("job %s: already finished, duplicate delivery ignored", job_id)
    return JobOutcome(task, job_id, "duplicate")
