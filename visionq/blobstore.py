"""Blob store: uploads are stored once and travel by reference (a key), never as bytes
inside a Celery message.  ``redis://`` (default) keeps them in the broker's Redis with a
TTL; ``s3://bucket/prefix`` keeps them in S3 (or any S3-compatible endpoint)."""

from __future__ import annotations

import uuid
from typing import Any, Protocol
from urllib.parse import urlparse

import redis

from visionq.imaging import PayloadTooLargeError
from visionq.keys import BLOB_KEY_PREFIX, job_blob_key
from visionq.s3events import is_transient_error, retry_transient


class BlobNotFoundError(LookupError):
    """The blob expired or was already deleted."""


class BlobStore(Protocol):
    def put(self, data: bytes) -> str: ...
    def get(self, key: str) -> bytes: ...
    def delete(self, key: str) -> None: ...


class RedisBlobStore:
    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self._client = client
        self._ttl_s = ttl_s

    @staticmethod
    def new_key() -> str:
        """A fresh key for an image stored before its job exists (``put``)."""
        return f"{BLOB_KEY_PREFIX}{uuid.uuid4().hex}"

    @staticmethod
    def key_for(job_id: str) -> str:
        """The key of job ``job_id``'s image, as the API admits it (``JobStore.admit``):
        derived from the id, so a worker reads the image in the same round trip as the
        record, with a plain ``GET`` (``JobStore.begin``; the begin script used to return it
        through Lua, which copies it: ≈ 70 µs of Redis CPU per 100 KB)."""
        return job_blob_key(job_id)

    def put(self, data: bytes) -> str:
        key = self.new_key()
        self._client.set(key, data, ex=self._ttl_s)
        return key

    def get(self, key: str) -> bytes:
        data = self._client.get(key)
        if data is None:
            raise BlobNotFoundError(f"image {key} expired or was deleted")
        return data

    def delete(self, key: str) -> None:
        self._client.delete(key)


def s3_client(endpoint_url: str | None, total_max_attempts: int | None = None) -> Any:
    """boto3's S3 client (``total_max_attempts``: botocore's own retries, None: its default).
    boto3 is imported here, lazily on purpose: a node whose blobs live in Redis never loads
    it (boto3 and botocore: ~0.2 s and ~20 MB per process)."""
    import boto3  # noqa: PLC0415 - lazy on purpose: Redis-only nodes never load boto3
    from botocore.config import Config  # noqa: PLC0415 - likewise

    config = Config(retries={"total_max_attempts": total_max_attempts}) \
        if total_max_attempts is not None else None
    return boto3.client("s3", endpoint_url=endpoint_url, config=config)


class S3BlobStore:
    """Objects under ``s3://bucket/prefix``; expiry is the bucket's lifecycle rule."""

    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None = None) -> None:
        self._s3 = s3_client(endpoint_url)
        self._bucket = bucket
        self._prefix = prefix.strip("/")

    def put(self, data: bytes) -> str:
        name = f"{self._prefix}/{uuid.uuid4().hex}" if self._prefix else uuid.uuid4().hex
        self._s3.put_object(Bucket=self._bucket, Key=name, Body=data)
        return f"s3://{self._bucket}/{name}"

    def _split(self, key: str) -> str:
        parsed = urlparse(key)
        if parsed.scheme != "s3" or parsed.netloc != self._bucket:
            raise BlobNotFoundError(f"{key} is not in bucket {self._bucket}")
        return parsed.path.lstrip("/")

    def get(self, key: str) -> bytes:
        try:
            return self._s3.get_object(Bucket=self._bucket, Key=self._split(key))["Body"].read()
        except self._s3.exceptions.NoSuchKey as exc:
            raise BlobNotFoundError(f"image {key} expired or was deleted") from exc

    def delete(self, key: str) -> None:
        self._s3.delete_object(Bucket=self._bucket, Key=self._split(key))


def split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` -> ``("bucket", "some/key")``; ``ValueError`` otherwise."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"{url!r} is not an s3://bucket/key URL")
    return parsed.netloc, parsed.path.lstrip("/")


SOURCE_UNAVAILABLE = "source_unavailable"
"""The code of a job whose worker could not read its watched object (``workers.runner``)."""


class SourceUnavailableError(LookupError):
    """A watched object could not be read for a while (S3 down, throttling, a connection
    cut): the job fails with ``SOURCE_UNAVAILABLE`` and the watcher tries again later."""


READ_ATTEMPTS = 8
"""Tries of one borrowed object's GET while S3 answers 5xx/throttles or the connection fails
(botocore's own retries are off for it: these cover the body's read too)."""
READ_BACKOFF_S = 0.1
"""First wait between tries; doubled each time, at most ``READ_BACKOFF_MAX_S``: ≈ 12 s in
all before the job gives up (and the watcher makes a new one later)."""
READ_BACKOFF_MAX_S = 5.0


class S3ObjectReader:
    """Reads objects of any bucket on one endpoint by ``s3://bucket/key``: the borrowed
    blobs of jobs made from a watched bucket (``visionq watch``), read in place and never
    deleted (they belong to the user).

    The object may have changed since the watcher checked its size: the GET asks for at most
    ``max_bytes + 1`` bytes (a ``Range``) and refuses an object whose total size is larger
    without reading its body.  Transient errors (``visionq.s3events.is_transient_error``) are
    retried with back-off, ``READ_ATTEMPTS`` times."""

    def __init__(self, endpoint_url: str | None = None) -> None:
        self._s3 = s3_client(endpoint_url, total_max_attempts=1)

    def get(self, key: str, max_bytes: int | None = None) -> bytes:
        try:
            bucket, name = split_s3_url(key)
        except ValueError as exc:
            raise BlobNotFoundError(str(exc)) from exc
        try:
            return retry_transient(lambda: self._read(bucket, name, max_bytes),
                                   f"reading {key}", attempts=READ_ATTEMPTS,
                                   first_s=READ_BACKOFF_S, max_s=READ_BACKOFF_MAX_S)
        except (self._s3.exceptions.NoSuchKey, self._s3.exceptions.NoSuchBucket) as exc:
            raise BlobNotFoundError(f"object {key} was deleted") from exc
        except Exception as exc:
            if is_transient_error(exc):
                raise SourceUnavailableError(
                    f"could not read {key} after {READ_ATTEMPTS} tries: {exc}") from exc
            raise

    def _read(self, bucket: str, name: str, max_bytes: int | None) -> bytes:
        if max_bytes is None:
            return self._s3.get_object(Bucket=bucket, Key=name)["Body"].read()
        try:
            reply = self._s3.get_object(Bucket=bucket, Key=name, Range=f"bytes=0-{max_bytes}")
        except self._s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return b""  # a 0-byte object has no byte 0
            raise
        body = reply["Body"]
        total = _total_size(reply.get("ContentRange"), reply.get("ContentLength"))
        if total > max_bytes:
            body.close()  # the rest of the range is never read
            raise PayloadTooLargeError(f"upload too large: s3://{bucket}/{name} is {total} "
                                       f"bytes > limit of {max_bytes} bytes")
        data = body.read(max_bytes + 1)
        if len(data) > max_bytes:  # a server that ignored the Range and lied about the size
            body.close()
            raise PayloadTooLargeError(f"upload too large: s3://{bucket}/{name} is more than "
                                       f"the limit of {max_bytes} bytes")
        return data


def _total_size(content_range: str | None, content_length: int | None) -> int:
    """The object's size from ``bytes 0-99/12345`` (a ranged GET), else the length sent."""
    if content_range and "/" in content_range:
        total = content_range.rsplit("/", 1)[1]
        if total.isdigit():
            return int(total)
    return int(content_length or 0)


def blob_store_from_url(url: str, client: redis.Redis, ttl_s: int,
                        s3_endpoint_url: str | None = None) -> BlobStore:
    parsed = urlparse(url)
    if parsed.scheme in ("redis", "rediss", ""):
        return RedisBlobStore(client, ttl_s)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"VISIONQ_BLOB_URL {url!r} needs a bucket: s3://bucket/prefix")
        return S3BlobStore(parsed.netloc, parsed.path, s3_endpoint_url)
    raise ValueError(f"unsupported VISIONQ_BLOB_URL scheme {parsed.scheme!r}: use redis:// or s3://")
