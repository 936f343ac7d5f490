"""``visionq watch`` end to end with real parts: moto_server for S3 and SQS (real boto3 calls
over HTTP; moto delivers the bucket's notifications to SQS itself, test event included),
a real Redis, real ``celery -A tasks worker -Q classify`` processes, and the watcher run as
the ``visionq watch`` command.  Every wait is on a condition with a generous deadline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import BIN, FIXTURES, WorkerFactory, log_tail, service_env, spawn
from tests.helpers import free_port, stop_process
from tests.workers.conftest import SLEEPY
from tests.workers.sleepy_model import image_bytes
from visionq.keys import RECENT_KEY

WAIT_S = 120
"""Bound of every wait; each returns as soon as its condition holds."""
CLASSIFY = FIXTURES / "classify"
LABELS = json.loads((CLASSIFY / "labels.json").read_text())["images"]
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
       "AWS_DEFAULT_REGION": "us-east-1"}


def wait_for(condition: Callable[[], Any], what: str, watcher: subprocess.Popen | None = None,
             log: str = "", timeout_s: float = WAIT_S) -> Any:
    """``condition()``'s first truthy value; fails with the watcher's log when it exits or
    ``timeout_s`` passes first."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if watcher is not None and watcher.poll() is not None:
            pytest.fail(f"the watcher exited ({watcher.returncode}) before {what}:\n"
                        f"{log_tail(log, 60)}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}:\n{log_tail(log, 60)}")
        time.sleep(0.2)


def results(s3: Any, bucket: str, prefix: str = "in-results/") -> dict[str, dict]:
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            found[item["Key"]] = json.loads(body)
    return found


def result_count(s3: Any, bucket: str, prefix: str = "in-results/") -> int:
    return sum(page.get("KeyCount", 0) for page in
               s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix))


def jobs_for(client: redis.Redis, bucket: str) -> dict[str, str]:
    """job id -> blob of every job whose blob is in ``bucket`` (the recent-jobs index)."""
    ids = [raw.decode() for raw in client.zrange(RECENT_KEY, 0, -1)]
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(f"visionq:job:{job_id}", "blob")
    return {job_id: blob.decode() for job_id, blob in zip(ids, pipe.execute(), strict=True)
            if blob and blob.decode().startswith(f"s3://{bucket}/")}


def metric(port: int, name: str, **labels: str) -> float:
    """A sample's value from the watcher's /metrics (0 when absent)."""
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except requests.RequestException:
        return 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def queue_empty(sqs: Any, url: str) -> bool:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages",
                                      "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return all(int(value) == 0 for value in attributes.values())


def s3_event(bucket: str, key: str, etag: str, size: int) -> str:
    """The body AWS puts in SQS for one upload (key URL-encoded, + for spaces)."""
    return json.dumps({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2024-05-01T12:00:00.000Z", "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:EXAMPLE"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": "EXAMPLE", "x-amz-id-2": "EXAMPLE"},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "visionq",
               "bucket": {"name": bucket, "ownerIdentity": {"principalId": "EXAMPLE"},
                          "arn": f"arn:aws:s3:::{bucket}"},
               "object": {"key": quote_plus(key), "size": size, "eTag": etag,
                          "sequencer": "0062E99A88DC407460"}}}]})


# -- fixtures --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def moto(moto_url: str) -> Iterator[tuple[Any, Any]]:
    saved = {name: os.environ.get(name) for name in AWS}
    os.environ.update(AWS)
    yield boto3.client("s3", endpoint_url=moto_url), boto3.client("sqs", endpoint_url=moto_url)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _db(redis_server: tuple[int, subprocess.Popen], db: int) -> str:
    url = f"redis://127.0.0.1:{redis_server[0]}/{db}"
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture(scope="module")
def watch_redis_url(redis_server: tuple[int, subprocess.Popen]) -> str:
    """DB 13: the real classify worker below consumes it."""
    return _db(redis_server, 13)


@pytest.fixture(scope="module")
def classify_worker(start_worker: WorkerFactory, watch_redis_url: str,
                    moto_url: str) -> subprocess.Popen:
    return start_worker(watch_redis_url, "classify", "watch-classify", concurrency=2,
                        VISIONQ_CLASSIFY_THREADS="1", VISIONQ_S3_ENDPOINT_URL=moto_url, **AWS)


@pytest.fixture(scope="module")
def sleepy_redis_url(redis_server: tuple[int, subprocess.Popen]) -> str:
    """DB 14: a worker whose model takes width/100 s per image (time to kill mid-run)."""
    return _db(redis_server, 14)


@pytest.fixture(scope="module")
def sleepy_worker(start_worker: WorkerFactory, sleepy_redis_url: str,
                  moto_url: str) -> subprocess.Popen:
    return start_worker(sleepy_redis_url, "classify", "watch-sleepy",
                        VISIONQ_MODEL_CLASSIFY=SLEEPY, VISIONQ_S3_ENDPOINT_URL=moto_url, **AWS)


class Watchers:
    """``visionq watch`` processes, each stopped (SIGTERM, then SIGKILL) at the end."""

    def __init__(self, moto_url: str) -> None:
        self.moto_url = moto_url
        self.started: list[subprocess.Popen] = []

    def start(self, redis_url: str, args: list[str], log: str,
              **env: str) -> subprocess.Popen:
        command = [str(BIN / "visionq"), "watch", *args]
        process = spawn(log, command, service_env(
            redis_url, VISIONQ_S3_ENDPOINT_URL=self.moto_url, **AWS, **env))
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            stop_process(process)


@pytest.fixture()
def watchers(moto_url: str) -> Iterator[Watchers]:
    pool = Watchers(moto_url)
    yield pool
    pool.stop_all()


def bucket_with_events(s3: Any, sqs: Any, removals: bool = True) -> tuple[str, str]:
    """A new bucket notifying a new SQS queue of ``in/`` creations (and removals)."""
    bucket = f"vq-watch-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    url = sqs.create_queue(QueueName=bucket, Attributes={"VisibilityTimeout": "5"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    events = ["s3:ObjectCreated:*"] + (["s3:ObjectRemoved:*"] if removals else [])
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": events, "Filter": {"Key": {
            "FilterRules": [{"Name": "prefix", "Value": "in/"}]}}}]})
    return bucket, url


def classify_images(n: int) -> dict[str, str]:
    """``n`` keys (with spaces and a plus, URL-encoded in the events) -> fixture name."""
    names = sorted(LABELS)
    return {f"in/cam 1/img+{i:03d} {names[i % len(names)]}": names[i % len(names)]
            for i in range(n)}


def check_classify_result(doc: dict, key: str, name: str, bucket: str) -> None:
    assert doc["status"] == "succeeded", doc
    assert (doc["bucket"], doc["key"], doc["task"]) == (bucket, key, "classify")
    top = doc["result"]["predictions"]
    assert str(top[0]["class_id"]) in LABELS[name]["acceptable_top1"], (key, top)
    if len(top) >= 5:
        assert LABELS[name]["label_index"] in [p["class_id"] for p in top], (key, top)
    assert doc["result"]["width"] == LABELS[name]["width"]
    assert doc["timings"]["total_ms"] > 0


# -- event mode ------------------------------------------------------------------------

@pytest.mark.parametrize("n", [12, pytest.param(50, marks=pytest.mark.slow)])
def test_event_mode_writes_one_result_per_object(
        n: int, moto: tuple[Any, Any], watch_redis_url: str, classify_worker: subprocess.Popen,
        watchers: Watchers) -> None:
    s3, sqs = moto
    bucket, queue = bucket_with_events(s3, sqs)
    images = classify_images(n)
    for key, name in images.items():
        s3.put_object(Bucket=bucket, Key=key, Body=(CLASSIFY / name).read_bytes())
    s3.put_object(Bucket=bucket, Key="in/notes.txt", Body=b"not an image at all")
    s3.put_object(Bucket=bucket, Key="in/huge.jpg", Body=b"\xff\xd8\xff" + os.urandom(1_500_000))
    s3.put_object(Bucket=bucket, Key="in/gone.jpg", Body=(CLASSIFY / "coffee.png").read_bytes())
    s3.delete_object(Bucket=bucket, Key="in/gone.jpg")  # notified, deleted before handled
    s3.put_object(Bucket=bucket, Key="elsewhere/x.jpg", Body=b"not watched")

    port = free_port()
    log = f"watch-event-{n}"
    watcher = watchers.start(watch_redis_url, [
        f"s3://{bucket}/in", "--task", "classify", "--sqs-url", queue,
        "--metrics-port", str(port)], log, VISIONQ_MAX_BYTES="1000000")
    expected = n + 3
    wait_for(lambda: result_count(s3, bucket) >= expected, f"{expected} result files", watcher,
             log)
    wait_for(lambda: queue_empty(sqs, queue), "every SQS message deleted", watcher, log)
    found = results(s3, bucket)
    assert len(found) == expected, sorted(found)
    for key, name in images.items():
        check_classify_result(found[f"in-results/{key[3:]}.json"], key, name, bucket)
    assert found["in-results/notes.txt.json"]["code"] == "not_an_image"
    huge = found["in-results/huge.jpg.json"]
    assert (huge["status"], huge["code"], huge["job_id"]) == ("failed", "payload_too_large",
                                                              None)
    gone = found["in-results/gone.jpg.json"]
    assert (gone["status"], gone["code"]) == ("failed", "object_not_found"), gone

    # one job per object, referencing it in place; the sources are all still there
    client = redis.Redis.from_url(watch_redis_url)
    jobs = jobs_for(client, bucket)
    assert sorted(jobs.values()) == sorted(f"s3://{bucket}/{key}"
                                           for key in [*images, "in/notes.txt"])
    assert {doc["job_id"] for doc in found.values()} - {None} == set(jobs)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="in/")["KeyCount"]
    assert listed == n + 2  # images, notes.txt, huge.jpg: nothing deleted by the workers

    assert wait_for(lambda: metric(port, "visionq_watch_results_written_total",
                                   status="succeeded") == n, "the results metric", watcher, log)
    assert metric(port, "visionq_watch_jobs_created_total", task="classify") == n + 1
    assert metric(port, "visionq_watch_skipped_total", reason="test_event") >= 1
    assert metric(port, "visionq_watch_skipped_total", reason="not_created") >= 1
    assert metric(port, "visionq_watch_lag_seconds_count") == expected
    assert metric(port, "visionq_watch_objects_seen_total", mode="event") == n + 3

    # The same event delivered twice more (S3 delivers at least once): no new job.
    key = next(iter(images))
    head = s3.head_object(Bucket=bucket, Key=key)
    event = s3_event(bucket, key, head["ETag"].strip('"'), head["ContentLength"])
    before = found[f"in-results/{key[3:]}.json"]["job_id"]
    duplicates = metric(port, "visionq_watch_duplicates_skipped_total")
    for _ in range(2):
        sqs.send_message(QueueUrl=queue, MessageBody=event)
    wait_for(lambda: metric(port, "visionq_watch_duplicates_skipped_total") == duplicates + 2,
             "two duplicates skipped", watcher, log)
    wait_for(lambda: queue_empty(sqs, queue), "the duplicates deleted from SQS", watcher, log)
    assert jobs_for(client, bucket) == jobs
    assert results(s3, bucket)[f"in-results/{key[3:]}.json"]["job_id"] == before
    assert metric(port, "visionq_watch_jobs_created_total", task="classify") == n + 1
    assert watcher.poll() is None


def test_an_event_for_a_deleted_object_and_junk_messages_do_not_stop_the_watcher(
        moto: tuple[Any, Any], watch_redis_url: str, classify_worker: subprocess.Popen,
        watchers: Watchers) -> None:
    s3, sqs = moto
    bucket, queue = bucket_with_events(s3, sqs, removals=False)
    log = "watch-junk"
    watcher = watchers.start(watch_redis_url, [f"s3://{bucket}/in/", "--task", "classify",
                                               "--sqs-url", queue, "--metrics-port", "0"], log)
    sqs.send_message(QueueUrl=queue, MessageBody="this is not json")
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"some": "other producer"}))
    sqs.send_message(QueueUrl=queue, MessageBody=s3_event(bucket, "in/never existed.jpg",
                                                          "d41d8cd98f00b204e9800998ecf8427e", 9))
    s3.put_object(Bucket=bucket, Key="in/after.png", Body=(CLASSIFY / "chelsea.png").read_bytes())
    wait_for(lambda: result_count(s3, bucket) >= 2, "2 result files", watcher, log)
    wait_for(lambda: queue_empty(sqs, queue), "every SQS message deleted", watcher, log)
    found = results(s3, bucket)
    assert found["in-results/never existed.jpg.json"]["code"] == "object_not_found"
    check_classify_result(found["in-results/after.png.json"], "in/after.png", "chelsea.png",
                          bucket)
    assert watcher.poll() is None


# -- scan mode -------------------------------------------------------------------------

def test_scan_mode_keeps_a_cursor_across_runs(moto: tuple[Any, Any], watch_redis_url: str,
                                              classify_worker: subprocess.Popen,
                                              watchers: Watchers) -> None:
    s3, _ = moto
    bucket = f"vq-scan-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    s3.create_bucket(Bucket=f"{bucket}-out")
    images = classify_images(6)
    for key, name in images.items():
        s3.put_object(Bucket=bucket, Key=key, Body=(CLASSIFY / name).read_bytes())
    s3.put_object(Bucket=bucket, Key="in/", Body=b"")  # a console "folder": not an object
    args = [f"s3://{bucket}/in", "--task", "classify", "--results", f"s3://{bucket}-out/r",
            "--interval", "0.5", "--once", "--metrics-port", "0", "--options", '{"top_k": 3}']
    first = watchers.start(watch_redis_url, args, "watch-scan-1")
    assert first.wait(WAIT_S) == 0, log_tail("watch-scan-1")
    found = results(s3, f"{bucket}-out", "r/")
    assert len(found) == 6
    for key, name in images.items():
        doc = found[f"r/{key[3:]}.json"]
        check_classify_result(doc, key, name, bucket)
        assert len(doc["result"]["predictions"]) <= 3  # --options reached the job
    client = redis.Redis.from_url(watch_redis_url)
    jobs = jobs_for(client, bucket)
    assert len(jobs) == 6
    for job_id in jobs:
        record = client.hmget(f"visionq:job:{job_id}", "options", "blob_owned")
        assert json.loads(record[0]) == {"top_k": 3} and record[1] == b"0"

    # Second run: one new object, one overwritten (new ETag); the rest is not done again.
    changed = next(iter(images))
    s3.put_object(Bucket=bucket, Key=changed, Body=(CLASSIFY / "coffee.png").read_bytes())
    s3.put_object(Bucket=bucket, Key="in/new.jpg",
                  Body=(CLASSIFY / "caffe_cat.jpg").read_bytes())
    second = watchers.start(watch_redis_url, args, "watch-scan-2")
    assert second.wait(WAIT_S) == 0, log_tail("watch-scan-2")
    assert len(jobs_for(client, bucket)) == 8
    found = results(s3, f"{bucket}-out", "r/")
    assert len(found) == 7
    check_classify_result(found[f"r/{changed[3:]}.json"], changed, "coffee.png", bucket)
    check_classify_result(found["r/new.jpg.json"], "in/new.jpg", "caffe_cat.jpg", bucket)


def test_results_inside_the_watched_prefix_are_refused(watchers: Watchers,
                                                        watch_redis_url: str) -> None:
    out = subprocess.run([str(BIN / "visionq"), "watch", "s3://b/in", "--task", "classify",
                          "--results", "s3://b/in/results"], capture_output=True, text=True,
                         timeout=60, env=service_env(watch_redis_url))
    assert out.returncode == 2 and "every result would become a new job" in out.stderr


# -- killed and restarted --------------------------------------------------------------

@pytest.mark.parametrize("mode", ["event", "scan"])
def test_a_watcher_killed_mid_run_loses_and_duplicates_nothing(
        mode: str, moto: tuple[Any, Any], sleepy_redis_url: str,
        sleepy_worker: subprocess.Popen, watchers: Watchers) -> None:
    s3, sqs = moto
    bucket, queue = bucket_with_events(s3, sqs)
    n = 10
    widths = {f"in/slow {i:02d}.png": 100 + i for i in range(n)}  # ~1 s each on one worker
    for key, width in widths.items():
        s3.put_object(Bucket=bucket, Key=key, Body=image_bytes(width))
    args = [f"s3://{bucket}/in", "--task", "classify", "--metrics-port", "0",
            "--interval", "0.5"] + (["--sqs-url", queue] if mode == "event" else [])
    log = f"watch-kill-{mode}"
    first = watchers.start(sleepy_redis_url, args, log)
    wait_for(lambda: result_count(s3, bucket) >= 2, "the first results", first, log)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    written_before = result_count(s3, bucket)
    assert written_before < n, "the watcher finished before it could be killed mid-run"

    second = watchers.start(sleepy_redis_url, args, log)
    wait_for(lambda: result_count(s3, bucket) >= n, f"{n} result files", second, log)
    if mode == "event":
        wait_for(lambda: queue_empty(sqs, queue), "every SQS message deleted", second, log)
    client = redis.Redis.from_url(sleepy_redis_url)
    wait_for(lambda: not client.hlen(
        next(iter(client.scan_iter("visionq:watch:*:pending")), b"none")),
        "no pending results", second, log)
    found = results(s3, bucket)
    assert sorted(found) == sorted(f"in-results/{key[3:]}.json" for key in widths)
    for key, width in widths.items():
        doc = found[f"in-results/{key[3:]}.json"]
        assert doc["status"] == "succeeded" and doc["result"]["width"] == width, doc
    jobs = jobs_for(client, bucket)
    assert len(jobs) == n, "an object got a second job"  # one job per object, ever
    assert sorted(jobs.values()) == sorted(f"s3://{bucket}/{key}" for key in widths)
    assert {doc["job_id"] for doc in found.values()} == set(jobs)
    assert second.poll() is None
