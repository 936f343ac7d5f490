"""Job API extensions on a Redis no worker consumes (so queues can be inspected): batch
submit, recent-jobs listing with filters and pages, revoke, Idempotency-Key, per-task
options; and one run with a real worker proving a revoked job is skipped."""

from __future__ import annotations

import base64
import subprocess

import pytest
import redis
from flask.testing import FlaskClient

from tests.api.conftest import AppFactory, face, files
from visionq.jobs import JobStore

OBAMA = face("obama_small.jpg")


@pytest.fixture()
def client(idle_redis_url: str, make_client: AppFactory) -> FlaskClient:
    return make_client(idle_redis_url)


def _submit(client: FlaskClient, task: str = "face", headers: dict | None = None,
            options: str | None = None):
    data = files(image=OBAMA)
    if options is not None:
        data["options"] = options
    return client.post(f"/v1/jobs?task={task}", data=data, headers=headers or {})


def test_batch_multipart_any_field_names(client: FlaskClient, idle_redis_url: str) -> None:
    response = client.post("/v1/jobs/batch?task=classify", data=files(
        a=OBAMA, b=face("biden.jpg"), c=face("obama2.jpg"), options='{"top_k": 2}'))
    assert response.status_code == 202, response.get_json()
    jobs = response.get_json()["jobs"]
    assert len(jobs) == 3 and len({j["id"] for j in jobs}) == 3
    assert redis.Redis.from_url(idle_redis_url).llen("classify") == 3
    job = client.get(jobs[0]["status_url"].split("localhost", 1)[1]).get_json()
    assert job["task"] == "classify" and job["status"] == "queued"


def test_batch_json_and_all_or_nothing(client: FlaskClient, idle_redis_url: str) -> None:
    encoded = base64.b64encode(OBAMA).decode()
    ok = client.post("/v1/jobs/batch", json={"task": "face", "images": [encoded, encoded]})
    assert ok.status_code == 202 and len(ok.get_json()["jobs"]) == 2
    bad = client.post("/v1/jobs/batch?task=face", data=files(
        a=OBAMA, b=b"not an image at all"))
    assert bad.status_code == 400 and "image 1" in bad.get_json()["error"]
    assert redis.Redis.from_url(idle_redis_url).llen("face") == 2  # nothing from the bad one


def test_batch_limit(idle_redis_url: str, make_client: AppFactory) -> None:
    client = make_client(idle_redis_url, max_batch=2)
    response = client.post("/v1/jobs/batch?task=face", data=files(a=OBAMA, b=OBAMA, c=OBAMA))
    assert response.status_code == 413 and response.get_json()["code"] == "batch_too_large"


def test_list_filters_and_pages(client: FlaskClient, idle_redis_url: str) -> None:
    ids = [_submit(client, task).get_json()["id"] for task in ["face", "classify"] * 3]
    listed = client.get("/v1/jobs").get_json()
    assert [j["id"] for j in listed["jobs"]] == ids[::-1] and listed["next"] is None
    faces = client.get("/v1/jobs?task=face").get_json()["jobs"]
    assert [j["id"] for j in faces] == ids[::2][::-1]
    page1 = client.get("/v1/jobs?limit=4").get_json()
    assert len(page1["jobs"]) == 4 and page1["next"]
    page2 = client.get(page1["next"].split("localhost", 1)[1]).get_json()
    assert [j["id"] for j in page1["jobs"] + page2["jobs"]] == ids[::-1]
    client.delete(f"/v1/jobs/{ids[0]}")
    failed = client.get("/v1/jobs?status=failed").get_json()["jobs"]
    assert [j["id"] for j in failed] == [ids[0]]
    for query, code in [("status=nope", "invalid_status"), ("task=nope", "unknown_task"),
                        ("limit=0", "invalid_page"), ("limit=x", "invalid_page"),
                        ("before=inf", "invalid_page")]:
        response = client.get(f"/v1/jobs?{query}")
        assert response.status_code == 400 and response.get_json()["code"] == code


def test_revoke(client: FlaskClient, idle_redis_url: str) -> None:
    job_id = _submit(client).get_json()["id"]
    blob = client.application.extensions["visionq"].jobs.get(job_id).blob
    revoked = client.delete(f"/v1/jobs/{job_id}")
    assert revoked.status_code == 200
    assert revoked.get_json()["status"] == "failed" and revoked.get_json()["code"] == "revoked"
    conn = redis.Redis.from_url(idle_redis_url)
    assert not conn.exists(blob)
    again = client.delete(f"/v1/jobs/{job_id}")
    assert again.status_code == 409 and again.get_json()["code"] == "job_finished"
    assert client.delete("/v1/jobs/nope").status_code == 404
    running = _submit(client).get_json()["id"]
    JobStore(conn, 60).start(running, "test-worker")
    too_late = client.delete(f"/v1/jobs/{running}")
    assert too_late.status_code == 409 and too_late.get_json()["code"] == "job_running"


def test_revoked_job_is_skipped_by_a_real_worker(face_worker: subprocess.Popen, redis_url: str,
                                                 make_client: AppFactory) -> None:
    client = make_client(redis_url, sync_timeout_s=120)  # returns once the worker answers
    conn = redis.Redis.from_url(redis_url)
    svc = client.application.extensions["visionq"]
    blob = svc.blobs.put(OBAMA)
    job = svc.jobs.create("face", blob, {})
    conn.hset(JobStore.key(job.id), "submitter", "ip:127.0.0.1")  # the test client's own job
    assert client.delete(f"/v1/jobs/{job.id}").status_code == 200
    svc.enqueue("face", job.id)  # the message arrives after the revoke
    # A later job on the same single-process worker finishing proves the first was consumed.
    later = _submit(client).get_json()["id"]
    assert client.get(f"/v1/jobs/{later}?wait=60").get_json()["status"] == "succeeded"
    final = client.get(f"/v1/jobs/{job.id}").get_json()
    assert final["status"] == "failed" and final["code"] == "revoked" and final["attempts"] == 0
    assert conn.llen("face") == 0


def test_idempotency_key(client: FlaskClient, idle_redis_url: str) -> None:
    first = _submit(client, headers={"Idempotency-Key": "k1"})
    second = _submit(client, headers={"Idempotency-Key": "k1"})
    assert first.status_code == second.status_code == 202
    assert first.get_json()["id"] == second.get_json()["id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    other = _submit(client, headers={"Idempotency-Key": "k2"})
    assert other.get_json()["id"] != first.get_json()["id"]
    assert redis.Redis.from_url(idle_redis_url).llen("face") == 2
    too_long = _submit(client, headers={"Idempotency-Key": "x" * 300})
    assert too_long.status_code == 400


def test_idempotency_key_of_a_request_that_never_created_its_job(
        client: FlaskClient, idle_redis_url: str) -> None:
    """A claim without its jobs (the first request failed or died between claiming the key
    and admitting the job, as a Redis kill in the soak showed) is never replayed as a
    made-up job: while it is young the retry is told to wait (409 + Retry-After), once it
    is older than the grace the retry gets a real job."""
    from api.submission import CLAIM_GRACE_S
    from visionq.keys import IDEMPOTENCY_KEY_PREFIX

    conn = redis.Redis.from_url(idle_redis_url)
    first = _submit(client, headers={"Idempotency-Key": "lost"})
    assert first.status_code == 202
    [claim] = conn.keys(f"{IDEMPOTENCY_KEY_PREFIX}*")
    conn.delete(f"visionq:job:{first.get_json()['id']}")  # as if the admit never happened

    young = _submit(client, headers={"Idempotency-Key": "lost"})
    assert young.status_code == 409, young.get_json()
    assert young.get_json()["code"] == "idempotency_in_progress"
    assert int(young.headers["Retry-After"]) >= 1

    ttl = conn.ttl(claim)
    conn.expire(claim, ttl - CLAIM_GRACE_S - 5)  # the claim is now older than the grace
    retried = _submit(client, headers={"Idempotency-Key": "lost"})
    assert retried.status_code == 202, retried.get_json()
    job_id = retried.get_json()["id"]
    assert job_id != first.get_json()["id"]
    assert client.get(f"/v1/jobs/{job_id}").status_code == 200
    again = _submit(client, headers={"Idempotency-Key": "lost"})
    assert again.get_json()["id"] == job_id and again.headers["Idempotent-Replayed"] == "true"


def test_idempotency_key_not_claimed_by_a_rejected_request(client: FlaskClient) -> None:
    bad = client.post("/v1/jobs?task=face", data=files(image=b"nope"),
                      headers={"Idempotency-Key": "k"})
    assert bad.status_code == 400
    good = _submit(client, headers={"Idempotency-Key": "k"})
    assert good.status_code == 202 and "Idempotent-Replayed" not in good.headers


def test_idempotency_keys_are_per_caller(idle_redis_url: str, make_client: AppFactory) -> None:
    client = make_client(idle_redis_url, api_keys="alice,bob")
    ids = {key: _submit(client, headers={"Idempotency-Key": "same",
                                         "X-API-Key": key}).get_json()["id"]
           for key in ("alice", "bob")}
    assert ids["alice"] != ids["bob"]


@pytest.mark.parametrize(("task", "options"), [
    ("face", '{"model": "cnn", "upsample": 0, "landmarks": "5", "encodings": true}'),
    ("face", '{"landmarks": "none"}'),
    ("detect", '{"min_confidence": 0.5, "classes": ["person", "dog"]}'),
    ("detect", '{"min_confidence": 1}'),
    ("classify", '{"top_k": 3}'),
])
def test_valid_options(client: FlaskClient, task: str, options: str) -> None:
    response = _submit(client, task, options=options)
    assert response.status_code == 202, response.get_json()


@pytest.mark.parametrize(("task", "options", "words"), [
    ("face", '{"model": "yolo"}', "model"),
    ("face", '{"upsample": 9}', "upsample"),
    ("face", '{"upsample": "1"}', "upsample"),
    ("face", '{"landmarks": 68}', "landmarks"),
    ("face", '{"colour": true}', "colour"),
    ("detect", '{"min_confidence": 2}', "min_confidence"),
    ("detect", '{"min_confidence": "0.5"}', "min_confidence"),
    ("detect", '{"classes": ["unicorn"]}', "classes"),
    ("detect", '{"classes": []}', "classes"),
    ("classify", '{"top_k": 0}', "top_k"),
    ("classify", '{"top_k": true}', "top_k"),
    ("classify", '[1, 2]', "object"),
])
def test_invalid_options(client: FlaskClient, idle_redis_url: str, task: str, options: str,
                         words: str) -> None:
    response = _submit(client, task, options=options)
    assert response.status_code == 400
    body = response.get_json()
    assert body["code"] == "invalid_options" and words in body["error"]
    assert redis.Redis.from_url(idle_redis_url).llen(task) == 0


def test_stats_board(client: FlaskClient, idle_redis_url: str) -> None:
    for _ in range(2):
        _submit(client, "classify")
    job_id = _submit(client, "face").get_json()["id"]
    client.delete(f"/v1/jobs/{job_id}")
    stats = client.get("/v1/stats").get_json()
    assert stats["queues"]["classify"]["length"] == 2
    assert stats["queues"]["face"]["failed"] == 1
    assert stats["queues"]["detect"] == {"length": 0, "running": 0, "succeeded": 0, "failed": 0,
                                         "workers": 0, "max_backlog": 1000}
