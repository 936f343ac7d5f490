"""Blob stores: Redis with TTL, and S3 through real boto3 calls to moto_server."""

from __future__ import annotations

import boto3
import pytest
import redis

from visionq.blobstore import BlobNotFoundError, RedisBlobStore, blob_store_from_url


def test_redis_blob_round_trip_with_ttl(idle_redis_url: str) -> None:
    client = redis.Redis.from_url(idle_redis_url)
    store = blob_store_from_url("redis://", client, ttl_s=30)
    assert isinstance(store, RedisBlobStore)
    key = store.put(b"\x89PNG...")
    assert store.get(key) == b"\x89PNG..."
    assert 0 < client.ttl(key) <= 30
    store.delete(key)
    with pytest.raises(BlobNotFoundError):
        store.get(key)


def test_s3_blob_round_trip(moto_url: str, aws_env: dict[str, str],
                            idle_redis_url: str) -> None:
    boto3.client("s3", endpoint_url=moto_url).create_bucket(Bucket="vq-test")
    store = blob_store_from_url("s3://vq-test/uploads", redis.Redis.from_url(idle_redis_url),
                                ttl_s=30, s3_endpoint_url=moto_url)
    key = store.put(b"jpeg bytes")
    assert key.startswith("s3://vq-test/uploads/")
    listed = boto3.client("s3", endpoint_url=moto_url).list_objects_v2(Bucket="vq-test")
    assert [o["Key"] for o in listed["Contents"]] == [key.removeprefix("s3://vq-test/")]
    assert store.get(key) == b"jpeg bytes"
    store.delete(key)
    with pytest.raises(BlobNotFoundError):
        store.get(key)


@pytest.mark.parametrize("url", ["ftp://x", "s3://"])
def test_bad_blob_urls(url: str, idle_redis_url: str) -> None:
    with pytest.raises(ValueError):
        blob_store_from_url(url, redis.Redis.from_url(idle_redis_url), ttl_s=1)
