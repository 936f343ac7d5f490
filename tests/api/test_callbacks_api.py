"""``callback_url`` on submit (checked before anything is written) and
``GET /v1/callbacks/secret`` (each API key its own secret), in-process against a Redis no
worker consumes."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from flask.testing import FlaskClient

from api import create_app
from api.security import SECRET_EXTENSION, fingerprint
from tests.conftest import FIXTURES
from visionq.callbacks.signing import CallbackSecrets

CAT = (FIXTURES / "classify" / "caffe_cat.jpg").read_bytes()
ALICE, BOB, ADMIN = "alice-key-0123456789", "bob-key-0123456789", "admin-key-0123456789"
Client = Callable[..., FlaskClient]


@pytest.fixture()
def make(idle_redis_url: str, tmp_path: Path) -> Client:
    def _make(**overrides: str) -> FlaskClient:
        app = create_app({"redis_url": idle_redis_url, "history_writer": False,
                          "history_url": f"sqlite:///{tmp_path / 'history.sqlite3'}",
                          "state_dir": str(tmp_path), **overrides})
        return app.test_client()
    return _make


def _submit(client: FlaskClient, callback_url: str, path: str = "/v1/jobs?task=classify"):
    return client.post(path, data={"image": (io.BytesIO(CAT), "cat.jpg"),
                                   "callback_url": callback_url},
                       content_type="multipart/form-data")


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/hook", "http://169.254.169.254/latest/meta-data/",
    "http://localhost/", "http://[::1]/", "http://10.0.0.1/",
])
@pytest.mark.parametrize("path", ["/v1/jobs?task=classify", "/v1/jobs/batch?task=classify"])
def test_internal_destinations_are_refused_and_nothing_is_queued(
        make: Client, idle_redis_url: str, url: str, path: str) -> None:
    response = _submit(make(), url, path)
    assert response.status_code == 400
    assert response.get_json()["code"] == "callback_refused"
    assert "VISIONQ_CALLBACK_ALLOW" in response.get_json()["error"]
    assert redis.Redis.from_url(idle_redis_url).llen("classify") == 0


@pytest.mark.parametrize("url", ["ftp://example.com/", "http://u:p@example.com/",
                                 "https://example.com/" + "x" * 2100])
def test_malformed_urls_are_refused(make: Client, url: str) -> None:
    response = _submit(make(), url)
    assert response.status_code == 400
    assert response.get_json()["code"] == "invalid_callback_url"


def test_json_callback_url_must_be_a_string(make: Client) -> None:
    import base64
    response = make().post("/v1/jobs?task=classify", json={
        "image": base64.b64encode(CAT).decode(), "callback_url": 42})
    assert response.status_code == 400
    assert response.get_json()["code"] == "invalid_callback_url"


def test_an_allowed_destination_is_kept_on_the_job(make: Client) -> None:
    client = make(callback_allow="127.0.0.1")
    response = _submit(client, "http://127.0.0.1:8080/hook")
    assert response.status_code == 202
    job = client.get(f"/v1/jobs/{response.get_json()['id']}").get_json()
    assert job["callbacks"] == []  # none tried yet (no sender here)
    plain = client.post("/v1/jobs?task=classify", data={"image": (io.BytesIO(CAT), "c.jpg")},
                        content_type="multipart/form-data").get_json()
    assert "callbacks" not in client.get(f"/v1/jobs/{plain['id']}").get_json()


def test_each_key_reads_its_own_secret_only(make: Client) -> None:
    client = make(api_keys=f"{ALICE},{BOB}", admin_keys=ADMIN)
    app = client.application
    secrets = CallbackSecrets("", app.extensions[SECRET_EXTENSION])

    def read(key: str) -> dict:
        response = client.get("/v1/callbacks/secret", headers={"X-API-Key": key})
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "no-store"
        return response.get_json()

    alice, bob, admin = read(ALICE), read(BOB), read(ADMIN)
    server = app.extensions[SECRET_EXTENSION]
    assert alice["secret"] == secrets.for_submitter(fingerprint(server, ALICE))
    assert bob["secret"] == secrets.for_submitter(fingerprint(server, BOB))
    assert alice["secret"] != bob["secret"]
    assert "global_secret" not in alice and "global_secret" not in bob
    assert admin["global_secret"] == secrets.global_secret
    assert secrets.global_secret not in (alice["secret"], bob["secret"])
    assert client.get("/v1/callbacks/secret").status_code == 401


def test_open_api_gets_the_global_secret(make: Client) -> None:
    client = make(callback_secret="a-configured-callback-secret")
    body = client.get("/v1/callbacks/secret").get_json()
    assert body["secret"] == "a-configured-callback-secret"
