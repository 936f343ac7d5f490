"""Attacks on ``/v1/stream`` threads (each open stream holds a gunicorn thread):

- keyless upgrades were not counted against ``VISIONQ_MAX_STREAMS`` until their key frame,
  so anyone could hold every thread of the API with upgrades that never authenticate; now
  they count, and hold at most half the slots, so keyed clients still get in;
- a connection must authenticate within ``VISIONQ_STREAM_AUTH_TIMEOUT_S``;
- a client that stops reading held its stream's thread in a blocked send for ever.

A real gunicorn API (one process, so the per-process limits are exact) with keys."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from simple_websocket import ConnectionClosed, ConnectionError
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, Request, TextMessage

from api.stream import StreamGate
from tests.conftest import BIN, service_env, spawn, stop_process, wait_http
from tests.helpers import free_port
from visionq.client import connect_stream
from visionq.stream_protocol import CLOSE_UNAUTHORIZED, STREAM_PATH, header_frame

KEY, SLOW_READER_KEY, THIRD_KEY = "limits-key", "slow-reader-key", "third-key"
MAX_STREAMS = 4
AUTH_TIMEOUT_S = 6
SEND_TIMEOUT_S = 1
WINDOW = 1024
LARGE_ANSWERS = 100
"""x ~120 KB: three times what the socket buffers of a connection hold (4 MB at most)."""
WAIT_S = 60
"""Bound of every wait: generous for a loaded machine; each returns once its condition holds."""


@pytest.fixture(scope="module")
def keyed_api(redis_url: str) -> Iterator[str]:
    port = free_port()
    command = [str(BIN / "gunicorn"), "--workers", "1", "--threads", "12", "--bind",
               f"127.0.0.1:{port}", "api:create_app()"]
    process = spawn("api-stream-limits", command, service_env(
        redis_url, VISIONQ_API_KEYS=f"{KEY},{SLOW_READER_KEY},{THIRD_KEY}",
        VISIONQ_MAX_STREAMS=str(MAX_STREAMS), VISIONQ_MAX_STREAMS_PER_KEY="1",
        VISIONQ_STREAM_AUTH_TIMEOUT_S=str(AUTH_TIMEOUT_S),
        VISIONQ_STREAM_SEND_TIMEOUT_S=str(SEND_TIMEOUT_S),
        VISIONQ_STREAM_WINDOW=str(WINDOW), VISIONQ_HISTORY_WRITER="false",
        VISIONQ_STREAM_IDLE_TIMEOUT_S="3600"))  # no stream ends for being idle here
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/healthz", process, "api-stream-limits")
    yield url
    stop_process(process)


def connect(api: str, key: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else None
    return connect_stream(api.replace("http://", "ws://") + STREAM_PATH, headers)


def connect_when_free(api: str, key: str) -> Any:
    """An authenticated stream as soon as a slot is free (streams may be closing)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            ws = connect(api, key)
        except ConnectionError as exc:
            assert exc.status_code == 503 and time.monotonic() < deadline, exc
            time.sleep(0.1)
            continue
        assert json.loads(ws.receive(timeout=WAIT_S))["credit"] == WINDOW
        return ws


def closed_by_server(ws: Any) -> tuple[int, str]:
    """Read until the server closes the connection: its close code and reason."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            ws.receive(timeout=1)
        except ConnectionClosed:
            return int(ws.close_reason), str(ws.close_message)
    raise AssertionError("the server did not close the connection")


def refused(api: str, key: str | None = None) -> int:
    with pytest.raises(ConnectionError) as refusal:
        connect(api, key)
    return refusal.value.status_code


def test_keyless_upgrades_count_against_the_stream_limit(keyed_api: str) -> None:
    connect_when_free(keyed_api, KEY).close()  # earlier streams are gone
    keyless = [connect(keyed_api) for _ in range(MAX_STREAMS // 2)]
    assert refused(keyed_api) == 503  # keyless connections hold at most half the slots
    keyed = [connect_when_free(keyed_api, key) for key in (KEY, SLOW_READER_KEY)]
    assert refused(keyed_api) == 503  # and they count against the total: it is full
    assert refused(keyed_api, THIRD_KEY) == 503  # a key in the headers waits too
    answer = requests.get(f"{keyed_api}/healthz", timeout=10)  # REST still has threads
    assert answer.status_code == 200
    # One keyless stream authenticates by its first frame: its slot passes to its key.
    keyless[0].send(json.dumps({"auth": THIRD_KEY}))
    assert json.loads(keyless[0].receive(timeout=WAIT_S)) == {"credit": WINDOW}
    for ws in keyless + keyed:
        ws.close()
    connect_when_free(keyed_api, KEY).close()


def test_a_keyless_stream_that_sends_nothing_is_closed_at_the_auth_deadline(
        keyed_api: str) -> None:
    connect_when_free(keyed_api, KEY).close()
    ws = connect(keyed_api)
    code, reason = closed_by_server(ws)
    assert code == CLOSE_UNAUTHORIZED
    assert f"no API key within {AUTH_TIMEOUT_S} s" in reason, reason
    connect_when_free(keyed_api, KEY).close()  # its slot is free again


def test_keyless_connections_hold_at_most_half_the_slots() -> None:
    gate = StreamGate(max_total=5, max_per_key=2)
    assert gate.acquire("unauthenticated:1") and gate.acquire("unauthenticated:2")
    assert not gate.acquire("unauthenticated:3")
    assert gate.acquire("a") and gate.acquire("b") and gate.acquire("c")
    assert gate.pass_on("unauthenticated:1", "a")  # authenticated: a keyless slot frees
    gate.release("c")
    assert gate.acquire("unauthenticated:3") and gate.open == 5
    assert StreamGate(max_total=1, max_per_key=1).acquire("unauthenticated:1")


def test_the_gate_passes_a_keyless_slot_to_its_key() -> None:
    gate = StreamGate(max_total=2, max_per_key=1)
    assert gate.acquire("unauthenticated:1") and gate.acquire("b")
    assert not gate.acquire("a")  # full: keyless upgrades count
    assert gate.pass_on("unauthenticated:1", "a") and gate.open == 2
    gate.release("b")
    assert gate.acquire("unauthenticated:2")
    assert not gate.pass_on("unauthenticated:2", "a")  # per key: the holder keeps it
    gate.release("unauthenticated:2")
    assert gate.open == 1 and gate.acquire("b") and not gate.acquire("c")


def raw_stream(api: str, key: str) -> tuple[socket.socket, WSConnection]:
    """A WebSocket client on a bare socket that reads nothing after the handshake, with a
    small receive buffer: the server's sends to it block once a few KB are in flight."""
    host, port = api.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    ws = WSConnection(ConnectionType.CLIENT)
    sock.sendall(ws.send(Request(host=f"{host}:{port}", target=STREAM_PATH,
                                 extra_headers=[(b"authorization", f"Bearer {key}".encode())])))
    deadline = time.monotonic() + WAIT_S
    while True:
        assert time.monotonic() < deadline, "no handshake reply"
        ws.receive_data(sock.recv(4096))
        if any(isinstance(event, AcceptConnection) for event in ws.events()):
            return sock, ws


def test_a_client_that_stops_reading_does_not_keep_its_thread(keyed_api: str) -> None:
    """Images of an unknown task whose name is 60 KB (the answer repeats it: about 120 KB
    each) to a client that never reads: after ~4 MB the socket buffers are full and the
    server's send blocks; after the send timeout the stream ends and its slot (1 per key)
    is free again.  Before, the thread waited in ``send`` as long as the client lived."""
    sock, ws = raw_stream(keyed_api, SLOW_READER_KEY)
    try:
        sock.settimeout(WAIT_S)
        header = header_frame("custom/" + "a" * 60_000)
        with contextlib.suppress(OSError):  # the server may end the stream meanwhile
            for i in range(LARGE_ANSWERS):
                sock.sendall(ws.send(TextMessage(data=header)))
                sock.sendall(ws.send(BytesMessage(data=b"image %d" % i)))
        connect_when_free(keyed_api, SLOW_READER_KEY).close()  # 503 while it is held
    finally:
        sock.close()
