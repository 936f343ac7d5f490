"""The one way a job gets created: used by ``/v1/jobs`` (single and batch) and by the
DeepStack-style endpoints, so every job is validated, limited and queued the same way.

Order matters: everything that can reject the request (task, options, image header, the
face detector's cost, backlog) runs before anything is written, so a rejected request
leaves nothing behind; an ``Idempotency-Key`` is claimed (SET NX) only after that, right
before the writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

import redis

from api.errors import ApiError
from api.options import validate_options
from api.security import current_caller
from api.services import Services, services
from monitoring.record import record_submit
from tasks.message import celery_message
from visionq.blobstore import RedisBlobStore
from visionq.callbacks.destinations import AllowList, DestinationError, check_url
from visionq.custom_models import ManifestError, custom_root, find, model_name, queue_of_task
from visionq.face_budget import check_face_cost
from visionq.imaging import ImageError, probe
from visionq.jobs import Job, QueueFullError
from visionq.keys import IDEMPOTENCY_KEY_PREFIX
from visionq.settings import QUEUES

MAX_IDEMPOTENCY_KEY_LENGTH = 255
CLAIM_GRACE_S = 10
"""An Idempotency-Key claimed this long ago whose jobs do not exist was abandoned."""
BACKLOG_RETRY_AFTER_S = 10


@dataclass(frozen=True)
class Submitted:
    jobs: list[Job]
    replayed: bool = False
    """True when an earlier request with the same Idempotency-Key created these jobs."""


def check_task(task: str | None) -> str:
    """A built-in task, or a custom model's as ``custom/<name>`` (``<name>`` alone works
    too when it is no built-in task)."""
    if not task:
        raise ApiError(400, "missing_task", f"missing task; one of: {', '.join(QUEUES)}, "
                       "custom/<model>")
    if task in QUEUES:
        return task
    name = model_name(task)
    try:
        return find(custom_root(services().settings.models_dir), name).manifest.task
    except ManifestError as exc:
        raise ApiError(400, "unknown_task", f"unknown task {task!r}; one of: "
                       f"{', '.join(QUEUES)}, custom/<model> ({exc})") from exc


def check_backlog(svc: Services, task: str, adding: int = 1) -> None:
    """Backpressure: refuse new work for a queue whose backlog is beyond its limit, so a
    burst becomes quick 503s the caller can retry instead of jobs that time out queued.
    (With Redis blobs ``JobStore.admit`` checks the same inside its script.)"""
    limit = svc.settings.max_backlog_for(task)
    backlog = svc.queue_length(task)  # on the queue's Redis (visionq.shards)
    if backlog + adding > limit:
        raise _queue_full(task, backlog, limit)


def _queue_full(task: str, backlog: int, limit: int) -> ApiError:
    return ApiError(503, "queue_full",
                    f"the {task} queue is full ({backlog} jobs waiting, limit {limit}); "
                    f"retry in {BACKLOG_RETRY_AFTER_S} s",
                    {"Retry-After": str(BACKLOG_RETRY_AFTER_S)})


def _idempotency_key(raw: str, owner: str) -> str:
    if len(raw) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise ApiError(400, "invalid_idempotency_key",
                       f"Idempotency-Key is longer than {MAX_IDEMPOTENCY_KEY_LENGTH} characters")
    # Scoped by caller so two clients cannot collide (or probe each other's keys).
    digest = hashlib.sha256(f"{owner}\0{raw}".encode()).hexdigest()
    return f"{IDEMPOTENCY_KEY_PREFIX}{digest}"


def check_callback_url(url: str | None) -> str | None:
    """A job's ``callback_url`` if it may have it (``visionq.callbacks.destinations``): 400
    ``invalid_callback_url`` or ``callback_refused`` otherwise."""
    if url is None:
        return None
    try:
        return check_url(url, AllowList.parse(services().settings.callback_allow))
    except DestinationError as exc:
        raise ApiError(400, exc.code, exc.message) from exc


def submit_jobs(task: str | None, images: list[bytes], options: dict[str, Any] | None = None,
                *, idempotency_key: str | None = None, owner: str = "",
                callback_url: str | None = None) -> Submitted:
    """Validate, store and enqueue one job per image (all or nothing); ``callback_url``:
    where each finished job is POSTed (``visionq.callbacks``)."""
    svc = services()
    task = check_task(task)
    queue = queue_of_task(task)
    opts = validate_options(queue, options or {})
    callback_url = check_callback_url(callback_url)
    if not images:
        raise ApiError(400, "missing_image", "no image in the request")
    detector = (opts.get("face_detector") or opts.get("model") or svc.settings.face_detector
                if queue == "face" else "")
    if opts.get("landmarks") == "yunet" and detector != "yunet":
        raise ApiError(400, "invalid_options", "invalid face options: landmarks 'yunet' needs "
                       f"face_detector 'yunet' (this server's default is {detector!r})")
    if len(images) > svc.settings.max_batch:
        raise ApiError(413, "batch_too_large",
                       f"{len(images)} images > limit of {svc.settings.max_batch} per request")
    for index, data in enumerate(images):
        try:
            info = probe(data, svc.limits)  # reject what is clearly not an image
            if queue == "face":  # and what would cost the worker too much
                check_face_cost(info.width * info.height, opts.get("upsample"),
                                opts.get("min_face_px"), svc.settings.face_max_scan_pixels,
                                model=detector)
        except ImageError as exc:
            if len(images) > 1:
                exc.message = f"image {index}: {exc.message}"
            raise
    in_redis = isinstance(svc.blobs, RedisBlobStore)
    if not in_redis or idempotency_key:
        # Before uploading to S3, and before claiming an Idempotency-Key (a retry must not
        # be handed the ids of a submission about to be refused); with Redis blobs and no
        # key, ``JobStore.admit`` checks the backlog atomically in its script.
        check_backlog(svc, queue, len(images))

    job_ids = [uuid.uuid4().hex for _ in images]
    idem = _idempotency_key(idempotency_key, owner) if idempotency_key else None
    if idem is not None:
        replayed = _claim_or_replay(svc, idem, job_ids, task)
        if replayed is not None:
            return replayed

    created: list[Job] = []
    stored: list[str] = []
    entries: list[tuple[str, str, bytes | None]] = []
    try:
        if in_redis:  # images, records and the backlog check: one script, one round trip
            entries = [(job_id, RedisBlobStore.key_for(job_id), data)
                       for job_id, data in zip(job_ids, images, strict=True)]
        else:
            for data in images:
                stored.append(svc.blobs.put(data))
            entries = [(job_id, key, None) for job_id, key in zip(job_ids, stored, strict=True)]
        # With the images in Redis the script publishes too (tasks.message): one round
        # trip for everything; with S3 blobs Celery publishes after the admission.
        messages = ([celery_message(svc.celery, queue, job_id)[1] for job_id in job_ids]
                    if in_redis else None)
        created = svc.jobs.admit(task, entries, opts, queue=queue,
                                 backlog_limit=svc.settings.max_backlog_for(queue),
                                 blob_ttl_s=svc.settings.blob_ttl_s,
                                 submitter=owner or current_caller().who,
                                 callback_url=callback_url, messages=messages)
        for job in created:
            if messages is None:
                svc.enqueue(task, job.id)
            else:
                record_submit(queue)  # Celery's after_task_publish counts the others
    except Exception as exc:
        # All or nothing: undo whatever may have been written, including by an ``admit``
        # whose reply was lost (revoking an id that has no record is a no-op).
        with contextlib.suppress(Exception):  # best effort: Redis may be what failed
            if not isinstance(exc, QueueFullError):  # a refused admit wrote nothing
                for job_id in job_ids:
                    svc.jobs.revoke(job_id, "submission failed")
            for key in stored or [blob for _, blob, _ in entries]:
                svc.blobs.delete(key)
            if idem is not None:
                svc.redis.delete(idem)
        if isinstance(exc, QueueFullError):
            raise _queue_full(queue, exc.backlog, exc.limit) from None
        raise
    return Submitted(created)


def _claim_or_replay(svc: Services, idem: str, job_ids: list[str],
                     task: str) -> Submitted | None:
    """Claim ``idem`` for ``job_ids`` (``None``: go on and create them), or the first
    request's jobs.  A claim whose jobs never appeared within ``CLAIM_GRACE_S`` belongs to
    a request that failed or died between claiming and admitting (Redis down, API killed):
    it is released and claimed afresh, so a retry gets real jobs, never a made-up one."""
    ttl_s = svc.settings.idempotency_ttl_s
    for _ in range(2):
        if svc.redis.set(idem, json.dumps(job_ids), nx=True, ex=ttl_s):
            return None
        raw = svc.redis.get(idem)
        if raw is None:  # expired or released between SET NX and GET: claim again
            continue
        jobs = [svc.jobs.get(job_id) for job_id in json.loads(raw)]
        if all(job is not None for job in jobs):
            return Submitted([job for job in jobs if job is not None], replayed=True)
        age_s = ttl_s - svc.redis.ttl(idem)
        if age_s <= CLAIM_GRACE_S:  # the first request is still writing its jobs
            raise ApiError(409, "idempotency_in_progress",
                           "a request with this Idempotency-Key is still being processed; "
                           "retry", headers={"Retry-After": "1"})
        _release(svc, idem, raw)
    raise ApiError(409, "idempotency_conflict", "retry the request",
                   headers={"Retry-After": "1"})


def _release(svc: Services, idem: str, raw: bytes) -> None:
    """Delete the claim ``idem`` only if it still holds ``raw`` (another retry may have
    released and re-claimed it meanwhile)."""
    with svc.redis.pipeline() as pipe:
        try:
            pipe.watch(idem)
            if pipe.get(idem) == raw:
                pipe.multi()
                pipe.delete(idem)
                pipe.execute()
        except redis.WatchError:
            pass
