"""The crash windows of ``api.watch.watcher.Watcher``, one by one, in this process: a real Redis
(the idle database: no worker), moto_server for S3, publishing recorded instead of sent.
A watcher that dies after claiming, after creating or after writing a result is replaced by
a new one on the same state: every object ends with exactly one job and one result."""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3
import pytest
import redis
from prometheus_client import CollectorRegistry

from api.watch.config import WatchConfig
from api.watch.watcher import CLAIMED, CREATED, QUEUED, Watcher
from monitoring.metrics import WatchMetrics
from tests.workers.sleepy_model import image_bytes
from visionq.jobs import JobStore
from visionq.s3events import ObjectRef


class Crash(Exception):
    """Stands for the process dying at this point."""


@pytest.fixture()
def s3(moto_url: str, aws_env: dict[str, str]) -> Any:
    return boto3.client("s3", endpoint_url=moto_url)


@pytest.fixture()
def setup(s3: Any, idle_redis_url: str) -> tuple[WatchConfig, redis.Redis, JobStore]:
    bucket = f"vq-rec-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    config = WatchConfig(bucket=bucket, prefix="in/", task="classify", results_bucket=bucket,
                         results_prefix="in-results/")
    client = redis.Redis.from_url(idle_redis_url)
    return config, client, JobStore(client, 600)


def watcher(config: WatchConfig, client: redis.Redis, jobs: JobStore, s3: Any,
            published: list[str], crash_on_publish: bool = False) -> Watcher:
    def enqueue(task: str, job_id: str) -> None:
        if crash_on_publish:
            raise Crash
        published.append(job_id)

    return Watcher(config, client, jobs, s3, enqueue, WatchMetrics(CollectorRegistry()))


def upload(s3: Any, config: WatchConfig, key: str) -> ObjectRef:
    s3.put_object(Bucket=config.bucket, Key=key, Body=image_bytes(20))
    head = s3.head_object(Bucket=config.bucket, Key=key)
    return ObjectRef(config.bucket, key, head["ETag"].strip('"'), head["ContentLength"])


def pending(w: Watcher, client: redis.Redis) -> dict[str, dict]:
    return {k.decode(): json.loads(v) for k, v in client.hgetall(w._pending_key).items()}


def test_dies_before_publishing_then_restarts(setup, s3: Any) -> None:
    config, client, jobs = setup
    obj = upload(s3, config, "in/a.png")
    published: list[str] = []
    first = watcher(config, client, jobs, s3, published, crash_on_publish=True)
    with pytest.raises(Crash):
        first.handle(obj)
    (job_id, entry), = pending(first, client).items()
    assert entry["state"] == CREATED and jobs.get(job_id).blob_owned is False

    second = watcher(config, client, jobs, s3, published)
    assert second.handle(obj) == "duplicate"  # the SQS message comes back: no second job
    second.recover()
    second._retry_failed()
    assert published == [job_id]
    assert pending(second, client)[job_id]["state"] == QUEUED
    jobs.succeed(job_id, {"width": 20})
    assert second.drain_results() == 1
    doc = json.loads(s3.get_object(Bucket=config.bucket,
                                   Key="in-results/a.png.json")["Body"].read())
    assert (doc["job_id"], doc["status"], doc["result"]) == (job_id, "succeeded", {"width": 20})
    assert pending(second, client) == {}


def test_dies_right_after_claiming_then_restarts(setup, s3: Any) -> None:
    config, client, jobs = setup
    obj = upload(s3, config, "in/b.png")
    published: list[str] = []
    first = watcher(config, client, jobs, s3, published)
    first._create = lambda job_id, entry: (_ for _ in ()).throw(Crash())  # dies after claim
    with pytest.raises(Crash):
        first.handle(obj)
    (job_id, entry), = pending(first, client).items()
    assert entry["state"] == CLAIMED and jobs.get(job_id) is None

    second = watcher(config, client, jobs, s3, published)
    second.recover()
    second._retry_failed()
    assert published == [job_id] and jobs.get(job_id).status == "queued"
    second._retry_failed()  # nothing left to do: no second publish
    assert published == [job_id]


def test_dies_after_writing_a_result_then_restarts(setup, s3: Any) -> None:
    config, client, jobs = setup
    obj = upload(s3, config, "in/c.png")
    published: list[str] = []
    first = watcher(config, client, jobs, s3, published)
    assert first.handle(obj) == "created"
    job_id = published[0]
    jobs.fail(job_id, "not_an_image", "not an image")
    real_hdel = client.hdel
    client.hdel = lambda *a: (_ for _ in ()).throw(Crash())  # dies between put and drop
    with pytest.raises(Crash):
        first.drain_results()
    client.hdel = real_hdel
    second = watcher(config, client, jobs, s3, published)
    second.recover()
    assert second.drain_results() == 1  # the same file, written again
    listed = s3.list_objects_v2(Bucket=config.bucket, Prefix="in-results/")
    assert [item["Key"] for item in listed["Contents"]] == ["in-results/c.png.json"]
    doc = json.loads(s3.get_object(Bucket=config.bucket,
                                   Key="in-results/c.png.json")["Body"].read())
    assert (doc["job_id"], doc["code"]) == (job_id, "not_an_image")
    assert published == [job_id]


def test_an_expired_job_record_is_created_again(setup, s3: Any) -> None:
    config, client, jobs = setup
    obj = upload(s3, config, "in/d.png")
    published: list[str] = []
    w = watcher(config, client, jobs, s3, published)
    w.handle(obj)
    job_id = published[0]
    client.delete(JobStore.key(job_id))  # the record expired while the watcher was away
    assert w.drain_results() == 0
    w._retry_failed()
    assert published == [job_id, job_id] and jobs.get(job_id).status == "queued"


def test_an_overwritten_object_is_left_to_its_newer_event(setup, s3: Any) -> None:
    config, client, jobs = setup
    old = upload(s3, config, "in/e.png")
    s3.put_object(Bucket=config.bucket, Key="in/e.png", Body=image_bytes(21))
    published: list[str] = []
    w = watcher(config, client, jobs, s3, published)
    assert w.handle(old) == "superseded"
    assert published == [] and pending(w, client) == {}
    head = s3.head_object(Bucket=config.bucket, Key="in/e.png")
    newer = ObjectRef(config.bucket, "in/e.png", head["ETag"].strip('"'), head["ContentLength"])
    assert w.handle(newer) == "created" and len(published) == 1
