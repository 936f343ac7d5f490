"""CompreFace's recognition parameters (``limit``, ``det_prob_threshold``,
``prediction_count``) on DeepStack's recognize endpoint and the job API, bounded before
anything is queued; ``distance`` and ``quality`` on every recognized face (live worker)."""

from __future__ import annotations

import io
import json
import subprocess

import pytest
import redis
from flask.testing import FlaskClient

from tests.api.conftest import AppFactory, face, files
from visionq.settings import DEFAULT_FACE_MIN_SIZE_PX

BAD_FIELDS = [("limit", "-1"), ("limit", "1001"), ("limit", "1.5"), ("limit", "x"),
              ("det_prob_threshold", "1.5"), ("det_prob_threshold", "-0.1"),
              ("det_prob_threshold", "nan"), ("det_prob_threshold", "x"),
              ("prediction_count", "0"), ("prediction_count", "101"),
              ("prediction_count", "two")]


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS)
def test_recognize_fields_out_of_bounds_are_400_before_queueing(
        idle_redis_url: str, make_client: AppFactory, field: str, value: str) -> None:
    response = make_client(idle_redis_url).post(
        "/v1/vision/face/recognize", data=files(image=face("obama_small.jpg"), **{field: value}))
    assert response.status_code == 400
    body = response.get_json()
    assert body["success"] is False and body["code"] == "invalid_options" and field in body[
        "error"]
    assert redis.Redis.from_url(idle_redis_url).llen("face") == 0


@pytest.mark.parametrize("options", [{"limit": 1001}, {"limit": -1},
                                     {"det_prob_threshold": 1.5},
                                     {"prediction_count": 0}, {"prediction_count": 101},
                                     {"recognize": "yes"}])
def test_job_options_out_of_bounds_are_400_before_queueing(
        idle_redis_url: str, make_client: AppFactory, options: dict) -> None:
    response = make_client(idle_redis_url).post(
        "/v1/jobs?task=face", data={"image": (io.BytesIO(face("obama_small.jpg")), "x.jpg"),
                                    "options": json.dumps(options)},
        content_type="multipart/form-data")
    assert response.status_code == 400
    assert response.get_json()["code"] == "invalid_options"
    assert redis.Redis.from_url(idle_redis_url).llen("face") == 0


@pytest.fixture()
def client(face_worker: subprocess.Popen, redis_url: str, make_client: AppFactory,
           clean_faces: None) -> FlaskClient:
    live = make_client(redis_url)
    for userid, name in (("obama", "obama.jpg"), ("biden", "biden.jpg")):
        registered = live.post("/v1/vision/face/register",
                               data=files(userid=userid, image=face(name)))
        assert registered.status_code == 200, registered.get_json()
    return live


def test_recognize_with_compreface_fields(client: FlaskClient) -> None:
    plain = client.post("/v1/vision/face/recognize",
                        data=files(image=face("obama_and_biden.jpg"))).get_json()
    assert len(plain["predictions"]) == 3
    for prediction in plain["predictions"]:  # defaults unchanged, two fields more
        assert "subjects" not in prediction
        assert 0 < prediction["distance"] < 2
        assert prediction["quality"]["size_px"] > 0 and prediction["quality"]["sharpness"] > 0
    body = client.post("/v1/vision/face/recognize", data=files(
        image=face("obama_and_biden.jpg"), limit="2", prediction_count="2",
        det_prob_threshold="0.1")).get_json()
    assert body["success"] is True
    assert sorted(p["userid"] for p in body["predictions"]) == ["biden", "obama"]
    for prediction in body["predictions"]:
        assert [s["subject"] for s in prediction["subjects"]][0] == prediction["userid"]
        assert len(prediction["subjects"]) == 2
        assert prediction["subjects"][0]["distance"] == prediction["distance"]
    nobody = client.post("/v1/vision/face/recognize", data=files(
        image=face("obama_and_biden.jpg"), det_prob_threshold="1")).get_json()
    assert nobody["predictions"] == []


def test_job_api_recognize(client: FlaskClient) -> None:
    submitted = client.post("/v1/jobs?task=face&wait=60", data={
        "image": (io.BytesIO(face("obama_and_biden.jpg")), "x.jpg"),
        "options": json.dumps({"recognize": True, "prediction_count": 2, "limit": 3,
                               "landmarks": "none"})}, content_type="multipart/form-data")
    job = submitted.get_json()
    assert job["status"] == "succeeded", job
    faces = job["result"]["faces"]
    assert sorted(f["userid"] for f in faces) == ["biden", "obama", "unknown"]
    for found in faces:
        assert len(found["subjects"]) == 2 and found["distance"] > 0 and "quality" in found


def test_openapi_documents_the_recognize_fields(idle_redis_url: str,
                                                make_client: AppFactory) -> None:
    document = make_client(idle_redis_url).get("/openapi.json").get_json()
    form = document["paths"]["/v1/vision/face/recognize"]["post"]["requestBody"]["content"][
        "multipart/form-data"]["schema"]["properties"]
    assert (form["limit"]["minimum"], form["limit"]["maximum"]) == (0, 1000)
    assert (form["det_prob_threshold"]["minimum"], form["det_prob_threshold"]["maximum"]) == (
        0, 1)
    assert (form["prediction_count"]["minimum"], form["prediction_count"]["maximum"]) == (1, 100)
    face_options = json.dumps(document).count("prediction_count")
    assert face_options >= 2  # the face job options' schema too


def small_obama() -> bytes:
    """obama.jpg at 17 %: the face is ~45 px high (YuNet), below VISIONQ_FACE_MIN_SIZE_PX
    (50)."""
    from PIL import Image

    photo = Image.open(io.BytesIO(face("obama.jpg")))
    photo = photo.resize((round(photo.width * 0.17), round(photo.height * 0.17)))
    out = io.BytesIO()
    photo.save(out, "JPEG", quality=95)
    return out.getvalue()


def test_small_faces_are_unknown_by_default(client: FlaskClient, redis_url: str,
                                             make_client: AppFactory) -> None:
    [gated] = client.post("/v1/vision/face/recognize",
                          data=files(image=small_obama())).get_json()["predictions"]
    assert gated["quality"]["size_px"] < DEFAULT_FACE_MIN_SIZE_PX and gated["distance"] < 0.47
    assert (gated["userid"], gated["confidence"]) == ("unknown", 0.0)
    ungated = make_client(redis_url, face_min_size_px=0)
    [named] = ungated.post("/v1/vision/face/recognize",
                           data=files(image=small_obama())).get_json()["predictions"]
    assert named["userid"] == "obama"
