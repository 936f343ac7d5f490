"""S3 event notifications, bucket locations and S3 error classes as pure functions (no
I/O), for ``visionq watch`` (``api.watch``) and the workers' reads of watched objects
(``visionq.blobstore.S3ObjectReader``).

AWS delivers a bucket's notifications to SQS at least once, possibly late and out of order,
in one of these bodies (``parse_message`` reads all of them):

- ``{"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "eventTime":
  ..., "s3": {"bucket": {"name": ...}, "object": {"key": ..., "size": ..., "eTag": ...}}}]}``
  where the key is URL-encoded the way HTML forms are (``+`` for a space, ``%2B`` for ``+``);
- ``{"Service": "Amazon S3", "Event": "s3:TestEvent", ...}``, sent once when the
  notification is configured: nothing to do;
- either of the two wrapped by SNS (``{"Type": "Notification", "Message": "<the body>"}``)
  when the bucket notifies a topic the queue subscribes to.

Only ``ObjectCreated:*`` records become objects; the others are reported as skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import unquote_plus, urlparse

log = logging.getLogger("visionq.s3")
T = TypeVar("T")

CREATED_PREFIX = "ObjectCreated:"
TRANSIENT_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "ThrottledException",
    "RequestThrottled", "RequestThrottledException", "TooManyRequestsException",
    "ProvisionedThroughputExceededException", "RequestLimitExceeded", "BandwidthLimitExceeded",
    "RequestTimeout", "RequestTimeoutException", "InternalError", "ServiceUnavailable",
    "PriorRequestNotComplete", "IDPCommunicationError", "EC2ThrottledException",
    "TransactionInProgressException"})
"""Error codes worth another try: botocore's own throttling and transient codes
(``botocore.retries.standard``) plus S3's ``SlowDown``, ``InternalError`` and
``ServiceUnavailable``."""


class MalformedMessage(ValueError):
    """A message body that is not an S3 notification (it can never be handled)."""


@dataclass(frozen=True)
class ObjectRef:
    """One object version to process."""

    bucket: str
    key: str
    etag: str
    """Without quotes; ``""`` when the notification carried none."""
    size: int | None = None
    created_at: float | None = None
    """Unix time of the upload (the event's ``eventTime`` or the listing's LastModified)."""


@dataclass(frozen=True)
class ParsedMessage:
    objects: list[ObjectRef] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """``(reason, detail)`` per record or message that is not an object to process:
    ``test_event``, ``not_created`` (e.g. ``ObjectRemoved:Delete``), ``not_s3``."""


def normalize_etag(etag: str | None) -> str:
    """S3 quotes ETags in HEAD/LIST answers (``"abc"``) but not in notifications (``abc``)."""
    return (etag or "").strip().strip('"')


def parse_time(text: str | None) -> float | None:
    """``2024-05-01T12:00:00.123Z`` -> Unix time; ``None`` when absent or unreadable."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def parse_message(body: str) -> ParsedMessage:
    """The objects created according to one SQS message body (see the module docstring)."""
    try:
        document = json.loads(body)
    except (TypeError, ValueError) as exc:
        raise MalformedMessage(f"not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise MalformedMessage("not a JSON object")
    if document.get("Type") == "Notification" and isinstance(document.get("Message"), str):
        return parse_message(document["Message"])  # S3 -> SNS -> SQS
    if document.get("Event") == "s3:TestEvent":
        return ParsedMessage(skipped=[("test_event", str(document.get("Bucket", "")))])
    records = document.get("Records")
    if not isinstance(records, list):
        raise MalformedMessage("neither Records nor an s3:TestEvent")
    parsed = ParsedMessage()
    for record in records:
        _parse_record(record, parsed)
    return parsed


def _parse_record(record: Any, into: ParsedMessage) -> None:
    if not isinstance(record, dict) or record.get("eventSource") != "aws:s3":
        source = record.get("eventSource") if isinstance(record, dict) else type(record).__name__
        into.skipped.append(("not_s3", str(source)))
        return
    name = str(record.get("eventName", ""))
    try:
        bucket = record["s3"]["bucket"]["name"]
        raw = record["s3"]["object"]
        key = unquote_plus(raw["key"])
    except (KeyError, TypeError) as exc:
        raise MalformedMessage(f"S3 record without bucket or key: {exc!r}") from exc
    if not name.startswith(CREATED_PREFIX):
        into.skipped.append(("not_created", f"{name} s3://{bucket}/{key}"))
        return
    size = raw.get("size")
    into.objects.append(ObjectRef(
        bucket=bucket, key=key, etag=normalize_etag(raw.get("eTag")),
        size=int(size) if isinstance(size, int | float) else None,
        created_at=parse_time(record.get("eventTime"))))


# -- locations -------------------------------------------------------------------------

def as_folder(prefix: str) -> str:
    """A key prefix as a folder: ``""`` or ending in ``/`` (``in`` -> ``in/``, so that
    watching ``in`` does not also watch ``in-results/``)."""
    prefix = prefix.lstrip("/")
    return prefix if not prefix or prefix.endswith("/") else f"{prefix}/"


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix/")`` (a folder)."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"{url!r} is not an s3://bucket/prefix URL")
    return parsed.netloc, as_folder(parsed.path)


def results_location(bucket: str, prefix: str,
                     results_url: str | None) -> tuple[str, str]:
    """Where results go: ``results_url``, else ``<prefix>-results/`` in the same bucket.
    ``ValueError`` when that is inside the watched prefix (a result would be a new input)."""
    if results_url:
        results_bucket, results_prefix = parse_s3_url(results_url)
    elif prefix:
        results_bucket, results_prefix = bucket, f"{prefix.rstrip('/')}-results/"
    else:
        raise ValueError(f"watching all of s3://{bucket} needs --results in another bucket "
                         "(results under the watched prefix would become new jobs)")
    if results_bucket == bucket and results_prefix.startswith(prefix):
        raise ValueError(f"results s3://{results_bucket}/{results_prefix} are inside the "
                         f"watched s3://{bucket}/{prefix}: every result would become a new job")
    return results_bucket, results_prefix


def result_key(key: str, prefix: str, results_prefix: str) -> str:
    """``<results prefix><key below the watched prefix>.json``."""
    below = key[len(prefix):] if key.startswith(prefix) else key
    return f"{results_prefix}{below}.json"


def skip_reason(obj: ObjectRef, bucket: str, prefix: str, results_bucket: str,
                results_prefix: str) -> str | None:
    """Why ``obj`` is not watched here (``None``: process it).  Notifications may be
    configured wider than the watched prefix, or share a queue with other buckets."""
    if obj.bucket != bucket:
        return "other_bucket"
    if not obj.key.startswith(prefix):
        return "outside_prefix"
    if obj.bucket == results_bucket and obj.key.startswith(results_prefix):
        return "result_file"
    if obj.key.endswith("/"):
        return "folder_marker"
    return None


def object_digest(bucket: str, key: str, etag: str) -> str:
    """The identity of one object version, for the duplicate filter."""
    return hashlib.sha256(f"{bucket}\0{key}\0{etag}".encode()).hexdigest()[:32]


def watch_id(bucket: str, prefix: str, task: str, results_bucket: str,
             results_prefix: str) -> str:
    """The name of one watch's state in Redis: the same inputs, task and results location
    share a cursor and a duplicate filter across restarts."""
    text = "\0".join((bucket, prefix, task, results_bucket, results_prefix))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def is_transient_error(exc: BaseException) -> bool:
    """Whether an S3 call that raised ``exc`` may succeed if tried again: no answer
    (connection refused or reset, a timeout, a body cut short), a 5xx or 429 answer, or a
    throttling code.  A 4xx such as 403 or 404 is an answer: trying again changes nothing."""
    # Lazy on purpose: this module's parsers run where boto3 never does (the workers import
    # it through visionq.blobstore); botocore loads where S3 is actually called.
    from botocore import exceptions as boto  # noqa: PLC0415
    from urllib3.exceptions import HTTPError as Urllib3Error  # noqa: PLC0415 - with botocore

    if isinstance(exc, boto.ClientError):
        error = exc.response.get("Error", {}) or {}
        status = (exc.response.get("ResponseMetadata", {}) or {}).get("HTTPStatusCode") or 0
        return error.get("Code") in TRANSIENT_CODES or int(status) >= 500 or int(status) == 429
    return isinstance(exc, boto.ConnectionError | boto.HTTPClientError
                      | boto.IncompleteReadError | boto.ReadTimeoutError
                      | boto.ResponseStreamingError | Urllib3Error | ConnectionError
                      | TimeoutError)


def retry_transient(call: Callable[[], T], what: str, *, attempts: int, first_s: float,
                    max_s: float, wait: Callable[[float], Any] = time.sleep) -> T:
    """``call()``, tried up to ``attempts`` times while it raises a transient error, waiting
    ``first_s`` (doubling, at most ``max_s``) between tries.  The last error, or any other,
    propagates; so does the transient one when ``wait`` returns true (stopping)."""
    delay = first_s
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as exc:
            if attempt == attempts or not is_transient_error(exc):
                raise
            log.warning("%s: %s; try %d of %d in %.1f s", what, exc, attempt + 1, attempts,
                        delay)
            if wait(delay):
                raise
            delay = min(delay * 2, max_s)
    raise AssertionError("unreachable")  # pragma: no cover
