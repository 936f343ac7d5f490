"""API keys (three ways to send one, constant-time compare), admin-only routes, the
per-key rate limit, backpressure, upload limits on the DeepStack endpoints, and the
refusal to bind off-loopback without keys."""

from __future__ import annotations

import pytest
import redis
from click.testing import CliRunner
from flask.testing import FlaskClient

from launcher.up import bind_refusal
from tests.api.conftest import AppFactory, face, files
from tests.conftest import FIXTURES
from visionq.cli import main
from visionq.settings import Settings

OBAMA = face("obama_small.jpg")
KEYS = {"api_keys": "user-key,other-key", "admin_keys": "admin-key"}


@pytest.fixture()
def keyed(idle_redis_url: str, make_client: AppFactory) -> FlaskClient:
    return make_client(idle_redis_url, **KEYS)


def _submit(client: FlaskClient, headers: dict | None = None, **form: str):
    return client.post("/v1/jobs?task=face", data=files(image=OBAMA, **form),
                       headers=headers or {})


@pytest.mark.parametrize(("headers", "form", "status", "code"), [
    ({}, {}, 401, "missing_api_key"),
    ({"Authorization": "Bearer wrong"}, {}, 401, "invalid_api_key"),
    ({"X-API-Key": "user-ke"}, {}, 401, "invalid_api_key"),
    ({"Authorization": "Basic dXNlci1rZXk6"}, {}, 401, "missing_api_key"),
    ({}, {"api_key": "nope"}, 401, "invalid_api_key"),
    ({"Authorization": "Bearer user-key"}, {}, 202, None),
    ({"Authorization": "bearer other-key"}, {}, 202, None),
    ({"X-API-Key": "user-key"}, {}, 202, None),
    ({}, {"api_key": "user-key"}, 202, None),
    ({"X-API-Key": "admin-key"}, {}, 202, None),
])
def test_key_matrix(keyed: FlaskClient, headers: dict, form: dict, status: int,
                    code: str | None) -> None:
    response = _submit(keyed, headers, **form)
    assert response.status_code == status
    if code:
        assert response.get_json() == {"success": False, "code": code,
                                       "error": response.get_json()["error"]}
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_every_api_route_needs_a_key_public_ones_do_not(keyed: FlaskClient) -> None:
    for method, path in [("get", "/v1/jobs"), ("get", "/v1/jobs/x"), ("delete", "/v1/jobs/x"),
                         ("post", "/v1/jobs/batch"), ("get", "/v1/stats"),
                         ("post", "/v1/vision/face"), ("post", "/v1/vision/detection"),
                         ("post", "/v1/vision/face/list"), ("post", "/v1/vision/scene")]:
        assert getattr(keyed, method)(path).status_code == 401, path
    for path in ("/", "/healthz", "/openapi.json", "/docs", "/static/app.js"):
        assert keyed.get(path).status_code == 200, path


@pytest.mark.parametrize(("method", "path", "data"), [
    ("post", "/v1/restore", {"userid": "x"}),
    ("post", "/v1/backup", None),
    ("post", "/v1/vision/addmodel", {"name": "x"}),
    ("post", "/v1/vision/deletemodel", {"name": "x"}),
])
def test_admin_only_routes(keyed: FlaskClient, method: str, path: str, data: dict | None) -> None:
    call = getattr(keyed, method)
    user = call(path, data=data, headers={"X-API-Key": "user-key"})
    assert user.status_code == 403 and user.get_json()["code"] == "admin_key_required"
    assert "VISIONQ_ADMIN_KEYS" in user.get_json()["error"]
    admin = call(path, data=data, headers={"X-API-Key": "admin-key"})
    assert admin.status_code != 403  # past auth (the request itself may be incomplete)


def test_revoke_own_job_or_with_admin_key(keyed: FlaskClient) -> None:
    first = _submit(keyed, {"X-API-Key": "user-key"}).get_json()["id"]
    second = _submit(keyed, {"X-API-Key": "user-key"}).get_json()["id"]
    assert keyed.delete(f"/v1/jobs/{first}", headers={"X-API-Key": "user-key"}).status_code == 200
    assert keyed.delete(f"/v1/jobs/{second}",
                        headers={"X-API-Key": "other-key"}).status_code == 404  # not its job
    assert keyed.delete(f"/v1/jobs/{second}",
                        headers={"Authorization": "Bearer admin-key"}).status_code == 200
    assert keyed.delete("/v1/jobs/unknown", headers={"X-API-Key": "admin-key"}).status_code == 404


def test_api_keys_without_admin_keys_make_no_admin(idle_redis_url: str,
                                                   make_client: AppFactory) -> None:
    client = make_client(idle_redis_url, api_keys="only")
    response = client.get("/v1/backup", headers={"X-API-Key": "only"})
    assert response.status_code == 403 and response.get_json()["code"] == "admin_key_required"


def test_open_without_keys(idle_redis_url: str, make_client: AppFactory) -> None:
    client = make_client(idle_redis_url)
    job_id = _submit(client).get_json()["id"]
    assert client.delete("/v1/jobs/unknown").status_code == 404
    assert client.get(f"/v1/jobs/{job_id}").status_code == 200
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 200  # its own (same address)
    assert client.post("/v1/restore", json={}).get_json()["code"] == "admin_key_required"


def test_rate_limit_per_key(idle_redis_url: str, make_client: AppFactory) -> None:
    client = make_client(idle_redis_url, rate_limit=3, rate_window_s=60, **KEYS)
    statuses = [_submit(client, {"X-API-Key": "user-key"}).status_code for _ in range(4)]
    assert statuses == [202, 202, 202, 429]
    limited = _submit(client, {"X-API-Key": "user-key"})
    assert limited.get_json()["code"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    # Another key has its own budget; a wrong key is 401 before it can spend anyone's.
    assert _submit(client, {"X-API-Key": "other-key"}).status_code == 202
    assert redis.Redis.from_url(idle_redis_url).llen("face") == 4


def test_backpressure(idle_redis_url: str, make_client: AppFactory) -> None:
    client = make_client(idle_redis_url, max_backlog_face=2)
    assert [_submit(client).status_code for _ in range(3)] == [202, 202, 503]
    full = _submit(client)
    assert full.get_json()["code"] == "queue_full" and int(full.headers["Retry-After"]) > 0
    other = client.post("/v1/jobs?task=classify", data=files(image=OBAMA))
    assert other.status_code == 202  # only the full queue pushes back
    sync = client.post("/v1/vision/face", data=files(image=OBAMA))
    assert sync.status_code == 503 and sync.headers["Retry-After"]
    batch = make_client(idle_redis_url, max_backlog_classify=2).post(
        "/v1/jobs/batch?task=classify", data=files(a=OBAMA, b=OBAMA))
    assert batch.status_code == 503  # 1 queued + 2 new > 2
    assert redis.Redis.from_url(idle_redis_url).llen("face") == 2


@pytest.mark.parametrize(("overrides", "data", "status", "code"), [
    ({"max_bytes": 1000}, OBAMA, 413, "payload_too_large"),
    ({"max_pixels": 10_000}, OBAMA, 413, "image_too_large"),
    ({}, (FIXTURES / "bad" / "bomb_30000x30000.png").read_bytes(), 413, "image_too_large"),
    ({}, b"GIF89a" + b"\0" * 10, 400, "not_an_image"),
])
def test_limits_on_deepstack_endpoints(idle_redis_url: str, make_client: AppFactory,
                                       overrides: dict, data: bytes, status: int,
                                       code: str) -> None:
    client = make_client(idle_redis_url, **overrides)
    response = client.post("/v1/vision/detection", data=files(image=data))
    assert response.status_code == status
    assert response.get_json()["code"] == code and response.get_json()["success"] is False


def test_unsupported_format_is_415(idle_redis_url: str, make_client: AppFactory) -> None:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "ICO")
    client = make_client(idle_redis_url)
    for path in ("/v1/vision/face", "/v1/jobs?task=face"):
        response = client.post(path, data=files(image=buffer.getvalue()))
        assert response.status_code == 415 and response.get_json()["code"] == "unsupported_format"


@pytest.mark.parametrize(("host", "keys", "insecure", "refused"), [
    ("127.0.0.1", "", False, False),
    ("::1", "", False, False),
    ("localhost", "", False, False),
    ("0.0.0.0", "", False, True),
    ("192.168.1.5", "", False, True),
    ("0.0.0.0", "k", False, False),
    ("0.0.0.0", "", True, False),
])
def test_bind_refusal(host: str, keys: str, insecure: bool, refused: bool) -> None:
    settings = Settings(api_host=host, api_keys=keys)
    assert (bind_refusal(settings, insecure) is not None) == refused


def test_cli_up_refuses_open_bind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VISIONQ_API_KEYS", raising=False)
    monkeypatch.delenv("VISIONQ_ADMIN_KEYS", raising=False)
    result = CliRunner().invoke(main, ["up", "--host", "0.0.0.0", "--no-flower"])
    assert result.exit_code == 2
    assert "refusing to bind" in result.output and "--insecure" in result.output
