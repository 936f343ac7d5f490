"""``visionq watch --callback-url``: every job the watcher makes carries the webhook, and a
destination that is not allowed is refused before anything starts."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import boto3
import redis
from click.testing import CliRunner
from prometheus_client import CollectorRegistry

from api.watch.config import WatchConfig
from api.watch.watcher import Watcher
from monitoring.metrics import WatchMetrics
from tests.workers.sleepy_model import image_bytes
from visionq.cli import main
from visionq.jobs import JobStore
from visionq.s3events import ObjectRef


def test_the_watchers_jobs_carry_its_callback_url(moto_url: str, aws_env: dict[str, str],
                                                  idle_redis_url: str) -> None:
    s3: Any = boto3.client("s3", endpoint_url=moto_url)
    bucket = f"vq-cb-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    config = WatchConfig(bucket=bucket, prefix="in/", task="classify", results_bucket=bucket,
                         results_prefix="in-results/")
    config = dataclasses.replace(config, callback_url="https://hooks.example.com/visionq")
    client = redis.Redis.from_url(idle_redis_url)
    jobs = JobStore(client, 600)
    published: list[str] = []
    watcher = Watcher(config, client, jobs, s3, lambda task, job_id: published.append(job_id),
                      WatchMetrics(CollectorRegistry()))
    s3.put_object(Bucket=bucket, Key="in/a.png", Body=image_bytes(20))
    head = s3.head_object(Bucket=bucket, Key="in/a.png")
    watcher.handle(ObjectRef(bucket, "in/a.png", head["ETag"].strip('"'), head["ContentLength"]))
    [job_id] = published
    assert jobs.get(job_id).callback_url == "https://hooks.example.com/visionq"


def test_a_refused_callback_url_stops_the_command() -> None:
    result = CliRunner().invoke(main, ["watch", "s3://bucket/in/", "--task", "classify",
                                       "--callback-url", "http://169.254.169.254/x"])
    assert result.exit_code == 2
    assert "VISIONQ_CALLBACK_ALLOW" in result.output
