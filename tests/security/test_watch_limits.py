"""``visionq watch`` and the objects it borrows (issue 30, code read: "the watcher reads an
S3 object without a size cap and fails, rather than retries, on a transient read error").

Real parts: moto_server for S3, a real Redis, the ``visionq watch`` command, a real
``celery -A tasks worker`` (the sleepy test model) that reads the watched object itself.
Between the worker and moto sits ``FaultyS3``, a small HTTP proxy in this process: it
answers 503 ``SlowDown`` to the first N object GETs (S3 throttling a burst), can replace the
object in moto just before forwarding the worker's GET (a bucket writer swapping in a large
file after the watcher checked the size) and counts the bytes the worker received."""

from __future__ import annotations

import http.client
import re
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

import boto3
import pytest
import redis

from tests.conftest import WorkerFactory, log_tail
from tests.test_watch import AWS, Watchers, jobs_for, results, wait_for
from tests.workers.conftest import SLEEPY
from tests.workers.sleepy_model import image_bytes

MAX_BYTES = 1024 * 1024
"""``VISIONQ_MAX_BYTES`` of the worker and the watcher in these tests."""
HUGE = 24 * 1024 * 1024
"""What the object is swapped for: 24 times the cap."""
SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
            b"<Message>Please reduce your request rate.</Message></Error>")


class FaultyS3:
    """A forwarding proxy to moto_server with fault injection on object GETs."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlparse(upstream)
        self.fail_gets = 0
        """Answer 503 SlowDown to this many object GETs from now on."""
        self.before_get: Callable[[str], None] | None = None
        """Called once with the path of the first object GET, before forwarding it."""
        self.gets: list[tuple[str, int]] = []
        """(path, status) of every object GET."""
        self.bytes_sent = 0
        """Body bytes of object GETs that reached the client."""
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                proxy.forward(self)

            do_HEAD = do_PUT = do_POST = do_DELETE = do_GET  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def forward(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path
        is_object_get = (handler.command == "GET" and "?" not in path
                         and path.strip("/").count("/") >= 1)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        if is_object_get:
            with self._lock:
                failing = self.fail_gets > 0
                self.fail_gets -= failing
                hook, self.before_get = self.before_get, None
                self.gets.append((path, 503 if failing else 0))
            if failing:
                handler.send_response(503)
                handler.send_header("Content-Type", "application/xml")
                handler.send_header("Content-Length", str(len(SLOWDOWN)))
                handler.end_headers()
                handler.wfile.write(SLOWDOWN)
                return
            if hook is not None:
                hook(path)
        conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port,
                                          timeout=60)
        headers = {k: v for k, v in handler.headers.items() if k.lower() != "connection"}
        conn.request(handler.command, path, body=body, headers=headers)
        reply = conn.getresponse()
        handler.send_response(reply.status)
        for name, value in reply.getheaders():
            if name.lower() not in ("connection", "transfer-encoding", "server", "date"):
                handler.send_header(name, value)
        handler.end_headers()
        try:
            while handler.command != "HEAD":
                chunk = reply.read(64 * 1024)
                if not chunk:
                    break
                handler.wfile.write(chunk)
                if is_object_get:
                    with self._lock:
                        self.bytes_sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True  # the client stopped reading: stop sending
        finally:
            conn.close()


@pytest.fixture()
def s3(moto_url: str, aws_env: dict[str, str]) -> Any:
    return boto3.client("s3", endpoint_url=moto_url)


@pytest.fixture()
def proxy(moto_url: str) -> Iterator[FaultyS3]:
    faulty = FaultyS3(moto_url)
    yield faulty
    faulty.stop()


@pytest.fixture()
def watch_db(redis_server: tuple[int, subprocess.Popen]) -> Iterator[str]:
    """DB 10: this module's worker consumes it."""
    url = f"redis://127.0.0.1:{redis_server[0]}/10"
    redis.Redis.from_url(url).flushdb()
    yield url
    redis.Redis.from_url(url).flushdb()


@pytest.fixture()
def worker(test_worker: WorkerFactory, watch_db: str, proxy: FaultyS3) -> subprocess.Popen:
    """A classify worker whose S3 is the faulty proxy."""
    return test_worker(watch_db, "classify", "watch-limits", VISIONQ_MODEL_CLASSIFY=SLEEPY,
                       VISIONQ_S3_ENDPOINT_URL=proxy.url, VISIONQ_MAX_BYTES=str(MAX_BYTES),
                       **AWS)


@pytest.fixture()
def watchers(moto_url: str) -> Iterator[Watchers]:
    pool = Watchers(moto_url)
    yield pool
    pool.stop_all()


def new_bucket(s3: Any) -> str:
    bucket = f"vq-limits-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    return bucket


def watch(watchers: Watchers, redis_url: str, bucket: str, log: str,
          **env: str) -> subprocess.Popen:
    """``visionq watch`` in scan mode (its own S3 is moto itself, not the proxy)."""
    return watchers.start(redis_url, [f"s3://{bucket}/in", "--task", "classify",
                                      "--interval", "0.5", "--metrics-port", "0"], log,
                          VISIONQ_MAX_BYTES=str(MAX_BYTES), **env)


def one_result(s3: Any, bucket: str, key: str, watcher: subprocess.Popen,
               log: str) -> dict[str, Any]:
    name = f"in-results/{key[3:]}.json"
    return wait_for(lambda: results(s3, bucket).get(name), f"the result of {key}",
                    watcher, log)


def test_throttled_reads_are_retried_until_they_clear(
        s3: Any, proxy: FaultyS3, worker: subprocess.Popen, watch_db: str,
        watchers: Watchers) -> None:
    """S3 answers SlowDown to six GETs in a row (more than botocore's own five tries): the
    object is processed once it clears, not failed."""
    bucket = new_bucket(s3)
    proxy.fail_gets = 6
    s3.put_object(Bucket=bucket, Key="in/a.png", Body=image_bytes(20))
    log = "watch-limits-throttled"
    watcher = watch(watchers, watch_db, bucket, log)
    doc = one_result(s3, bucket, "in/a.png", watcher, log)
    assert (doc["status"], doc.get("code")) == ("succeeded", None), (
        f"{doc}\n{log_tail('worker-watch-limits')}")
    assert doc["result"]["width"] == 20
    statuses = [status for _, status in proxy.gets]
    assert statuses[:6] == [503] * 6 and len(statuses) == 7  # retried, then read once
    assert len(jobs_for(redis.Redis.from_url(watch_db), bucket)) == 1


def test_a_longer_outage_gets_a_new_job_after_it_clears(
        s3: Any, proxy: FaultyS3, worker: subprocess.Popen, watch_db: str,
        watchers: Watchers) -> None:
    """S3 stays away longer than the worker's tries (10 SlowDowns > READ_ATTEMPTS): that job
    ends source_unavailable, which is not written as the result; the watcher makes a new job
    for the object, which reads it once S3 is back."""
    from visionq.blobstore import READ_ATTEMPTS

    bucket = new_bucket(s3)
    proxy.fail_gets = READ_ATTEMPTS + 2
    s3.put_object(Bucket=bucket, Key="in/b.png", Body=image_bytes(30))
    log = "watch-limits-outage"
    watcher = watch(watchers, watch_db, bucket, log, VISIONQ_WATCH_REREAD_BACKOFF_S="1")
    doc = one_result(s3, bucket, "in/b.png", watcher, log)
    assert (doc["status"], doc.get("code")) == ("succeeded", None), doc
    client = redis.Redis.from_url(watch_db)
    jobs = jobs_for(client, bucket)
    assert len(jobs) == 2 and doc["job_id"] in jobs
    (first,) = set(jobs) - {doc["job_id"]}
    assert client.hget(f"visionq:job:{first}", "code") == b"source_unavailable"
    assert "could not read" in log_tail(log, 200)


def test_an_object_swapped_for_a_huge_one_is_not_read_into_memory(
        s3: Any, proxy: FaultyS3, worker: subprocess.Popen, watch_db: str,
        watchers: Watchers) -> None:
    """The watcher's HEAD sees a small image; by the worker's GET the object is 24 MB. The
    worker must not pull the 24 MB: the job fails payload_too_large having received at
    most the cap."""
    bucket = new_bucket(s3)
    s3.put_object(Bucket=bucket, Key="in/swap.png", Body=image_bytes(20))
    proxy.before_get = lambda path: s3.put_object(Bucket=bucket, Key="in/swap.png",
                                                  Body=b"\0" * HUGE)
    log = "watch-limits-swap"
    watcher = watch(watchers, watch_db, bucket, log)
    doc = one_result(s3, bucket, "in/swap.png", watcher, log)
    assert (doc["status"], doc["code"]) == ("failed", "payload_too_large"), doc
    assert proxy.bytes_sent <= MAX_BYTES + 1, (
        f"the worker received {proxy.bytes_sent} bytes of a {HUGE}-byte object "
        f"(cap {MAX_BYTES})")


def test_an_object_over_the_cap_is_skipped_without_a_job(
        s3: Any, proxy: FaultyS3, worker: subprocess.Popen, watch_db: str,
        watchers: Watchers) -> None:
    """Honest sizes: the HEAD says 3 MB > the cap. No job, no GET, one error file and one
    log line that names the setting; the watcher goes on with the next object."""
    bucket = new_bucket(s3)
    s3.put_object(Bucket=bucket, Key="in/big.png", Body=b"\0" * (3 * MAX_BYTES))
    s3.put_object(Bucket=bucket, Key="in/ok.png", Body=image_bytes(30))
    log = "watch-limits-big"
    watcher = watch(watchers, watch_db, bucket, log)
    big = one_result(s3, bucket, "in/big.png", watcher, log)
    ok = one_result(s3, bucket, "in/ok.png", watcher, log)
    assert (big["status"], big["code"], big["job_id"]) == ("failed", "payload_too_large",
                                                           None)
    assert ok["status"] == "succeeded"
    jobs = jobs_for(redis.Redis.from_url(watch_db), bucket)
    assert list(jobs.values()) == [f"s3://{bucket}/in/ok.png"]  # no job for big.png
    assert [path for path, _ in proxy.gets] == [f"/{bucket}/in/ok.png"]
    assert re.search(r"skipped s3://\S+/in/big\.png .*3145728 bytes, more than "
                     r"VISIONQ_MAX_BYTES=1048576", log_tail(log, 200)), log_tail(log, 40)
