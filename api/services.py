"""What the handlers need, built once per app and kept on ``app.extensions``."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from celery import Celery
from flask import current_app

from tasks.signatures import enqueue
from visionq.blobstore import BlobStore, blob_store_from_url
from visionq.faces_registry import FaceRegistry
from visionq.history import HistoryStore
from visionq.imaging import ImageLimits
from visionq.jobs import JobStore
from visionq.redis_conn import min_replicas_ack, redis_client
from visionq.settings import Settings
from visionq.wakeup import DoneListener

EXTENSION_KEY = "visionq"


@dataclass
class Services:
    settings: Settings
    redis: redis.Redis
    jobs: JobStore
    blobs: BlobStore
    limits: ImageLimits
    celery: Celery
    """This app's producer (``tasks.make_celery``): it publishes, it never runs tasks."""
    faces: FaceRegistry
    history: HistoryStore
    """Finished jobs after their Redis record expired (``visionq.history``)."""

    def enqueue(self, task: str, job_id: str) -> None:
        """Publish job ``job_id`` to the ``task`` queue (the message is the id only)."""
        enqueue(self.celery, task, job_id)
        self.jobs.confirm_published([job_id])  # behind Sentinel: on a replica before the 202


def build_services(settings: Settings, celery: Celery) -> Services:
    client = redis_client(settings.redis_url)
    return Services(
        settings=settings,
        redis=client,
        # One pub/sub subscription per API process wakes every long-poll (visionq.wakeup).
        jobs=JobStore(client, settings.result_ttl_s, settings.recent_jobs,
                      listener=DoneListener(client),
                      replicas=min_replicas_ack(settings.redis_url)),
        blobs=blob_store_from_url(settings.blob_url, client, settings.blob_ttl_s,
                                  settings.s3_endpoint_url),
        limits=ImageLimits(settings.max_bytes, settings.max_pixels),
        celery=celery,
        faces=FaceRegistry(client, settings.face_tolerance),
        history=HistoryStore(settings.history_store_url),  # connects on first use
    )


def services() -> Services:
    return current_app.extensions[EXTENSION_KEY]
