"""DeepStack-compatible endpoints against real workers (face, classify; detect when its
model is installed): response shape, sorting, defaults, trailing slashes, the known-faces
registry, and a JSON error with the documented status for every bad input."""

from __future__ import annotations

import json
import subprocess

import pytest
import redis
from flask.testing import FlaskClient

from tests.api.conftest import AppFactory, face, files
from tests.conftest import FIXTURES
from tests.helpers import iou
from visionq.faces_registry import REGISTRY_KEY
from visionq.settings import Settings

EXPECTED = json.loads((FIXTURES / "faces" / "expected.json").read_text())
BAD = FIXTURES / "bad"
CASES = json.loads((BAD / "cases.json").read_text())["cases"]
BOX_KEYS = ("x_min", "y_min", "x_max", "y_max")


def _trbl_to_box(trbl: list[int]) -> dict[str, int]:
    top, right, bottom, left = trbl
    return {"x_min": left, "y_min": top, "x_max": right, "y_max": bottom}


def _assert_deepstack_ok(body: dict) -> None:
    assert body["success"] is True
    assert isinstance(body["duration"], int) and body["duration"] >= 0
    confidences = [p["confidence"] for p in body.get("predictions", [])]
    assert confidences == sorted(confidences, reverse=True)
    for prediction in body.get("predictions", []):
        assert 0 <= prediction["confidence"] <= 1
        for key in BOX_KEYS:
            if key in prediction:
                assert isinstance(prediction[key], int)


@pytest.fixture()
def client(face_worker: subprocess.Popen, classify_worker: subprocess.Popen,
           redis_url: str, make_client: AppFactory, clean_faces: None) -> FlaskClient:
    return make_client(redis_url)


@pytest.mark.parametrize("path", ["/v1/vision/face", "/v1/vision/face/"])
def test_face_detection_shape_and_boxes(client: FlaskClient, path: str) -> None:
    response = client.post(path, data=files(image=face("obama.jpg")))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    _assert_deepstack_ok(body)
    [prediction] = body["predictions"]
    assert 0.4 <= prediction["confidence"] <= 1.0  # the default min_confidence is 0.4
    # Upstream face_recognition's test value; the default decode-scale policy scans this
    # 1 MP photo at a reduced size (workers/plugins/face_scale.py): the same face, its box
    # within one HOG pyramid step (exact boxes: tests/test_end_to_end.py with `upsample`).
    expected = _trbl_to_box([142, 617, 409, 349])
    got = tuple(prediction[key] for key in BOX_KEYS)
    assert iou(got, tuple(expected[key] for key in BOX_KEYS)) >= 0.5, (got, expected)


def test_face_detection_two_people_and_none(client: FlaskClient) -> None:
    two = client.post("/v1/vision/face", data=files(image=face("two_people.jpg"))).get_json()
    assert len(two["predictions"]) == 2
    empty = client.post("/v1/vision/face", data=files(image=(BAD / "tiny_1x1.png").read_bytes()))
    assert empty.status_code == 200 and empty.get_json()["predictions"] == []


def test_register_recognize_list_delete(client: FlaskClient, redis_url: str,
                                        make_client: AppFactory) -> None:
    registered = client.post("/v1/vision/face/register", data=files(
        userid="obama", photo_a=face("obama.jpg"), other_name=face("obama2.jpg")))
    assert registered.status_code == 200, registered.get_json()
    assert registered.get_json()["encodings"] == 2
    assert client.post("/v1/vision/face/register", data=files(
        userid="biden", image=face("biden.jpg"))).status_code == 200
    listed = client.post("/v1/vision/face/list").get_json()
    assert listed["success"] is True and listed["faces"] == ["biden", "obama"]

    found = client.post("/v1/vision/face/recognize", data=files(image=face("obama3.jpg")))
    body = found.get_json()
    _assert_deepstack_ok(body)
    [who] = body["predictions"]
    assert who["userid"] == "obama" and who["confidence"] >= 0.67

    both = client.post("/v1/vision/face/recognize",
                       data=files(image=face("obama_and_biden.jpg"))).get_json()
    # expected.json: a third face belongs to nobody registered
    assert sorted(p["userid"] for p in both["predictions"]) == ["biden", "obama", "unknown"]
    assert both["predictions"][-1] == {**both["predictions"][-1], "userid": "unknown",
                                       "confidence": 0.0}

    # Encodings live in Redis, not in the API process: a new app sees them.
    assert make_client(redis_url).get("/v1/vision/face/list/").get_json()["faces"] == [
        "biden", "obama"]
    stored = json.loads(redis.Redis.from_url(redis_url).hget(REGISTRY_KEY, "obama"))
    assert len(stored) == 2 and len(stored[0]) == 128

    deleted = client.post("/v1/vision/face/delete", data={"userId": "biden"})
    assert deleted.status_code == 200 and deleted.get_json()["success"] is True
    unknown = client.post("/v1/vision/face/recognize", data=files(image=face("biden2.jpg")))
    assert [(p["userid"], p["confidence"]) for p in unknown.get_json()["predictions"]] == [
        ("unknown", 0.0)]
    missing = client.post("/v1/vision/face/delete", data={"userid": "biden"})
    assert missing.status_code == 200  # as DeepStack (test_deepstack_behaviour.py)
    assert missing.get_json()["success"] is True and missing.get_json()["deleted"] is False


def test_recognize_min_confidence_one_makes_everyone_unknown(client: FlaskClient) -> None:
    client.post("/v1/vision/face/register", data=files(userid="obama", image=face("obama.jpg")))
    body = client.post("/v1/vision/face/recognize",
                       data=files(image=face("obama2.jpg"), min_confidence="1")).get_json()
    assert [p["userid"] for p in body["predictions"]] == ["unknown"]


@pytest.mark.parametrize(("form", "status", "code"), [
    ({"image": "tiny", "userid": "x"}, 400, "no_face"),
    ({"image": "obama.jpg"}, 400, "missing_userid"),
    ({"userid": "x"}, 400, "missing_image"),
])
def test_register_errors(client: FlaskClient, form: dict, status: int, code: str) -> None:
    data = dict(form)
    if "image" in data:
        name = data["image"]
        data["image"] = (BAD / "tiny_1x1.png").read_bytes() if name == "tiny" else face(name)
    response = client.post("/v1/vision/face/register", data=files(**data))
    assert response.status_code == status
    body = response.get_json()
    assert body["success"] is False and body["code"] == code and body["error"]
    assert client.post("/v1/vision/face/list").get_json()["faces"] == []


def test_match_similarity(client: FlaskClient) -> None:
    same = client.post("/v1/vision/face/match",
                       data=files(image1=face("obama.jpg"), image2=face("obama2.jpg")))
    other = client.post("/v1/vision/face/match",
                        data=files(image1=face("obama.jpg"), image2=face("biden.jpg")))
    assert same.status_code == other.status_code == 200
    assert same.get_json()["similarity"] > 0.67 > 0.5 > other.get_json()["similarity"] >= 0
    no_face = client.post("/v1/vision/face/match", data=files(
        image1=face("obama.jpg"), image2=(BAD / "tiny_1x1.png").read_bytes()))
    assert no_face.status_code == 200  # as DeepStack (test_deepstack_behaviour.py)
    assert no_face.get_json()["success"] is False and no_face.get_json()["code"] == "no_face"
    missing = client.post("/v1/vision/face/match", data=files(image1=face("obama.jpg")))
    assert missing.status_code == 400 and missing.get_json()["code"] == "missing_image"


def test_classify_top5_sorted(client: FlaskClient) -> None:
    image = (FIXTURES / "classify" / "caffe_cat.jpg").read_bytes()
    response = client.post("/v1/vision/classify/", data=files(image=image))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    _assert_deepstack_ok(body)
    assert len(body["predictions"]) == 5
    assert body["label"] == body["predictions"][0]["label"]
    labels = json.loads((FIXTURES / "classify" / "labels.json").read_text())["images"]
    assert body["label"] in labels["caffe_cat.jpg"]["acceptable_top1"].values()
    three = client.post("/v1/vision/classify", data=files(image=image, top_k="3")).get_json()
    assert len(three["predictions"]) == 3


def test_scene_is_a_clear_json_error(client: FlaskClient) -> None:
    for path in ("/v1/vision/scene", "/v1/vision/scene/"):
        response = client.post(path, data=files(image=face("obama.jpg")))
        assert response.status_code == 501
        body = response.get_json()
        assert body["success"] is False and "Places365" in body["error"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_fixtures_through_deepstack_face(client: FlaskClient, name: str) -> None:
    case = CASES[name]
    response = client.post("/v1/vision/face", data=files(  # cases.json: HOG's boxes
        image=(BAD / name).read_bytes(), face_detector="hog"))
    assert response.status_code == case["expect_status"], response.get_json()
    body = response.get_json()
    if case["expect_status"] >= 400:
        assert body["success"] is False
        assert any(w in body["error"].lower() for w in case["expect_error_contains"])
    else:
        assert len(body["predictions"]) == case["expect_faces"]
        if "expect_box_trbl" in case:
            expected = _trbl_to_box(case["expect_box_trbl"])
            for key in BOX_KEYS:
                assert abs(body["predictions"][0][key] - expected[key]) <= 2


@pytest.mark.parametrize("value", ["abc", "1.5", "nan", "inf"])
def test_bad_min_confidence(idle_redis_url: str, make_client: AppFactory, value: str) -> None:
    client = make_client(idle_redis_url)
    for path in ("/v1/vision/detection", "/v1/vision/face", "/v1/vision/face/recognize"):
        response = client.post(path, data=files(image=face("obama_small.jpg"),
                                                min_confidence=value))
        assert response.status_code == 400
        assert response.get_json()["code"] == "invalid_min_confidence"
    assert redis.Redis.from_url(idle_redis_url).llen("face") == 0


def test_missing_image_field(idle_redis_url: str, make_client: AppFactory) -> None:
    client = make_client(idle_redis_url)
    for path in ("/v1/vision/detection", "/v1/vision/face", "/v1/vision/classify"):
        response = client.post(path, data=files(picture=face("obama_small.jpg")))
        assert response.status_code == 400 and response.get_json()["code"] == "missing_image"


def test_no_worker_is_504_and_the_job_is_revoked(idle_redis_url: str,
                                                 make_client: AppFactory) -> None:
    client = make_client(idle_redis_url, sync_timeout_s=0.3)
    response = client.post("/v1/vision/detection", data=files(image=face("obama_small.jpg")))
    assert response.status_code == 504 and response.get_json()["code"] == "timeout"
    [job] = client.get("/v1/jobs").get_json()["jobs"]
    assert job["status"] == "failed" and job["code"] == "revoked"


def _detect_model_ready() -> str | None:
    """None when the configured detect model is registered and loads, else why not."""
    from workers import registry

    name = Settings().model_detect
    if name not in registry.available():
        return f"detect model {name!r} is not registered (available: {registry.available()})"
    try:
        registry.create(name).load()
    except Exception as exc:  # noqa: BLE001 - any load failure means: skip, with the reason
        return f"detect model {name!r} does not load: {exc}"
    return None


def test_detection_with_a_real_detect_worker(start_worker, redis_url: str,
                                             make_client: AppFactory) -> None:
    reason = _detect_model_ready()
    if reason:
        pytest.skip(reason)
    start_worker(redis_url, "detect", "detect")
    client = make_client(redis_url)
    image = (FIXTURES / "detect" / "images" / "bus.jpg").read_bytes()
    body = client.post("/v1/vision/detection/", data=files(image=image)).get_json()
    _assert_deepstack_ok(body)
    labels = {p["label"] for p in body["predictions"]}
    assert {"person", "bus"} <= labels
    assert all(p["confidence"] >= 0.4 for p in body["predictions"])
    strict = client.post("/v1/vision/detection", data=files(image=image, min_confidence="0.8"))
    assert all(p["confidence"] >= 0.8 for p in strict.get_json()["predictions"])
