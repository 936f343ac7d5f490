"""Issue 30, items 1-3: the attacks on roles, origins, hosts and tenants, each as sent in
the issue against the default (keyless) app or one with two API keys and no admin key."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
import redis
from flask.testing import FlaskClient

from api.security import SECRET_EXTENSION
from tests.api.conftest import AppFactory, face, files
from visionq.faces_registry import REGISTRY_KEY, FaceRegistry

OBAMA = face("obama_small.jpg")
EMPTY_BACKUP = json.dumps({"format": "visionq-faces", "version": 1, "encoding_size": 128,
                           "faces": {}}).encode()
ENCODING = [0.01 * i for i in range(128)]


@pytest.fixture()
def registry(idle_redis_url: str) -> FaceRegistry:
    conn = redis.Redis.from_url(idle_redis_url)
    conn.delete(REGISTRY_KEY)
    faces = FaceRegistry(conn)
    faces.add("alice", [ENCODING])
    return faces


def test_cross_origin_restore_deletes_nothing(idle_redis_url: str, make_client: AppFactory,
                                              registry: FaceRegistry) -> None:
    """Row 1: what ``fetch(url, {method: "POST", mode: "no-cors", body})`` sends from a page
    on another site, to a keyless stack."""
    client = make_client(idle_redis_url)
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Origin": "null"}):
        response = client.post("/v1/restore", headers=headers, data={
            "file": (io.BytesIO(EMPTY_BACKUP), "backup.json")})
        assert response.status_code == 403, headers
        assert response.get_json()["code"] == "cross_origin_refused"
    assert registry.users() == ["alice"]
    # Without a browser's headers it is still no admin's call on a keyless stack.
    plain = client.post("/v1/restore", json=json.loads(EMPTY_BACKUP))
    assert plain.status_code == 403 and plain.get_json()["code"] == "admin_key_required"
    assert "VISIONQ_ADMIN_KEYS" in plain.get_json()["error"]
    assert registry.users() == ["alice"]


def test_cross_origin_writes_of_every_kind_are_refused(idle_redis_url: str,
                                                       make_client: AppFactory) -> None:
    client = make_client(idle_redis_url)
    conn = redis.Redis.from_url(idle_redis_url)
    evil = {"Origin": "http://evil.example:8000"}
    for path in ("/v1/jobs?task=face", "/v1/vision/face/register", "/v1/vision/detection"):
        response = client.post(path, headers=evil, data=files(image=OBAMA, userid="mallory"))
        assert response.status_code == 403, path
        assert response.get_json()["code"] == "cross_origin_refused"
    assert client.get("/v1/jobs", headers=evil).status_code == 403  # reads too
    assert conn.llen("face") == conn.llen("detect") == 0
    # The service's own pages, and a listed origin, are served.
    own = client.post("/v1/jobs?task=face", data=files(image=OBAMA),
                      headers={"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"})
    assert own.status_code == 202
    assert client.get("/", headers=evil).status_code == 200  # a link to the UI is harmless
    listed = make_client(idle_redis_url, cors_origins="https://app.example.com")
    allowed = listed.get("/v1/jobs", headers={"Origin": "https://app.example.com"})
    assert allowed.status_code == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    preflight = listed.options("/v1/jobs", headers={
        "Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"})
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Origin" not in listed.get("/", headers=evil).headers


def test_rebound_host_is_refused(idle_redis_url: str, make_client: AppFactory,
                                 registry: FaceRegistry) -> None:
    """Row 2: DNS rebinding, ``GET /v1/backup`` with ``Host: rebind.example:8000``."""
    client = make_client(idle_redis_url, admin_keys="admin-key")
    for path in ("/v1/backup", "/v1/jobs", "/healthz"):
        response = client.get(path, headers={"Host": "rebind.example:8000",
                                             "X-API-Key": "admin-key"})
        assert response.status_code == 421, path
        assert response.get_json()["code"] == "host_not_allowed"
    for host in ("127.0.0.1:8000", "[::1]:8000", "localhost", "visionq:8000",
                 "nas.local", "visionq.home.arpa", "api.visionq.svc.cluster.local"):
        assert client.get("/v1/backup", headers={"Host": host, "X-API-Key": "admin-key"}
                          ).status_code == 200, host
    configured = make_client(idle_redis_url, allowed_hosts=".example.org")
    assert configured.get("/healthz", headers={"Host": "vq.example.org"}).status_code == 200
    assert configured.get("/healthz", headers={"Host": "example.org.evil"}).status_code == 421


@pytest.fixture()
def two_keys(idle_redis_url: str, make_client: AppFactory) -> FlaskClient:
    """Row 3 and 4's stack: ``VISIONQ_API_KEYS=k1,k2``, no admin keys."""
    return make_client(idle_redis_url, api_keys="k1,k2")


def _as(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_key_sees_none_of_another_keys_jobs(two_keys: FlaskClient) -> None:
    """Row 3: k2 reads, lists and exports k1's job."""
    client = two_keys
    mine = client.post("/v1/jobs?task=face", data=files(image=OBAMA), headers=_as("k1"))
    job_id = mine.get_json()["id"]
    assert client.get(f"/v1/jobs/{job_id}", headers=_as("k1")).status_code == 200
    theirs = client.get(f"/v1/jobs/{job_id}", headers=_as("k2"))
    assert theirs.status_code == 404 and theirs.get_json()["code"] == "job_not_found"
    assert client.get(f"/v1/jobs/{job_id}?wait=0.1", headers=_as("k2")).status_code == 404
    assert client.delete(f"/v1/jobs/{job_id}", headers=_as("k2")).status_code == 404
    for query in ("", "?status=queued", "?task=face", "?source=live"):
        listed = client.get(f"/v1/jobs{query}", headers=_as("k2")).get_json()["jobs"]
        assert job_id not in [job["id"] for job in listed], query
    own = client.get("/v1/jobs?status=queued", headers=_as("k1")).get_json()["jobs"]
    assert [job["id"] for job in own] == [job_id]
    submitter = own[0]["submitter"]
    assert client.get(f"/v1/jobs?key={submitter}", headers=_as("k2")).get_json()["jobs"] == []
    exported = client.get("/v1/jobs/export", headers=_as("k2"))
    assert exported.status_code == 200 and job_id not in exported.get_data(as_text=True)


def test_an_api_key_is_not_an_admin_key(two_keys: FlaskClient, registry: FaceRegistry) -> None:
    """Row 4: k1 ``GET /v1/backup`` while ``VISIONQ_ADMIN_KEYS`` is empty."""
    for method in ("get", "post"):
        response = getattr(two_keys, method)("/v1/backup", headers=_as("k1"))
        assert response.status_code == 403
        assert response.get_json()["code"] == "admin_key_required"
        assert json.dumps(ENCODING[:3])[1:-1] not in response.get_data(as_text=True)


def test_deepstack_face_calls_need_no_key_on_an_open_stack(idle_redis_url: str,
                                                           make_client: AppFactory,
                                                           registry: FaceRegistry) -> None:
    client = make_client(idle_redis_url)
    listed = client.post("/v1/vision/face/list")
    assert listed.status_code == 200 and listed.get_json()["faces"] == ["alice"]
    deleted = client.post("/v1/vision/face/delete", data={"userid": "alice"})
    assert deleted.status_code == 200 and registry.users() == []


def test_key_names_are_keyed_by_a_server_secret(idle_redis_url: str, make_client: AppFactory,
                                                tmp_path: Path) -> None:
    """Code read: the submitter was ``sha256(key)[:16]``, so a weak key could be guessed
    offline from an export.  Now an HMAC with a secret kept in the state dir (or set)."""
    state = tmp_path / "state"

    def submitter(**settings: str) -> str:
        client = make_client(idle_redis_url, api_keys="k1", admin_keys="boss", **settings)
        job_id = client.post("/v1/jobs?task=face", data=files(image=OBAMA),
                             headers=_as("k1")).get_json()["id"]
        return client.get(f"/v1/jobs/{job_id}", headers=_as("boss")).get_json()["submitter"]

    first = submitter(state_dir=str(state))
    assert first != "key:" + hashlib.sha256(b"k1").hexdigest()[:16]
    assert (state / "secret_key").stat().st_mode & 0o077 == 0
    assert submitter(state_dir=str(state)) == first  # stable across restarts
    assert submitter(state_dir=str(tmp_path / "elsewhere")) != first
    configured = submitter(state_dir=str(tmp_path / "a"), secret_key="s" * 32)
    assert configured == submitter(state_dir=str(tmp_path / "b"), secret_key="s" * 32)
    assert configured != first


def test_secret_key_too_short_is_refused(idle_redis_url: str, make_client: AppFactory) -> None:
    with pytest.raises(ValueError, match="at least 16"):
        make_client(idle_redis_url, secret_key="short")


def test_app_uses_its_own_secret(idle_redis_url: str, make_client: AppFactory,
                                 tmp_path: Path) -> None:
    client = make_client(idle_redis_url, state_dir=str(tmp_path))
    assert client.application.extensions[SECRET_EXTENSION] == (tmp_path / "secret_key").read_text(
        ).strip().encode()


def test_an_open_api_off_loopback_warns_once(idle_redis_url: str, make_client: AppFactory,
                                             caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="visionq.api"):
        make_client(idle_redis_url, api_host="0.0.0.0")
    warnings = [r.getMessage() for r in caplog.records if "no API keys" in r.getMessage()]
    assert len(warnings) == 1 and "VISIONQ_API_KEYS" in warnings[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="visionq.api"):
        make_client(idle_redis_url, api_host="0.0.0.0", api_keys="k1")
        make_client(idle_redis_url)  # loopback
    assert not [r for r in caplog.records if "no API keys" in r.getMessage()]
