"""DeepStack's face endpoints take an extra ``face_detector`` form field (``yunet``, ``hog``
or ``cnn``), bounded before anything is queued; a live face worker answers with that
detector's boxes (HOG: face_recognition's own, the default YuNet: within IoU 0.5)."""

from __future__ import annotations

import json
import subprocess

import pytest
import redis
from flask.testing import FlaskClient

from tests.api.conftest import AppFactory, face, files
from tests.conftest import FIXTURES
from tests.helpers import iou

EXPECTED = json.loads((FIXTURES / "faces" / "expected.json").read_text())["images"]
ENDPOINTS = ["/v1/vision/face", "/v1/vision/face/recognize", "/v1/vision/face/register",
             "/v1/vision/face/match"]
BOX_KEYS = ("x_min", "y_min", "x_max", "y_max")


def _form(endpoint: str, detector: str) -> dict:
    if endpoint.endswith("/match"):
        return files(image1=face("obama.jpg"), image2=face("obama2.jpg"),
                     face_detector=detector)
    return files(image=face("obama_small.jpg"), userid="someone", face_detector=detector)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("detector", ["dlib", "HOG", "yunet2", "x" * 5000])
def test_unknown_detector_is_400_before_queueing(idle_redis_url: str, make_client: AppFactory,
                                                 endpoint: str, detector: str) -> None:
    response = make_client(idle_redis_url).post(endpoint, data=_form(endpoint, detector))
    assert response.status_code == 400
    body = response.get_json()
    assert body["success"] is False and body["code"] == "invalid_options"
    assert "face_detector" in body["error"] and len(body["error"]) < 200
    assert redis.Redis.from_url(idle_redis_url).llen("face") == 0


@pytest.fixture()
def client(face_worker: subprocess.Popen, redis_url: str, make_client: AppFactory,
           clean_faces: None) -> FlaskClient:
    return make_client(redis_url)


def _boxes(client: FlaskClient, name: str, **form: str) -> list[tuple[int, ...]]:
    response = client.post("/v1/vision/face", data=files(image=face(name), **form))
    assert response.status_code == 200, response.get_json()
    return [tuple(p[key] for key in BOX_KEYS) for p in response.get_json()["predictions"]]


@pytest.mark.parametrize("name", ["obama_small.jpg", "obama-240p.jpg"])
def test_each_detector_through_the_endpoint(client: FlaskClient, name: str) -> None:
    """Small photos are scanned at face_recognition's scale: ``hog`` gives its boxes
    (expected.json, +-2 px), the default (YuNet) the same faces within IoU 0.5."""
    expected = [(left, top, right, bottom)
                for top, right, bottom, left in (f["box_trbl"] for f in EXPECTED[name]["faces"])]
    hog = _boxes(client, name, face_detector="hog")
    assert len(hog) == len(expected)
    for box in expected:
        assert min(max(abs(a - b) for a, b in zip(box, other, strict=True))
                   for other in hog) <= 2, (hog, expected)
    default = _boxes(client, name)
    assert default != hog  # another detector ran
    assert _boxes(client, name, face_detector="yunet") == default
    assert len(default) == len(expected)
    for box in expected:
        assert max(iou(box, other) for other in default) >= 0.5, (default, expected)


def test_openapi_documents_the_field(idle_redis_url: str, make_client: AppFactory) -> None:
    paths = make_client(idle_redis_url).get("/openapi.json").get_json()["paths"]
    for endpoint in ENDPOINTS:
        schema = paths[endpoint]["post"]["requestBody"]["content"]["multipart/form-data"][
            "schema"]
        assert schema["properties"]["face_detector"]["enum"] == ["yunet", "hog", "cnn"]
