"""Borrowed blobs (jobs made by ``visionq watch``): the worker reads the user's object in
place, from any bucket, and never deletes it, whichever blob store the worker has; owned
blobs are still deleted.  ``run_job`` in this process, real Redis, moto_server for S3."""

from __future__ import annotations

import uuid

import boto3
import pytest
import redis

from tests.workers.conftest import SLEEPY, WorkerEnv
from tests.workers.sleepy_model import image_bytes
from visionq.jobs import JobStore
from workers.runner import run_job

BUCKET = "vq-borrowed"


@pytest.fixture()
def s3(moto_url: str, aws_env: dict[str, str]):
    client = boto3.client("s3", endpoint_url=moto_url)
    client.create_bucket(Bucket=BUCKET)
    return client


def _borrowed_job(store: JobStore, key: str) -> str:
    job_id = uuid.uuid4().hex
    store.admit("classify", [(job_id, f"s3://{BUCKET}/{key}", None)], queue="classify",
                backlog_limit=1000, blob_ttl_s=60, blob_owned=False)
    return job_id


@pytest.mark.parametrize("blob_url", ["redis://", f"s3://{BUCKET}/uploads", "s3://elsewhere"])
def test_a_borrowed_object_is_read_in_place_and_kept(
        worker_env: WorkerEnv, idle_redis_url: str, moto_url: str, s3, blob_url: str) -> None:
    worker_env(REDIS_URL=idle_redis_url, VISIONQ_MODEL_CLASSIFY=SLEEPY,
               VISIONQ_BLOB_URL=blob_url, VISIONQ_S3_ENDPOINT_URL=moto_url)
    store = JobStore(redis.Redis.from_url(idle_redis_url), 600)
    s3.put_object(Bucket=BUCKET, Key="in/cat 1.png", Body=image_bytes(33))
    job_id = _borrowed_job(store, "in/cat 1.png")
    assert store.get(job_id).blob_owned is False
    outcome = run_job("classify", job_id, "w1")
    assert outcome.outcome == "succeeded", store.get(job_id)
    assert store.get(job_id).result["width"] == 33
    assert s3.get_object(Bucket=BUCKET, Key="in/cat 1.png")["Body"].read() == image_bytes(33)


def test_an_owned_s3_blob_is_still_deleted(worker_env: WorkerEnv, idle_redis_url: str,
                                           moto_url: str, s3) -> None:
    worker_env(REDIS_URL=idle_redis_url, VISIONQ_MODEL_CLASSIFY=SLEEPY,
               VISIONQ_BLOB_URL=f"s3://{BUCKET}/uploads", VISIONQ_S3_ENDPOINT_URL=moto_url)
    store = JobStore(redis.Redis.from_url(idle_redis_url), 600)
    s3.put_object(Bucket=BUCKET, Key="uploads/x", Body=image_bytes(20))
    job_id = uuid.uuid4().hex
    store.admit("classify", [(job_id, f"s3://{BUCKET}/uploads/x", None)], queue="classify",
                backlog_limit=1000, blob_ttl_s=60)
    assert store.get(job_id).blob_owned is True
    assert run_job("classify", job_id, "w1").outcome == "succeeded"
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="uploads/")


def test_a_deleted_borrowed_object_fails_the_job(worker_env: WorkerEnv, idle_redis_url: str,
                                                 moto_url: str, s3) -> None:
    worker_env(REDIS_URL=idle_redis_url, VISIONQ_MODEL_CLASSIFY=SLEEPY,
               VISIONQ_S3_ENDPOINT_URL=moto_url)
    store = JobStore(redis.Redis.from_url(idle_redis_url), 600)
    job_id = _borrowed_job(store, "in/never-there.png")
    outcome = run_job("classify", job_id, "w1")
    assert (outcome.outcome, outcome.code) == ("failed", "image_expired")
    assert "deleted" in store.get(job_id).error


def test_the_finishing_script_keeps_a_borrowed_redis_key(idle_redis_url: str) -> None:
    client = redis.Redis.from_url(idle_redis_url)
    store = JobStore(client, 600)
    client.set("their:image", b"bytes")
    store.admit("classify", [("j1", "their:image", None)], queue="classify",
                backlog_limit=1000, blob_ttl_s=60, blob_owned=False)
    assert store.succeed("j1", {"ok": 1}, blob="their:image")
    assert client.get("their:image") == b"bytes"
    client.set("visionq:blob:mine", b"bytes")
    store.admit("classify", [("j2", "visionq:blob:mine", None)], queue="classify",
                backlog_limit=1000, blob_ttl_s=60)
    assert store.succeed("j2", {"ok": 1}, blob="visionq:blob:mine")
    assert not client.exists("visionq:blob:mine")
