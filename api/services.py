"""What the handlers need, built once per app and kept on ``app.extensions``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import redis
from flask import current_app

from visionq.blobstore import BlobStore, blob_store_from_url
from visionq.faces_registry import FaceRegistry
from visionq.imaging import ImageLimits
from visionq.jobs import JobStore
from visionq.redis_conn import redis_client
from visionq.settings import Settings

EXTENSION_KEY = "visionq"


@dataclass
class Services:
    settings: Settings
    redis: redis.Redis
    jobs: JobStore
    blobs: BlobStore
    limits: ImageLimits
    enqueue: Callable[[str, str], None]
    faces: FaceRegistry


def build_services(settings: Settings) -> Services:
    from tasks.app import use_broker
    from tasks.inference import enqueue

    use_broker(settings.redis_url)
    client = redis_client(settings.redis_url)
    return Services(
        settings=settings,
        redis=client,
        jobs=JobStore(client, settings.result_ttl_s, settings.recent_jobs),
        blobs=blob_store_from_url(settings.blob_url, client, settings.blob_ttl_s,
                                  settings.s3_endpoint_url),
        limits=ImageLimits(settings.max_bytes, settings.max_pixels),
        enqueue=enqueue,
        faces=FaceRegistry(client, settings.face_tolerance),
    )


def services() -> Services:
    return current_app.extensions[EXTENSION_KEY]
