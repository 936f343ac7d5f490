"""The history through the API: a job whose Redis record expired is still read by id,
listed (after the jobs still in Redis, with status/task/key/time filters and cursor pages)
and exported as CSV and JSON lines; and one job run by a real worker lands in the history
with its model version and submitter."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from api.security import SECRET_EXTENSION, fingerprint
from tests.api.conftest import AppFactory, face, files
from visionq.history import HistoryStore
from visionq.jobs import JobStore

DEADLINE_S = 120
OBAMA = face("obama_small.jpg")
KEY_A, KEY_B, ADMIN = "key-alpha", "key-bravo", "key-admin"


def who(client: FlaskClient, key: str) -> str:
    return fingerprint(client.application.extensions[SECRET_EXTENSION], key)


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture()
def history_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'history.sqlite3'}"


@pytest.fixture()
def client(idle_redis_url: str, make_client: AppFactory, history_url: str) -> FlaskClient:
    return make_client(idle_redis_url, history_url=history_url, history_writer=True,
                       api_keys=f"{KEY_A},{KEY_B}", admin_keys=ADMIN)


def submit(client: FlaskClient, key: str, n: int, task: str = "classify") -> list[str]:
    response = client.post(f"/v1/jobs/batch?task={task}",
                           data=files(**{f"f{i}": OBAMA for i in range(n)}), headers=auth(key))
    assert response.status_code == 202, response.get_json()
    return [job["id"] for job in response.get_json()["jobs"]]


def work(redis_url: str, ids: list[str], fail: bool = False) -> None:
    """What a worker does to a job (without running a model)."""
    jobs = JobStore(redis.Redis.from_url(redis_url), ttl_s=60)
    for job_id in ids:
        jobs.begin(job_id, "w1")
        if fail:
            jobs.fail(job_id, "inference_error", "boom")
        else:
            jobs.succeed(job_id, {"model": "m", "model_version": "v9", "labels": []})


def expire(redis_url: str, ids: list[str]) -> None:
    """As if VISIONQ_RESULT_TTL_S had passed."""
    redis.Redis.from_url(redis_url).delete(*[JobStore.key(job_id) for job_id in ids])


def in_history(url: str, ids: list[str]) -> bool:
    store = HistoryStore(url)
    try:
        return all(store.get(job_id) is not None for job_id in ids)
    finally:
        store.dispose()


def test_expired_jobs_are_read_listed_and_exported(client: FlaskClient, idle_redis_url: str,
                                                   history_url: str) -> None:
    a_ok = submit(client, KEY_A, 3)
    time.sleep(0.01)  # distinct queued_at per batch
    b_failed = submit(client, KEY_B, 2, task="detect")
    time.sleep(0.01)
    live = submit(client, KEY_A, 1)  # still queued, still in Redis
    work(idle_redis_url, a_ok)
    work(idle_redis_url, b_failed, fail=True)
    finished = a_ok + b_failed
    wait_for(lambda: in_history(history_url, finished), "the history writer")
    expire(idle_redis_url, finished)

    one = client.get(f"/v1/jobs/{a_ok[0]}", headers=auth(ADMIN))
    assert one.status_code == 200
    body = one.get_json()
    assert body["status"] == "succeeded" and body["result"]["model_version"] == "v9"
    assert body["timings"]["total_ms"] is not None
    assert client.get(f"/v1/jobs/{b_failed[0]}?wait=1", headers=auth(KEY_B)).get_json()[
        "code"] == "inference_error"
    assert client.get("/v1/jobs/nope", headers=auth(KEY_A)).status_code == 404
    # tenants: another key's job is not found, from the history as from Redis
    assert client.get(f"/v1/jobs/{b_failed[0]}", headers=auth(KEY_A)).status_code == 404
    assert client.get(f"/v1/jobs/{live[0]}", headers=auth(KEY_B)).status_code == 404
    own = client.get("/v1/jobs?limit=100", headers=auth(KEY_A)).get_json()["jobs"]
    assert {job["id"] for job in own} == set(live + a_ok)
    assert client.get(f"/v1/jobs?key={who(client, KEY_B)}",
                      headers=auth(KEY_A)).get_json()["jobs"] == []

    # auto: the live job first, then the history's, newest first
    listed = client.get("/v1/jobs?limit=100", headers=auth(ADMIN)).get_json()
    assert [job["id"] for job in listed["jobs"]][0] == live[0]
    assert set(job["id"] for job in listed["jobs"]) == set(live + finished)
    assert listed["next"] is None

    def ids(query: str) -> set[str]:
        response = client.get(f"/v1/jobs?{query}", headers=auth(ADMIN))
        assert response.status_code == 200, response.get_json()
        return {job["id"] for job in response.get_json()["jobs"]}

    assert ids("status=failed") == set(b_failed)
    assert ids("task=classify") == set(live + a_ok)
    assert ids(f"key={who(client, KEY_B)}") == set(b_failed)
    assert ids("source=history") == set(finished)
    assert ids("source=live") == set(live)
    assert ids("status=queued&source=history") == set()
    assert ids("since=2000-01-01T00:00:00&until=2000-01-02") == set()
    assert ids(f"since={time.time() - 3600}") == set(finished)

    # pages: 2 per page, through the cursor in `next`
    seen: list[str] = []
    url = "/v1/jobs?limit=2&source=history"
    while url:
        page = client.get(url.replace("http://localhost", ""), headers=auth(ADMIN)).get_json()
        seen += [job["id"] for job in page["jobs"]]
        url = page["next"]
    assert sorted(seen) == sorted(finished) and len(seen) == len(set(seen))
    # auto mode pages from Redis into the history
    seen = []
    url = "/v1/jobs?limit=2"
    while url:
        page = client.get(url.replace("http://localhost", ""), headers=auth(ADMIN)).get_json()
        seen += [job["id"] for job in page["jobs"]]
        url = page["next"]
    assert sorted(seen) == sorted(live + finished) and len(seen) == len(set(seen))

    for bad in ("since=yesterday", "cursor=nonsense", "source=elsewhere", "until=nan"):
        response = client.get(f"/v1/jobs?{bad}", headers=auth(KEY_A))
        assert response.status_code == 400, bad

    exported = client.get("/v1/jobs/export?format=csv", headers=auth(ADMIN))
    assert exported.status_code == 200 and exported.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert sorted(row["id"] for row in rows) == sorted(finished)
    by_id = {row["id"]: row for row in rows}
    assert by_id[a_ok[0]]["model_version"] == "v9"
    assert by_id[a_ok[0]]["submitter"] == who(client, KEY_A)
    assert by_id[b_failed[0]]["code"] == "inference_error"
    lines = client.get("/v1/jobs/export?format=jsonl&status=failed",
                       headers=auth(ADMIN)).get_data(as_text=True).splitlines()
    assert sorted(json.loads(line)["id"] for line in lines) == sorted(b_failed)
    mine = client.get("/v1/jobs/export?format=jsonl", headers=auth(KEY_B)).get_data(
        as_text=True).splitlines()
    assert sorted(json.loads(line)["id"] for line in mine) == sorted(b_failed)
    assert client.get("/v1/jobs/export?format=xml", headers=auth(KEY_A)).status_code == 400
    assert client.get("/v1/jobs/export").status_code == 401


def test_history_down_is_a_503_not_a_500(idle_redis_url: str, make_client: AppFactory) -> None:
    client = make_client(idle_redis_url,
                         history_url="postgresql://nobody@127.0.0.1:9/none?connect_timeout=2")
    assert client.get("/v1/jobs/unknown").status_code == 503
    assert client.get("/v1/jobs?source=history").status_code == 503
    assert client.get("/v1/jobs/export").status_code == 503
    assert client.get("/v1/jobs").status_code == 200  # the live jobs still answer


def test_a_real_job_lands_in_the_history(redis_url: str, classify_worker: subprocess.Popen,
                                         make_client: AppFactory, history_url: str) -> None:
    client = make_client(redis_url, history_url=history_url, history_writer=True)
    response = client.post("/v1/jobs?task=classify", data=files(image=OBAMA))
    assert response.status_code == 202
    job_id = response.get_json()["id"]
    wait_for(lambda: in_history(history_url, [job_id]), "the job in the history")
    store = HistoryStore(history_url)
    job = store.get(job_id)
    store.dispose()
    assert job is not None and job.status == "succeeded"
    assert job.submitter is not None and job.submitter.startswith("ip:")
    assert job.result["model_version"]
