"""Webhooks end to end with real parts: the API, a classify worker, the sender
(``visionq.callbacks.sender``, in a thread) and a real HTTP receiver on loopback (allowed by
``VISIONQ_CALLBACK_ALLOW``).  The receiver checks each delivery with docs/webhooks.md's verifier;
a receiver that is down gets the job once it is back; a destination the sender's allow list
refuses is never contacted."""

from __future__ import annotations

import http.server
import io
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from api.security import SECRET_EXTENSION
from tests.api.conftest import AppFactory
from tests.conftest import FIXTURES
from tests.helpers import free_port
from tests.visionq.test_callback_signing import readme_verifier
from visionq.callbacks.__main__ import alive
from visionq.callbacks.destinations import AllowList
from visionq.callbacks.sender import CallbackSender
from visionq.callbacks.signing import DELIVERY_HEADER, CallbackSecrets
from visionq.keys import CALLBACK_DUE_KEY, CALLBACK_PENDING_KEY
from visionq.settings import Settings

DEADLINE_S = 120
CAT = (FIXTURES / "classify" / "caffe_cat.jpg").read_bytes()
ALICE, BOB = "alice-key-0123456789", "bob-key-0123456789"


class Receiver:
    """A real HTTP server on 127.0.0.1 recording every POST (headers, body); ``start`` and
    ``stop`` can be called again on the same port (a receiver that goes down, then up)."""

    def __init__(self, port: int | None = None, status: int = 200) -> None:
        self.port = port or free_port()
        self.status = status
        self.received: list[tuple[dict[str, str], bytes]] = []
        self._server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook?token=abc"

    def start(self) -> Receiver:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((dict(self.headers.items()), body))
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def deliveries(self, delivery: str) -> list[tuple[dict[str, str], bytes]]:
        return [(h, b) for h, b in self.received if h.get(DELIVERY_HEADER) == delivery]


def wait_for(condition: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + DEADLINE_S
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


@pytest.fixture()
def api(classify_worker: subprocess.Popen, redis_url: str, make_client: AppFactory,
        tmp_path: Path) -> FlaskClient:
    return make_client(redis_url, api_keys=f"{ALICE},{BOB}", callback_allow="127.0.0.1",
                       state_dir=str(tmp_path))


@pytest.fixture()
def start_sender(api: FlaskClient, redis_url: str) -> Iterator[Callable[..., CallbackSender]]:
    """Senders on the session's Redis, with the API's server secret; short back-off."""
    started: list[CallbackSender] = []

    def _start(allow: str = "127.0.0.1", **kwargs: Any) -> CallbackSender:
        secrets = CallbackSecrets("", api.application.extensions[SECRET_EXTENSION])
        sender = CallbackSender(redis.Redis.from_url(redis_url), secrets,
                                AllowList.parse(allow), timeout_s=5, backoff_first_s=0.2,
                                backoff_max_s=1.0, block_ms=200, **kwargs).start()
        started.append(sender)
        return sender

    yield _start
    for sender in started:
        sender.stop()
    # deliveries left to receivers that are gone (other tests' jobs sent to a global URL)
    redis.Redis.from_url(redis_url).delete(CALLBACK_DUE_KEY, CALLBACK_PENDING_KEY)


def submit(api: FlaskClient, key: str, callback_url: str) -> str:
    response = api.post("/v1/jobs?task=classify", headers={"X-API-Key": key},
                        data={"image": (io.BytesIO(CAT), "cat.jpg"), "callback_url": callback_url},
                        content_type="multipart/form-data")
    assert response.status_code == 202, response.get_json()
    return response.get_json()["id"]


def attempts(api: FlaskClient, key: str, job_id: str) -> list[dict[str, Any]]:
    job = api.get(f"/v1/jobs/{job_id}", headers={"X-API-Key": key}).get_json()
    return job["callbacks"]


def secret_of(api: FlaskClient, key: str) -> str:
    return api.get("/v1/callbacks/secret", headers={"X-API-Key": key}).get_json()["secret"]


def test_a_finished_job_is_delivered_signed_with_its_keys_secret(
        api: FlaskClient, start_sender: Callable[..., CallbackSender]) -> None:
    receiver = Receiver().start()
    try:
        start_sender()
        job_id = submit(api, ALICE, receiver.url)
        [(headers, body)] = wait_for(lambda: receiver.deliveries(f"{job_id}:job"),
                                     "the webhook")
    finally:
        receiver.stop()
    verify = readme_verifier()
    assert verify(secret_of(api, ALICE), headers, body)
    assert not verify(secret_of(api, BOB), headers, body), "another tenant's secret verifies"
    sent = json.loads(body)
    assert sent["id"] == job_id and sent["status"] == "succeeded"
    assert sent["result"]["predictions"], sent
    shown = api.get(f"/v1/jobs/{job_id}", headers={"X-API-Key": ALICE}).get_json()
    [attempt] = shown.pop("callbacks")
    assert sent == shown  # the job as GET /v1/jobs/<id> shows it
    assert attempt["outcome"] == "delivered" and attempt["status"] == 200
    assert attempt["target"] == "job" and attempt["attempt"] == 1
    assert api.get(f"/v1/jobs/{job_id}", headers={"X-API-Key": BOB}).status_code == 404


def test_a_receiver_that_is_down_gets_the_job_when_it_is_back(
        api: FlaskClient, start_sender: Callable[..., CallbackSender]) -> None:
    receiver = Receiver()  # not started: connections are refused
    start_sender()
    job_id = submit(api, ALICE, receiver.url)
    failed = wait_for(lambda: [a for a in attempts(api, ALICE, job_id)
                               if a["outcome"] == "retrying"][2:], "three failed attempts")
    assert failed[0]["status"] is None and failed[0]["error"]
    receiver.start()
    try:
        [(headers, body)] = wait_for(lambda: receiver.deliveries(f"{job_id}:job"),
                                     "the webhook after the receiver came back")
    finally:
        receiver.stop()
    assert readme_verifier()(secret_of(api, ALICE), headers, body)
    log = wait_for(lambda: [a for a in attempts(api, ALICE, job_id)
                            if a["outcome"] == "delivered"] and attempts(api, ALICE, job_id),
                   "the delivery on the job")
    assert [a["outcome"] for a in log[:-1]] == ["retrying"] * (len(log) - 1)
    assert log[-1]["outcome"] == "delivered" and log[-1]["attempt"] == len(log) >= 4


def test_the_sender_checks_the_destination_again(
        api: FlaskClient, start_sender: Callable[..., CallbackSender]) -> None:
    """The API allowed 127.0.0.1, the sender's VISIONQ_CALLBACK_ALLOW does not: refused at
    delivery (after resolving), never contacted, not retried."""
    receiver = Receiver().start()
    try:
        start_sender(allow="")
        job_id = submit(api, ALICE, receiver.url)
        [attempt] = wait_for(lambda: attempts(api, ALICE, job_id), "the refused attempt")
    finally:
        receiver.stop()
    assert attempt["outcome"] == "refused" and "127.0.0.1" in attempt["error"]
    assert receiver.received == []


def test_the_global_url_gets_every_job_signed_with_the_global_secret(
        api: FlaskClient, start_sender: Callable[..., CallbackSender]) -> None:
    receiver = Receiver().start()
    try:
        start_sender(global_url=receiver.url)
        job_id = submit(api, ALICE, receiver.url)
        wait_for(lambda: receiver.deliveries(f"{job_id}:global")
                 and receiver.deliveries(f"{job_id}:job"), "both webhooks")
    finally:
        receiver.stop()
    verify = readme_verifier()
    secrets = CallbackSecrets("", api.application.extensions[SECRET_EXTENSION])
    [(headers, body)] = receiver.deliveries(f"{job_id}:global")
    assert verify(secrets.global_secret, headers, body)
    assert not verify(secret_of(api, ALICE), headers, body)
    # the operator's URL's attempts are not the tenant's to see
    shown = wait_for(lambda: attempts(api, ALICE, job_id), "the job's attempts")
    assert {each["target"] for each in shown} == {"job"}


def test_the_health_check_sees_a_reading_sender_only(
        redis_url: str, start_sender: Callable[..., CallbackSender]) -> None:
    settings = Settings(redis_url=redis_url)
    sender = start_sender()
    wait_for(lambda: alive(settings), "the sender's first read")
    sender.stop()  # leaves the group (it holds nothing pending)
    assert not alive(settings)
