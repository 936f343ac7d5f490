"""Real DeepStack clients, unmodified, against a live stack: gunicorn API + real face and
detect workers on Redis.

- ``deepstack-python`` 0.9 (``deepstack.core``): what Home Assistant's deepstack object and
  face integrations use.  It has detect / register / recognize / list (no delete, no match).
- ``deepstack-sdk`` 0.2.1 (``deepstack_sdk``): DeepQuest's own SDK.  Detection and face
  detect / register / recognize / list / delete (no match).
- Frigate's ``deepstack`` detector: a bare ``requests.post`` (no session) with the file
  field ``image`` holding JPEG bytes (no filename extension, no content type) and the form
  field ``api_key``.
- ``face/match`` is in neither library: it is posted the way deepstack-sdk posts (raw
  bytes under arbitrary field names).
"""

from __future__ import annotations

import io
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import deepstack.core as deepstack_core  # deepstack-python (dev dependency group)
import deepstack_sdk  # deepstack-sdk (dev dependency group)
import pytest
import redis
import requests
from PIL import Image

from tests.conftest import FIXTURES, WorkerFactory, start_api
from tests.helpers import stop_process
from visionq.keys import WORKER_KEY_PREFIX

FACES = FIXTURES / "faces"
BUS = FIXTURES / "detect" / "images" / "bus.jpg"
TIMEOUT_S = 120  # the libraries' defaults (10 s, or none) are for an idle server


@pytest.fixture(scope="module")
def detect_worker(start_worker: WorkerFactory, redis_url: str) -> None:
    from tests.api.test_deepstack import _detect_model_ready

    reason = _detect_model_ready()
    if reason:
        pytest.skip(reason)
    if not redis.Redis.from_url(redis_url).exists(f"{WORKER_KEY_PREFIX}detect@testhost"):
        start_worker(redis_url, "detect", "detect")


@pytest.fixture()
def live(api_url: str, face_worker: subprocess.Popen, clean_faces: None) -> tuple[str, int]:
    parsed = urlparse(api_url)
    assert parsed.hostname and parsed.port
    return parsed.hostname, parsed.port


@pytest.fixture(scope="module")
def keyed_api(redis_url: str) -> Iterator[str]:
    """A second live API with keys, as Home Assistant users run DeepStack with API-KEY."""
    url, process = start_api(redis_url, "api-keyed", VISIONQ_API_KEYS="user-key",
                             VISIONQ_ADMIN_KEYS="admin-key")
    yield url
    stop_process(process)


def _bytes(path: Path) -> bytes:
    return path.read_bytes()


# -- deepstack-python ----------------------------------------------------------------------

def test_deepstack_python_faces(live: tuple[str, int]) -> None:
    ip, port = live
    faces = deepstack_core.DeepstackFace(ip=ip, port=port, timeout=TIMEOUT_S)
    [box] = faces.detect(_bytes(FACES / "obama.jpg"))
    assert {"x_min", "y_min", "x_max", "y_max", "confidence"} <= set(box)
    assert faces.register("obama", _bytes(FACES / "obama.jpg")) == "face added"
    assert faces.register("obama", _bytes(FACES / "obama2.jpg")) == "face updated"
    assert faces.register("biden", _bytes(FACES / "biden.jpg")) == "face added"
    assert sorted(faces.get_registered_faces()) == ["biden", "obama"]
    predictions = faces.recognize(_bytes(FACES / "obama_and_biden.jpg"))
    recognized = deepstack_core.get_recognized_faces(predictions)
    assert set(recognized) == {"obama", "biden"}
    assert all(67 <= percent <= 100 for percent in recognized.values())
    with pytest.raises(deepstack_core.DeepstackException, match="status code: 400"):
        faces.register("nobody", _bytes(FACES / "000000000009.jpg"))


def test_deepstack_python_objects(live: tuple[str, int], detect_worker: None) -> None:
    ip, port = live
    objects = deepstack_core.DeepstackObject(ip=ip, port=port, timeout=TIMEOUT_S,
                                             min_confidence=0.45)
    predictions = objects.detect(_bytes(BUS))
    summary = deepstack_core.get_objects_summary(predictions)
    assert {"person", "bus"} <= set(summary) and summary["person"] >= 2
    assert all(p["confidence"] >= 0.45 for p in predictions)


def test_deepstack_python_with_an_api_key(keyed_api: str, face_worker: subprocess.Popen,
                                          clean_faces: None) -> None:
    """Home Assistant's teach-face service: register with the API key only (no admin key)."""
    parsed = urlparse(keyed_api)
    faces = deepstack_core.DeepstackFace(ip=parsed.hostname, port=parsed.port,
                                         api_key="user-key", timeout=TIMEOUT_S)
    assert faces.register("obama", _bytes(FACES / "obama.jpg")) == "face added"
    assert faces.get_registered_faces() == ["obama"]
    wrong = deepstack_core.DeepstackFace(ip=parsed.hostname, port=parsed.port,
                                         api_key="wrong", timeout=TIMEOUT_S)
    with pytest.raises(deepstack_core.DeepstackException, match="401"):
        wrong.detect(_bytes(FACES / "obama.jpg"))


# -- deepstack-sdk -------------------------------------------------------------------------

def _sdk_config(live: tuple[str, int], api_key: str | None = None) -> object:
    ip, port = live
    return deepstack_sdk.ServerConfig(f"http://{ip}:{port}", api_key=api_key)


def test_deepstack_sdk_faces(live: tuple[str, int]) -> None:
    faces = deepstack_sdk.Face(_sdk_config(live))
    detected = faces.detectFace(str(FACES / "two_people.jpg"))
    assert len(detected) == 2 and all(0 < d.confidence <= 1 for d in detected)
    assert faces.registerFace([str(FACES / "obama.jpg"), str(FACES / "obama2.jpg")],
                              "obama") is True
    assert faces.registerFace([_bytes(FACES / "biden.jpg")], "biden") is True
    assert sorted(faces.listFaces().list) == ["biden", "obama"]
    recognized = faces.recognizeFace(str(FACES / "obama3.jpg"), min_confidence=0.7)
    assert [(r.userid, r.confidence >= 0.7) for r in recognized] == [("obama", True)]
    assert faces.deleteFace("biden") is True
    assert faces.deleteFace("never-registered") is True  # DeepStack: 200 either way
    assert list(faces.listFaces().list) == ["obama"]


def test_deepstack_sdk_detection(live: tuple[str, int], detect_worker: None) -> None:
    found = deepstack_sdk.Detection(_sdk_config(live)).detectObject(str(BUS),
                                                                    min_confidence=0.4)
    labels = {d.label for d in found}
    assert {"person", "bus"} <= labels and all(d.confidence >= 0.4 for d in found)


def test_face_match_as_the_sdk_posts(live: tuple[str, int]) -> None:
    ip, port = live
    url = f"http://{ip}:{port}/v1/vision/face/match"
    same = requests.post(url, timeout=TIMEOUT_S, files={
        "image_a": _bytes(FACES / "obama.jpg"), "image_b": _bytes(FACES / "obama2.jpg")})
    assert same.status_code == 200 and same.json()["similarity"] > 0.67
    no_face = requests.post(url, timeout=TIMEOUT_S, files={
        "image1": _bytes(FACES / "obama.jpg"), "image2": _bytes(FACES / "000000000009.jpg")})
    assert no_face.status_code == 200 and no_face.json()["success"] is False


# -- Frigate -------------------------------------------------------------------------------

def test_frigate_request_shape(live: tuple[str, int], detect_worker: None) -> None:
    """Frigate's ``deepstack`` detector (frigate/detectors/plugins/deepstack.py): the model
    input tensor becomes a JPEG in memory, posted with ``files={"image": bytes}`` and
    ``data={"api_key": ...}`` through ``requests.post`` (no session); it reads
    ``predictions[*].label/confidence/x_min...``."""
    ip, port = live
    frame = Image.open(BUS).convert("RGB").resize((320, 320))
    buffer = io.BytesIO()
    frame.save(buffer, format="JPEG")
    request = requests.Request("POST", f"http://{ip}:{port}/v1/vision/detection",
                               data={"api_key": ""}, files={"image": buffer.getvalue()})
    prepared = request.prepare()
    assert b'name="image"; filename="image"\r\n\r\n' in prepared.body  # no type, no .jpg
    response = requests.post(f"http://{ip}:{port}/v1/vision/detection", timeout=TIMEOUT_S,
                             data={"api_key": ""}, files={"image": buffer.getvalue()})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert "person" in {p["label"] for p in predictions}
    for p in predictions:
        assert 0 <= p["x_min"] < p["x_max"] <= 320 and 0 <= p["y_min"] < p["y_max"] <= 320
