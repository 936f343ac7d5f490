"""The job API in-process (Flask test client) against a real Redis that no worker
consumes, so what it enqueues can be inspected: 202 + by-reference messages, and a JSON
error with a stable code for every bad request."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from flask.testing import FlaskClient

from api import create_app
from tests.conftest import FIXTURES

BAD = FIXTURES / "bad"
CASES = json.loads((BAD / "cases.json").read_text())["cases"]
OBAMA = (FIXTURES / "faces" / "obama_small.jpg").read_bytes()


@pytest.fixture()
def client(idle_redis_url: str, tmp_path: Path) -> Iterator[FlaskClient]:
    app = create_app({"redis_url": idle_redis_url, "history_writer": False,
                      "history_url": f"sqlite:///{tmp_path / 'history.sqlite3'}"})
    with app.test_client() as test_client:
        yield test_client


def _post(client: FlaskClient, data: bytes, task: str = "face", field: str = "image"):
    return client.post(f"/v1/jobs?task={task}", data={field: (__import__("io").BytesIO(data),
                                                              "x.jpg")},
                       content_type="multipart/form-data")


def test_submit_accepts_and_enqueues_by_reference(client: FlaskClient,
                                                  idle_redis_url: str) -> None:
    response = _post(client, OBAMA)
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "queued" and body["task"] == "face"
    assert body["status_url"].endswith(f"/v1/jobs/{body['id']}")
    assert response.headers["Location"] == body["status_url"]
    conn = redis.Redis.from_url(idle_redis_url)
    assert conn.llen("face") == 1
    message = conn.lindex("face", 0)
    assert len(message) < 4096, "the image must travel by reference, not inside the message"
    payload = json.loads(message)
    assert payload["headers"]["task"] == "visionq.face"
    assert json.loads(base64.b64decode(payload["body"]))[0] == [body["id"]]
    assert payload["content-type"] == "application/json"
    job = client.get(f"/v1/jobs/{body['id']}").get_json()
    assert job["status"] == "queued" and job["timings"]["queued_at"]
    blob_keys = conn.keys("visionq:blob:*")
    assert len(blob_keys) == 1 and conn.get(blob_keys[0]) == OBAMA


@pytest.mark.parametrize("task", ["face", "detect", "classify"])
def test_each_task_goes_to_its_own_queue(client: FlaskClient, idle_redis_url: str,
                                         task: str) -> None:
    assert _post(client, OBAMA, task).status_code == 202
    conn = redis.Redis.from_url(idle_redis_url)
    assert {q: conn.llen(q) for q in ("face", "detect", "classify")} == {
        q: int(q == task) for q in ("face", "detect", "classify")}


def test_json_base64_submit(client: FlaskClient) -> None:
    response = client.post("/v1/jobs", json={"task": "classify",
                                             "image": base64.b64encode(OBAMA).decode(),
                                             "options": {"top_k": 3}})
    assert response.status_code == 202, response.get_json()
    job = client.get(f"/v1/jobs/{response.get_json()['id']}").get_json()
    assert job["task"] == "classify"


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if c["expect_status"] >= 400))
def test_bad_fixtures_rejected_before_enqueue(client: FlaskClient, idle_redis_url: str,
                                              name: str) -> None:
    case = CASES[name]
    response = _post(client, (BAD / name).read_bytes())
    assert response.status_code == case["expect_status"]
    body = response.get_json()
    assert body["success"] is False and body["code"]
    assert any(word in body["error"].lower() for word in case["expect_error_contains"])
    assert redis.Redis.from_url(idle_redis_url).llen("face") == 0


@pytest.mark.parametrize(("request_kwargs", "status", "code"), [
    ({"path": "/v1/jobs?task=nope", "image": True}, 400, "unknown_task"),
    ({"path": "/v1/jobs", "image": True}, 400, "missing_task"),
    ({"path": "/v1/jobs?task=face", "image": False}, 400, "missing_image"),
    ({"path": "/v1/jobs?task=face", "json": {"image": "!!!not base64"}}, 400, "invalid_base64"),
    ({"path": "/v1/jobs?task=face", "json": {"nothing": 1}}, 400, "missing_image"),
    ({"path": "/v1/jobs?task=face", "raw_json": "{broken"}, 400, "invalid_json"),
    ({"path": "/v1/jobs?task=face", "image": True, "options": "{bad"}, 400, "invalid_options"),
])
def test_bad_requests_get_json_errors(client: FlaskClient, request_kwargs: dict,
                                      status: int, code: str) -> None:
    path = request_kwargs["path"]
    if "json" in request_kwargs:
        response = client.post(path, json=request_kwargs["json"])
    elif "raw_json" in request_kwargs:
        response = client.post(path, data=request_kwargs["raw_json"],
                               content_type="application/json")
    else:
        import io

        data: dict = {}
        if request_kwargs["image"]:
            data["image"] = (io.BytesIO(OBAMA), "x.jpg")
        if "options" in request_kwargs:
            data["options"] = request_kwargs["options"]
        response = client.post(path, data=data, content_type="multipart/form-data")
    assert response.status_code == status
    assert response.is_json
    assert response.get_json()["code"] == code


def test_unknown_job_and_routes_are_json(client: FlaskClient) -> None:
    missing = client.get("/v1/jobs/does-not-exist")
    assert missing.status_code == 404 and missing.get_json()["code"] == "job_not_found"
    route = client.get("/no/such/page")
    assert route.status_code == 404 and route.get_json()["success"] is False
    method = client.delete("/healthz")
    assert method.status_code == 405 and method.is_json


@pytest.mark.parametrize("wait", ["abc", "-1", "100000", "nan"])
def test_bad_wait_values(client: FlaskClient, wait: str, idle_redis_url: str) -> None:
    job_id = _post(client, OBAMA).get_json()["id"]
    response = client.get(f"/v1/jobs/{job_id}?wait={wait}")
    assert response.status_code == 400 and response.get_json()["code"] == "invalid_wait"
    queued = redis.Redis.from_url(idle_redis_url).llen("face")
    refused = client.post(f"/v1/jobs?task=face&wait={wait}",
                          data={"image": (__import__("io").BytesIO(OBAMA), "x.jpg")})
    assert refused.status_code == 400 and refused.get_json()["code"] == "invalid_wait"
    assert redis.Redis.from_url(idle_redis_url).llen("face") == queued, "nothing written"


def test_submit_with_wait_answers_202_when_the_job_is_not_done_in_time(
        client: FlaskClient) -> None:
    response = client.post("/v1/jobs?task=face&wait=0.3",
                           data={"image": (__import__("io").BytesIO(OBAMA), "x.jpg")})
    assert response.status_code == 202  # no worker consumes this Redis
    body = response.get_json()
    assert body["status"] == "queued" and response.headers["Location"] == body["status_url"]


def test_oversize_body_is_413_json(idle_redis_url: str) -> None:
    # No history writer: its thread would outlive the test and read the next tests' history
    # stream on the same database (tests/visionq/test_history.py counts consumer groups).
    app = create_app({"redis_url": idle_redis_url, "max_bytes": 1000, "history_writer": False})
    with app.test_client() as small:
        response = _post(small, b"\xff\xd8" + b"0" * 5_000_000)
    assert response.status_code == 413 and response.get_json()["success"] is False


def test_redis_down_is_503_json() -> None:
    app = create_app({"redis_url": "redis://127.0.0.1:1/0"})
    with app.test_client() as down:
        response = _post(down, OBAMA)
        assert response.status_code == 503
        assert response.get_json()["code"] == "redis_unavailable"
        assert response.headers["Retry-After"]
        ready = down.get("/readyz")
        assert ready.status_code == 503 and "unreachable" in ready.get_json()["redis"]
    assert down.get("/healthz").status_code == 200
