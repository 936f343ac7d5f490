"""A DeepStack caller that hangs up (Frigate after its 0.1 s) gets its queued job revoked,
so no worker spends time on a frame nobody will read (issue 26: under overload the late
frames used to run anyway and made every later frame late too)."""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Iterator

import pytest
import redis
from PIL import Image

from api.client_gone import gone
from tests.conftest import start_api, stop_process
from visionq.keys import JOB_KEY_PREFIX


def test_open_connection_is_not_gone() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        assert gone({"gunicorn.socket": ours}) is False


def test_pending_bytes_are_not_gone_and_stay_unread() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(b"GET / HTTP/1.1\r\n")  # a pipelined next request: still there
        assert gone({"gunicorn.socket": ours}) is False
        assert ours.recv(64) == b"GET / HTTP/1.1\r\n"  # the peek consumed nothing


def test_closed_peer_is_gone() -> None:
    ours, theirs = socket.socketpair()
    with ours:
        theirs.close()
        assert gone({"gunicorn.socket": ours}) is True


def test_no_socket_means_still_there() -> None:
    assert gone({}) is False
    assert gone({"gunicorn.socket": "not a socket"}) is False


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (320, 320), (90, 120, 150)).save(out, "JPEG")
    return out.getvalue()


def _detection_request(host: str, port: int) -> bytes:
    boundary = "visionqboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
            f"filename=\"frame.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").encode()
    body += _jpeg() + f"\r\n--{boundary}--\r\n".encode()
    head = (f"POST /v1/vision/detection HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n").encode()
    return head + body


def _jobs(client: redis.Redis) -> dict[str, dict[bytes, bytes]]:
    return {key.decode(): client.hgetall(key)
            for key in client.scan_iter(f"{JOB_KEY_PREFIX}*") if client.type(key) == b"hash"}


def _until(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture()
def idle_api(idle_redis_url: str) -> Iterator[str]:
    """The API under gunicorn (as `visionq up` runs it) on a DB no worker consumes, with a
    synchronous wait far longer than the test's deadlines."""
    url, process = start_api(idle_redis_url, "api-client-gone", VISIONQ_SYNC_TIMEOUT_S="120")
    yield url
    stop_process(process)


def test_a_caller_that_hangs_up_has_its_queued_job_revoked(idle_api: str,
                                                           idle_redis_url: str) -> None:
    client = redis.Redis.from_url(idle_redis_url)
    host, port = idle_api.removeprefix("http://").split(":")
    caller = socket.create_connection((host, int(port)), timeout=30)
    caller.sendall(_detection_request(host, int(port)))
    jobs = _until(lambda: {k: v for k, v in _jobs(client).items()
                           if v.get(b"status") == b"queued"}, 60, "the frame's job queued")
    (key,) = jobs
    caller.close()  # Frigate's timeout: the connection is dropped, the job is still queued

    record = _until(lambda: (r := client.hgetall(key)).get(b"status") == b"failed" and r,
                    60, "the job revoked after the caller left")
    assert b"left" in record.get(b"error", b""), record
    assert client.llen("detect") == 1  # the message stays: a worker that takes it skips it


def test_a_caller_that_stays_is_not_revoked(idle_api: str, idle_redis_url: str) -> None:
    client = redis.Redis.from_url(idle_redis_url)
    host, port = idle_api.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as caller:
        caller.sendall(_detection_request(host, int(port)))
        (key,) = _until(lambda: list(_jobs(client)), 60, "the frame's job queued")
        waited_until = time.monotonic() + 20 * 0.05  # twenty looks at the socket
        while time.monotonic() < waited_until:
            assert client.hget(key, "status") == b"queued"
            time.sleep(0.05)
