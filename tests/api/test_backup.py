"""/v1/backup and /v1/restore: the known faces as one versioned file, round trip, and a
corrupt file that changes nothing (DeepStack server.go ``backup``/``restore`` behind
``CheckAdminKey``; ``restore`` reads the multipart field ``file``)."""

from __future__ import annotations

import io
import json
import subprocess

import pytest
import redis
from flask.testing import FlaskClient

from tests.api.conftest import AppFactory, face, files
from visionq.faces_registry import REGISTRY_KEY

ADMIN = {"api_keys": "user-key", "admin_keys": "admin-key"}
AS_ADMIN = {"X-API-Key": "admin-key"}


def _encoding(seed: float) -> list[float]:
    return [round(seed + i / 1000, 6) for i in range(128)]


def _restore(client: FlaskClient, raw: bytes, **headers: str) -> tuple[int, dict]:
    response = client.post("/v1/restore", headers=headers or AS_ADMIN,
                           data={"file": (io.BytesIO(raw), "backup.json")})
    return response.status_code, response.get_json()


@pytest.fixture()
def admin_client(redis_url: str, make_client: AppFactory, clean_faces: None) -> FlaskClient:
    return make_client(redis_url, **ADMIN)


def test_round_trip_through_a_real_face_worker(face_worker: subprocess.Popen, redis_url: str,
                                               admin_client: FlaskClient) -> None:
    client = admin_client
    for userid, image in (("obama", "obama.jpg"), ("biden", "biden.jpg")):
        response = client.post("/v1/vision/face/register", headers=AS_ADMIN,
                               data=files(userid=userid, image=face(image)))
        assert response.status_code == 200, response.get_json()
    backup = client.post("/v1/backup", headers=AS_ADMIN)
    assert backup.status_code == 200
    assert "attachment" in backup.headers["Content-Disposition"]
    document = json.loads(backup.data)
    assert document["format"] == "visionq-faces" and document["version"] == 1
    assert sorted(document["faces"]) == ["biden", "obama"]
    assert all(len(e) == 128 for encodings in document["faces"].values() for e in encodings)

    redis.Redis.from_url(redis_url).delete(REGISTRY_KEY)  # the registry is lost
    assert client.post("/v1/vision/face/list", headers=AS_ADMIN).get_json()["faces"] == []
    status, body = _restore(client, backup.data)
    assert status == 200 and body == {"success": True, "users": 2, "encodings": 2}
    recognized = client.post("/v1/vision/face/recognize", headers=AS_ADMIN,
                             data=files(image=face("obama2.jpg"))).get_json()
    assert [p["userid"] for p in recognized["predictions"]] == ["obama"]
    again = client.get("/v1/backup", headers=AS_ADMIN)
    assert json.loads(again.data)["faces"] == document["faces"]


def test_restore_replaces_the_whole_registry(admin_client: FlaskClient) -> None:
    client = admin_client
    first = {"format": "visionq-faces", "version": 1, "encoding_size": 128,
             "faces": {"a": [_encoding(0.1)], "b": [_encoding(0.2), _encoding(0.3)]}}
    assert _restore(client, json.dumps(first).encode())[0] == 200
    second = {**first, "faces": {"c": [_encoding(0.4)]}}
    response = client.post("/v1/restore", headers=AS_ADMIN, json=second)  # raw JSON body
    assert response.status_code == 200
    assert client.post("/v1/vision/face/list", headers=AS_ADMIN).get_json()["faces"] == ["c"]


GOOD = {"format": "visionq-faces", "version": 1, "encoding_size": 128,
        "faces": {"ok": [_encoding(0.5)]}}


@pytest.mark.parametrize(("raw", "code"), [
    (b"", "invalid_backup"),
    (b"PK\x03\x04 a DeepStack zip", "invalid_backup"),
    (b"\xff\xfe not utf-8", "invalid_backup"),
    (json.dumps([1, 2]).encode(), "invalid_backup"),
    (json.dumps({**GOOD, "format": "other"}).encode(), "invalid_backup"),
    (json.dumps({**GOOD, "version": 2}).encode(), "unsupported_backup_version"),
    (json.dumps({**GOOD, "encoding_size": 64}).encode(), "invalid_backup"),
    (json.dumps({**GOOD, "faces": []}).encode(), "invalid_backup"),
    (json.dumps({**GOOD, "faces": {"ok": [_encoding(0.5)], "bad": [[1.0] * 127]}}).encode(),
     "invalid_backup"),
    (json.dumps({**GOOD, "faces": {"ok": [_encoding(0.5)], "bad": [["x"] * 128]}}).encode(),
     "invalid_backup"),
    (json.dumps({**GOOD, "faces": {"ok": [_encoding(0.5)], "nan": [[1e999] * 128]}}).encode(),
     "invalid_backup"),
    (json.dumps({**GOOD, "faces": {"ok": [_encoding(0.5)], "none": []}}).encode(),
     "invalid_backup"),
    (json.dumps({**GOOD, "faces": {" ": [_encoding(0.5)]}}).encode(), "invalid_backup"),
    (json.dumps(GOOD).encode()[:-5], "invalid_backup"),
])
def test_corrupt_backup_is_400_and_changes_nothing(admin_client: FlaskClient, redis_url: str,
                                                   raw: bytes, code: str) -> None:
    client = admin_client
    assert _restore(client, json.dumps({**GOOD, "faces": {"kept": [_encoding(0.9)]}})
                    .encode())[0] == 200
    before = redis.Redis.from_url(redis_url).hgetall(REGISTRY_KEY)
    status, body = _restore(client, raw)
    assert status == 400 and body["success"] is False and body["code"] == code, body
    assert redis.Redis.from_url(redis_url).hgetall(REGISTRY_KEY) == before


def test_backup_and_restore_need_the_admin_key(admin_client: FlaskClient) -> None:
    """DeepStack: ``v1.POST("/backup", CheckAdminKey...)`` and the same for restore."""
    client = admin_client
    user = {"X-API-Key": "user-key"}
    assert client.post("/v1/backup", headers=user).status_code == 403
    assert _restore(client, json.dumps(GOOD).encode(), **user)[0] == 403
    assert client.post("/v1/backup").status_code == 401
    missing = client.post("/v1/restore", headers=AS_ADMIN, data={"other": "x"})
    assert missing.status_code == 400 and missing.get_json()["code"] == "missing_file"
