"""Bad input, property-based (hypothesis): random bytes, truncated real images, huge
dimensions in tiny files, wrong content types, oversize bodies, malformed JSON and base64,
unicode in every free-text field.

Each answer must be a documented 4xx JSON error (``success: false`` and a ``code``) or a
202; never a 500 and never an HTML page.  What the API accepts (it only reads headers)
goes to a real classify worker, where it must end ``succeeded`` or ``failed`` with a
reason, and the worker must live on.  Example counts are bounded so the file runs in well
under a minute on two cores.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import subprocess
import time
import zlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import redis
from flask.testing import FlaskClient
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from api import create_app
from tests.api.conftest import AppFactory, files
from tests.conftest import FIXTURES
from visionq.imaging import DEFAULT_MAX_PIXELS
from visionq.jobs import FINAL_STATUSES, JobStore
from visionq.keys import WORKER_KEY_PREFIX
from visionq.settings import QUEUES

PROPERTY = settings(max_examples=40, deadline=None, database=None,
                    phases=[Phase.explicit, Phase.generate],  # no shrinking: bounded time
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
FEW = settings(PROPERTY, max_examples=12)

OBAMA = (FIXTURES / "faces" / "obama_small.jpg").read_bytes()
DOCUMENTED_4XX = {400, 401, 404, 405, 409, 413, 415}
"""The client errors the API documents (docs/api.md / openapi.json)."""


def _encode(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(OBAMA)).convert("RGB").save(buffer, fmt)
    return buffer.getvalue()


REAL_IMAGES = {fmt: _encode(fmt) for fmt in ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF")}


def png_header(width: int, height: int) -> bytes:
    """A complete, tiny PNG whose IHDR claims ``width`` x ``height`` (the IDAT holds a few
    bytes, so decoding runs out of data): passes any header-only check under the limit."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def gif_header(width: int, height: int) -> bytes:
    """GIF89a, logical screen and one image descriptor of ``width`` x ``height``."""
    screen = struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    frame = b"," + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return b"GIF89a" + screen + frame + b";"


def bmp_header(width: int, height: int) -> bytes:
    """BITMAPFILEHEADER + BITMAPINFOHEADER (24 bit) claiming ``width`` x ``height``."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + 16, 0, 0, 14 + 40) + info + b"\0" * 16


HEADERS = {"png": (png_header, 2**31 - 1), "gif": (gif_header, 65535),
           "bmp": (bmp_header, 2**31 - 1)}


@st.composite
def huge_header(draw: st.DrawFn) -> tuple[bytes, int]:
    kind = draw(st.sampled_from(sorted(HEADERS)))
    build, largest = HEADERS[kind]
    # Each header's field width bounds the claim (GIF: 16 bits); the extremes are favoured.
    side = st.integers(1, largest) | st.sampled_from([1, largest, min(largest, 100_000)])
    width, height = draw(side), draw(side)
    return build(width, height), width * height


@st.composite
def truncated_image(draw: st.DrawFn) -> bytes:
    data = REAL_IMAGES[draw(st.sampled_from(sorted(REAL_IMAGES)))]
    return data[:draw(st.integers(0, len(data) - 1))]


MAGIC = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"GIF87a", b"BM", b"RIFF\0\0\0\0WEBP",
         b"II*\0", b"MM\0*", b""]
random_bytes = st.builds(lambda magic, rest: magic + rest, st.sampled_from(MAGIC),
                         st.binary(max_size=2048))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=12)


def assert_clean(response: Any) -> dict[str, Any]:
    """202 with an id, or a documented 4xx JSON error; never a 500, never HTML."""
    assert response.mimetype == "application/json", (response.status_code, response.data[:300])
    body = response.get_json()
    if response.status_code == 202:
        return body
    assert response.status_code in DOCUMENTED_4XX, (response.status_code, body)
    assert body["success"] is False and isinstance(body["code"], str) and body["code"], body
    assert isinstance(body["error"], str) and body["error"], body
    return body


def post_image(client: FlaskClient, data: bytes, task: str = "classify", **form: str) -> Any:
    return client.post(f"/v1/jobs?task={task}", data=files(image=data, **form),
                       content_type="multipart/form-data")


@pytest.fixture()
def client(idle_redis_url: str) -> Iterator[FlaskClient]:
    """No worker consumes this Redis; a high backlog limit so hundreds of accepted
    examples never turn into 503s."""
    app = create_app({"redis_url": idle_redis_url, "sync_timeout_s": 0.2, "history_writer": False,
                      "history_url": "sqlite://",  # in memory: nothing is listed from it
                      "max_backlog_face": 100_000,
                      "max_backlog_detect": 100_000, "max_backlog_classify": 100_000})
    with app.test_client() as test_client:
        yield test_client


# --- the API alone ------------------------------------------------------------------------


@PROPERTY
@given(data=random_bytes, task=st.sampled_from(QUEUES))
def test_random_bytes(client: FlaskClient, data: bytes, task: str) -> None:
    assert_clean(post_image(client, data, task))


@PROPERTY
@given(data=truncated_image())
def test_truncated_real_images(client: FlaskClient, data: bytes) -> None:
    body = assert_clean(post_image(client, data))
    if len(data) == 0:
        assert body["code"] == "empty_image"


@PROPERTY
@given(header=huge_header())
@example(header=(png_header(100_000, 100_000), 10**10))
@example(header=(gif_header(65535, 65535), 65535**2))
@example(header=(bmp_header(100_000, 100_000), 10**10))
@example(header=(bmp_header(100_000, -100_000), 10**10))  # top-down BMP
def test_huge_dimensions_in_tiny_files(client: FlaskClient, header: tuple[bytes, int]) -> None:
    data, pixels = header
    body = assert_clean(post_image(client, data))
    if pixels > DEFAULT_MAX_PIXELS:  # refused from the header, never decoded
        assert body.get("code") in {"image_too_large", "not_an_image", "truncated_image"}, body
        assert "id" not in body


CONTENT_TYPES = ["text/plain", "image/jpeg", "image/png", "application/octet-stream",
                 "application/json", "application/x-www-form-urlencoded", "multipart/form-data",
                 "multipart/form-data; boundary=x", "multipart/mixed; boundary=zz",
                 "application/json; charset=utf-16", "text/html", "", "🙂/🙃"]


@PROPERTY
@given(content_type=st.sampled_from(CONTENT_TYPES) | st.text(max_size=40),
       body=st.binary(max_size=1024) | st.just(OBAMA),
       path=st.sampled_from(["/v1/jobs?task=classify", "/v1/jobs/batch?task=classify",
                             "/v1/vision/detection", "/v1/vision/face/register"]))
def test_wrong_content_types(client: FlaskClient, content_type: str, body: bytes,
                             path: str) -> None:
    if not content_type.isascii() or any(c in content_type for c in "\r\n\0"):
        content_type = "application/x-" + content_type.encode().hex()[:40]
    assert_clean(client.post(path, data=body, content_type=content_type))


@FEW
@given(extra=st.integers(1, 50_000), as_json=st.booleans())
def test_oversize_bodies(idle_redis_url: str, make_client: AppFactory, extra: int,
                         as_json: bool) -> None:
    client = make_client(idle_redis_url, max_bytes=10_000)
    data = OBAMA[:100] + b"\0" * (10_000 - 100 + extra)
    if as_json:
        response = client.post("/v1/jobs", json={"task": "classify",
                                                 "image": base64.b64encode(data).decode()})
    else:
        response = post_image(client, data)
    body = assert_clean(response)
    assert response.status_code == 413 and body["code"] == "payload_too_large", body


def test_body_beyond_the_request_limit_is_413_json(idle_redis_url: str,
                                                   make_client: AppFactory) -> None:
    client = make_client(idle_redis_url, max_bytes=10_000)  # MAX_CONTENT_LENGTH ~1.02 MB
    for response in (post_image(client, b"\0" * 2_000_000),
                     client.post("/v1/jobs?task=classify", data=b"{" * 2_000_000,
                                 content_type="application/json")):
        body = assert_clean(response)
        assert response.status_code == 413, body


@PROPERTY
@given(body=st.binary(max_size=512) | st.text(max_size=200).map(str.encode)
       | json_values.map(lambda v: json.dumps(v).encode()),
       path=st.sampled_from(["/v1/jobs", "/v1/jobs/batch"]))
@example(body=b"[" * 100_000 + b"]" * 100_000, path="/v1/jobs")  # was a 500 (RecursionError)
@example(body=b"{\"image\": " + b"[" * 50_000, path="/v1/jobs/batch")
def test_malformed_json(client: FlaskClient, body: bytes, path: str) -> None:
    body_json = assert_clean(client.post(path, data=body, content_type="application/json"))
    assert "id" not in body_json and "jobs" not in body_json


@PROPERTY
@given(image=st.text(max_size=200) | json_values,
       images=st.lists(st.text(max_size=50) | json_values, max_size=3) | json_values)
@example(image="data:image/png;base64,%%%", images=["@@"])
@example(image="////" * 10, images=["AAAA"])
def test_malformed_base64(client: FlaskClient, image: Any, images: Any) -> None:
    single = client.post("/v1/jobs", json={"task": "classify", "image": image})
    batch = client.post("/v1/jobs/batch", json={"task": "classify", "images": images})
    for response in (single, batch):
        body = assert_clean(response)
        assert response.status_code != 202, body  # none of these decodes to an image


@PROPERTY
@given(task=st.text(max_size=30), option_key=st.text(min_size=1, max_size=30),
       option_value=json_values, options_raw=st.text(max_size=60))
@example(task="classify", option_key="top_k", option_value=3,
         options_raw="[" * 100_000)  # was a 500 (RecursionError)
def test_unicode_in_fields(client: FlaskClient, task: str, option_key: str,
                           option_value: Any, options_raw: str) -> None:
    response = client.post("/v1/jobs", query_string={"task": task}, data=files(image=OBAMA),
                           content_type="multipart/form-data")
    body = assert_clean(response)
    if task not in QUEUES:
        assert body["code"] in {"missing_task", "unknown_task"}, body
    options = json.dumps({option_key: option_value})
    body = assert_clean(post_image(client, OBAMA, "classify", options=options))
    if option_key != "top_k":
        assert body["code"] == "invalid_options", body
    assert_clean(post_image(client, OBAMA, "detect", options=options_raw))
    for response in (client.get("/v1/jobs", query_string={"task": task, "status": option_key}),
                     client.get(f"/v1/jobs/{quote(option_key, safe='')}",
                                query_string={"wait": options_raw[:10]})):
        assert response.mimetype == "application/json", response.data[:300]
        if response.status_code != 200:  # "/v1/jobs/%2F" is the list itself
            assert_clean(response)


@PROPERTY
@given(userid=st.text(max_size=300), data=random_bytes | truncated_image())
def test_unicode_userid_with_bad_images(client: FlaskClient, userid: str, data: bytes) -> None:
    """No worker consumes this Redis: what passes the header check is queued and the
    synchronous call times out (504 ``timeout``) — still JSON, never a 500."""
    for path in ("/v1/vision/face/register", "/v1/vision/face/delete"):
        response = client.post(path, data=files(userid=userid, image=data),
                               content_type="multipart/form-data")
        if response.status_code == 504:
            assert response.get_json()["code"] == "timeout"
        elif response.status_code != 200 or path.endswith("register"):
            body = assert_clean(response)
            assert response.status_code != 202, body


# --- real workers -------------------------------------------------------------------------


def _wait_final(store: JobStore, job_ids: list[str], timeout_s: float) -> list[Any]:
    deadline = time.monotonic() + timeout_s
    jobs = []
    for job_id in job_ids:
        job = store.wait(job_id, max(0.1, deadline - time.monotonic()))
        assert job is not None and job.status in FINAL_STATUSES, (job_id, job)
        jobs.append(job)
    return jobs


def test_accepted_bad_inputs_end_final_on_a_real_worker(
        classify_worker: subprocess.Popen, redis_url: str, make_client: AppFactory) -> None:
    client = make_client(redis_url, max_backlog_classify=100_000)
    accepted: list[str] = []

    @settings(PROPERTY, max_examples=60)
    @given(data=truncated_image() | huge_header().map(lambda h: h[0]) | random_bytes)
    @example(data=REAL_IMAGES["GIF"][:len(REAL_IMAGES["GIF"]) // 2])  # no tail check for GIF
    @example(data=REAL_IMAGES["BMP"][:1000])
    @example(data=REAL_IMAGES["TIFF"][:5000])
    @example(data=png_header(7000, 7000))  # 49 MP claimed, 90 bytes sent
    @example(data=bmp_header(1, 40_000_000))
    @example(data=gif_header(1, 1))
    def submit(data: bytes) -> None:
        body = assert_clean(post_image(client, data))
        if "id" in body:
            accepted.append(body["id"])

    submit()
    assert len(accepted) >= 3, "the explicit examples pass the header check"
    conn = redis.Redis.from_url(redis_url)
    jobs = _wait_final(JobStore(conn, 3600), accepted, 120)
    for job in jobs:
        if job.status == "failed":
            assert job.code and job.error, job
            assert job.code != "inference_error", job  # bad pixels are an image error
    assert not [j for j in jobs if conn.exists(j.blob)], "blobs of finished jobs are deleted"
    assert classify_worker.poll() is None, "the worker died"
    assert conn.exists(f"{WORKER_KEY_PREFIX}classify@testhost"), "the worker stopped beating"


def test_deepstack_fields_against_a_real_worker(classify_worker: subprocess.Popen,
                                                redis_url: str, make_client: AppFactory) -> None:
    client = make_client(redis_url, sync_timeout_s=120)  # returns once the worker answers

    @settings(PROPERTY, max_examples=15)
    @given(min_confidence=st.text(max_size=10) | st.floats().map(str),
           top_k=st.text(max_size=6) | st.integers(-5, 2000).map(str))
    @example(min_confidence="nan", top_k="３")  # int() accepts non-ASCII digits
    def classify(min_confidence: str, top_k: str) -> None:
        response = client.post("/v1/vision/classify", data=files(
            image=OBAMA, min_confidence=min_confidence, top_k=top_k),
            content_type="multipart/form-data")
        if response.status_code == 200:
            body = response.get_json()
            assert body["success"] is True and isinstance(body["predictions"], list)
        else:
            assert_clean(response)

    classify()
    assert classify_worker.poll() is None


def test_unicode_userid_registers_lists_and_deletes(face_worker: subprocess.Popen,
                                                    redis_url: str, make_client: AppFactory,
                                                    clean_faces: None) -> None:
    client = make_client(redis_url, sync_timeout_s=120)  # returns once the worker answers

    @settings(PROPERTY, max_examples=6)
    @given(userid=st.text(min_size=1, max_size=256).filter(lambda u: u.strip()))
    @example(userid="Renée 🙂 \u202e\u0000 名前")
    def register(userid: str) -> None:
        response = client.post("/v1/vision/face/register",
                               data=files(userid=userid, image=OBAMA),
                               content_type="multipart/form-data")
        assert response.status_code == 200, response.get_json()
        stored = response.get_json()["userid"]
        assert stored == userid.strip()
        assert stored in client.get("/v1/vision/face/list").get_json()["faces"]
        deleted = client.post("/v1/vision/face/delete", data={"userid": userid})
        assert deleted.status_code == 200, deleted.get_json()
        assert stored not in client.get("/v1/vision/face/list").get_json()["faces"]

    register()
    assert face_worker.poll() is None
