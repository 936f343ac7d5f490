"""The S3 notification parser and the location rules of ``visionq watch``: pure functions,
table-tested with bodies shaped exactly as AWS sends them."""

from __future__ import annotations

import json

import pytest

from visionq.s3events import (
    MalformedMessage,
    ObjectRef,
    as_folder,
    normalize_etag,
    object_digest,
    parse_message,
    parse_s3_url,
    parse_time,
    result_key,
    results_location,
    skip_reason,
)


def record(key: str, name: str = "ObjectCreated:Put", bucket: str = "photos",
           etag: str | None = "0123abcd", size: int | None = 1234,
           time: str = "2024-05-01T12:00:00.500Z") -> dict:
    obj: dict = {"key": key, "sequencer": "0062E99A88DC407460"}
    if size is not None:
        obj["size"] = size
    if etag is not None:
        obj["eTag"] = etag
    return {"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": time, "eventName": name,
            "s3": {"s3SchemaVersion": "1.0", "configurationId": "visionq",
                   "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                   "object": obj}}


def body(*records: dict) -> str:
    return json.dumps({"Records": list(records)})


T0 = 1714564800.5  # 2024-05-01T12:00:00.500Z


@pytest.mark.parametrize(("message", "objects", "skipped"), [
    (body(record("in/a.jpg")),
     [ObjectRef("photos", "in/a.jpg", "0123abcd", 1234, T0)], []),
    # keys are URL-encoded the way forms are: + is a space, %2B a plus, %C3%A9 UTF-8
    (body(record("in/my+cat+%2B+dog%C3%A9.jpg")),
     [ObjectRef("photos", "in/my cat + dogé.jpg", "0123abcd", 1234, T0)], []),
    (body(record("in/%28copy%29%3D1.png", name="ObjectCreated:CompleteMultipartUpload")),
     [ObjectRef("photos", "in/(copy)=1.png", "0123abcd", 1234, T0)], []),
    (body(record("in/a.jpg", name="ObjectCreated:Copy", etag='"quoted"', size=None)),
     [ObjectRef("photos", "in/a.jpg", "quoted", None, T0)], []),
    (body(record("in/a.jpg", name="ObjectRemoved:Delete", etag=None, size=None)),
     [], [("not_created", "ObjectRemoved:Delete s3://photos/in/a.jpg")]),
    (body(record("in/a.jpg", name="ObjectRemoved:DeleteMarkerCreated")),
     [], [("not_created", "ObjectRemoved:DeleteMarkerCreated s3://photos/in/a.jpg")]),
    (body(record("in/a.jpg"), record("in/b.jpg", name="ObjectRestore:Completed"),
          record("in/c.jpg", name="ObjectCreated:Post", time="bad")),
     [ObjectRef("photos", "in/a.jpg", "0123abcd", 1234, T0),
      ObjectRef("photos", "in/c.jpg", "0123abcd", 1234, None)],
     [("not_created", "ObjectRestore:Completed s3://photos/in/b.jpg")]),
    (json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent",
                 "Time": "2024-05-01T12:00:00.000Z", "Bucket": "photos",
                 "RequestId": "5582815E1AEA5ADF", "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3"}),
     [], [("test_event", "photos")]),
    # S3 -> SNS -> SQS: the notification is the SNS envelope's Message
    (json.dumps({"Type": "Notification", "MessageId": "x", "TopicArn": "arn:aws:sns:t",
                 "Subject": "Amazon S3 Notification", "Message": body(record("in/a.jpg"))}),
     [ObjectRef("photos", "in/a.jpg", "0123abcd", 1234, T0)], []),
    (json.dumps({"Type": "Notification", "Message": json.dumps(
        {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "photos"})}),
     [], [("test_event", "photos")]),
    (json.dumps({"Records": [{"eventSource": "aws:sqs"}]}), [], [("not_s3", "aws:sqs")]),
    (json.dumps({"Records": []}), [], []),
])
def test_parse_message(message: str, objects: list[ObjectRef],
                       skipped: list[tuple[str, str]]) -> None:
    parsed = parse_message(message)
    assert parsed.objects == objects
    assert parsed.skipped == skipped


@pytest.mark.parametrize("message", [
    "not json", "[1, 2]", "null", json.dumps({"hello": "world"}),
    json.dumps({"Records": "nope"}),
    json.dumps({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put"}]}),
    json.dumps({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                             "s3": {"bucket": {"name": "b"}, "object": {}}}]}),
])
def test_malformed_messages_are_refused(message: str) -> None:
    with pytest.raises(MalformedMessage):
        parse_message(message)


@pytest.mark.parametrize(("raw", "expected"), [
    ('"abc"', "abc"), ("abc", "abc"), ('"abc-2"', "abc-2"), (None, ""), ("", ""),
])
def test_normalize_etag(raw: str | None, expected: str) -> None:
    assert normalize_etag(raw) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-05-01T12:00:00.500Z", T0), ("1970-01-01T00:00:00.000Z", 0.0), (None, None),
    ("", None), ("yesterday", None),
])
def test_parse_time(text: str | None, expected: float | None) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize(("url", "expected"), [
    ("s3://photos/in", ("photos", "in/")), ("s3://photos/in/", ("photos", "in/")),
    ("s3://photos", ("photos", "")), ("s3://photos/", ("photos", "")),
    ("s3://photos/a/b", ("photos", "a/b/")),
])
def test_parse_s3_url(url: str, expected: tuple[str, str]) -> None:
    assert parse_s3_url(url) == expected


@pytest.mark.parametrize("url", ["photos/in", "http://photos/in", "s3:///in", "s3://"])
def test_parse_s3_url_refuses(url: str) -> None:
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        parse_s3_url(url)


def test_as_folder() -> None:
    assert [as_folder(p) for p in ("", "/", "in", "/in/", "a/b")] == ["", "", "in/", "in/",
                                                                      "a/b/"]


@pytest.mark.parametrize(("bucket", "prefix", "results", "expected"), [
    ("photos", "in/", None, ("photos", "in-results/")),
    ("photos", "a/b/", None, ("photos", "a/b-results/")),
    ("photos", "in/", "s3://out/done", ("out", "done/")),
    ("photos", "", "s3://out", ("out", "")),
    ("photos", "in/", "s3://photos/out/", ("photos", "out/")),
    ("photos", "in/", "s3://photos/in-results", ("photos", "in-results/")),
])
def test_results_location(bucket: str, prefix: str, results: str | None,
                          expected: tuple[str, str]) -> None:
    assert results_location(bucket, prefix, results) == expected


@pytest.mark.parametrize(("bucket", "prefix", "results"), [
    ("photos", "in/", "s3://photos/in/results"),  # inside the watched prefix
    ("photos", "in/", "s3://photos/in"),
    ("photos", "", None),  # whole bucket: no default place outside it
    ("photos", "", "s3://photos/results"),
])
def test_results_inside_the_watched_prefix_are_refused(bucket: str, prefix: str,
                                                       results: str | None) -> None:
    with pytest.raises(ValueError, match="watch"):
        results_location(bucket, prefix, results)


@pytest.mark.parametrize(("key", "expected"), [
    ("in/a.jpg", "in-results/a.jpg.json"),
    ("in/cam 1/2024/a.jpg", "in-results/cam 1/2024/a.jpg.json"),
])
def test_result_key(key: str, expected: str) -> None:
    assert result_key(key, "in/", "in-results/") == expected


@pytest.mark.parametrize(("bucket", "key", "expected"), [
    ("photos", "in/a.jpg", None),
    ("other", "in/a.jpg", "other_bucket"),
    ("photos", "elsewhere/a.jpg", "outside_prefix"),
    ("photos", "in/", "folder_marker"),
    ("photos", "in/sub/", "folder_marker"),
])
def test_skip_reason(bucket: str, key: str, expected: str | None) -> None:
    obj = ObjectRef(bucket, key, "e")
    assert skip_reason(obj, "photos", "in/", "photos", "in-results/") == expected


def test_skip_reason_result_files_when_results_are_beside() -> None:
    # watching the whole of one bucket, results in another: nothing is a result file
    assert skip_reason(ObjectRef("photos", "x.json", "e"), "photos", "", "out", "") is None
    assert skip_reason(ObjectRef("out", "x.json", "e"), "photos", "", "out", "") == \
        "other_bucket"


def test_object_digest_tells_versions_apart() -> None:
    digests = {object_digest("b", "k", "e1"), object_digest("b", "k", "e2"),
               object_digest("b", "k2", "e1"), object_digest("b2", "k", "e1"),
               object_digest("b", "k\0e1", "")}
    assert len(digests) == 5
    assert object_digest("b", "k", "e1") == object_digest("b", "k", "e1")
