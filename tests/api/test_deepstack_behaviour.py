"""DeepStack's behaviours on /v1/vision/*, point by point (issue 16), against real workers.

Each test states what DeepStack does and where its source says so (repository
johnolafenwa/DeepStack: the Go server ``server/server.go`` and ``server/middlewares/
middlewares.go``, the Python intelligence layer ``intelligencelayer/shared/face.py`` and
``intelligencelayer/shared/process.py``).  Where visionq keeps a behaviour of its own it is
behind an explicit option, tested here too.
"""

from __future__ import annotations

import subprocess

import pytest
import redis
from flask.testing import FlaskClient

from tests.api.conftest import AppFactory, face, files
from tests.conftest import FIXTURES, WorkerFactory
from visionq.keys import WORKER_KEY_PREFIX

TINY = (FIXTURES / "bad" / "tiny_1x1.png").read_bytes()
NO_FACE = (FIXTURES / "faces" / "000000000009.jpg").read_bytes()  # COCO photo, no face
CODEPROJECT_KEYS = ("message", "count", "inferenceMs", "processMs", "analysisRoundTripMs",
                    "moduleId")


@pytest.fixture()
def client(face_worker: subprocess.Popen, redis_url: str, make_client: AppFactory,
           clean_faces: None) -> FlaskClient:
    return make_client(redis_url)


def _who(client: FlaskClient, image: str) -> list[str]:
    body = client.post("/v1/vision/face/recognize", data=files(image=face(image))).get_json()
    return [p["userid"] for p in body["predictions"]]


# -- face/register -------------------------------------------------------------------------

def test_register_skips_images_without_a_face(client: FlaskClient) -> None:
    """DeepStack face.py ``run_task`` (reqtype "register"): an image whose detection is empty
    adds nothing to the batch and the loop goes on; only an empty batch is an error."""
    response = client.post("/v1/vision/face/register", data=files(
        userid="obama", first=face("obama.jpg"), empty=TINY, coco=NO_FACE))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["success"] is True and body["message"] == "face added"
    assert body["encodings"] == 1 and body["skipped"] == 2
    assert _who(client, "obama2.jpg") == ["obama"]


def test_register_takes_one_face_of_a_group_photo(client: FlaskClient) -> None:
    """DeepStack face.py ``run_task`` "register": ``for ... in reversed(det): ... break`` -
    one face per image, however many it has (visionq: the largest)."""
    response = client.post("/v1/vision/face/register",
                           data=files(userid="pair", image=face("two_people.jpg")))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["encodings"] == 1


def test_register_with_no_face_anywhere_is_400_no_face_detected(client: FlaskClient) -> None:
    """DeepStack face.py ``run_task`` "register": ``if batch is None`` -> ``{"success": False,
    "error": "no face detected", "code": 400}``, and nothing is stored."""
    response = client.post("/v1/vision/face/register",
                           data=files(userid="nobody", a=TINY, b=NO_FACE))
    assert response.status_code == 400
    body = response.get_json()
    assert body["success"] is False and body["error"] == "no face detected"
    assert body["code"] == "no_face"
    assert client.post("/v1/vision/face/list").get_json()["faces"] == []


def test_reregistering_a_userid_replaces_its_faces(client: FlaskClient) -> None:
    """DeepStack face.py ``run_task`` "register": an existing userid is ``UPDATE``d
    (``UPDATE_FACE``) and the message is "face updated"; a new one "face added"."""
    first = client.post("/v1/vision/face/register",
                        data=files(userid="someone", image=face("obama.jpg"))).get_json()
    assert first["message"] == "face added"
    second = client.post("/v1/vision/face/register",
                         data=files(userid="someone", image=face("biden.jpg"))).get_json()
    assert second["message"] == "face updated" and second["encodings"] == 1
    assert _who(client, "biden2.jpg") == ["someone"]
    assert _who(client, "obama2.jpg") == ["unknown"]  # the old face is gone


def test_append_option_keeps_every_face(client: FlaskClient) -> None:
    """visionq's own behaviour, kept behind ``append=true``: faces are added to the
    userid's, so several photos (or looks) of one person all match."""
    client.post("/v1/vision/face/register", data=files(userid="both", image=face("obama.jpg")))
    added = client.post("/v1/vision/face/register", data=files(
        userid="both", image=face("biden.jpg"), append="true")).get_json()
    assert added["success"] is True and added["encodings"] == 2
    assert _who(client, "biden2.jpg") == ["both"] and _who(client, "obama2.jpg") == ["both"]


def test_register_checks_files_then_userid(client: FlaskClient) -> None:
    """DeepStack server.go routes register through ``CheckMultiImage`` (400 "No valid image
    file found") then ``CheckUserID`` (400 "userid not specified")."""
    no_file = client.post("/v1/vision/face/register", data={"userid": "x"})
    assert no_file.status_code == 400 and no_file.get_json()["code"] == "missing_image"
    no_user = client.post("/v1/vision/face/register", data=files(image=face("obama.jpg")))
    assert no_user.status_code == 400 and no_user.get_json()["code"] == "missing_userid"


# -- face/delete ---------------------------------------------------------------------------

def test_delete_of_an_unknown_userid_is_200_success(client: FlaskClient) -> None:
    """DeepStack server.go ``deleteface``: runs ``DELETE ... WHERE userid=?`` and answers
    ``FaceDeleteResponse{Success: true}`` with 200 whether a row was deleted or not."""
    response = client.post("/v1/vision/face/delete", data={"userid": "never-registered"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["success"] is True and body["deleted"] is False


# -- face/match ----------------------------------------------------------------------------

def test_match_takes_any_two_file_fields(client: FlaskClient) -> None:
    """DeepStack server.go ``facematch`` saves every file of the form whatever its field
    name; face.py "match" compares the two."""
    same = client.post("/v1/vision/face/match",
                       data=files(left=face("obama.jpg"), right=face("obama2.jpg")))
    other = client.post("/v1/vision/face/match",
                        data=files(a=face("obama.jpg"), b=face("biden.jpg")))
    assert same.status_code == other.status_code == 200
    assert same.get_json()["similarity"] > 0.67 > 0.5 > other.get_json()["similarity"]


@pytest.mark.parametrize(("count", "error"), [
    (0, "No valid image file found"),
    (1, "expected two image files, only one found"),
    (3, "only two images allowed"),
])
def test_match_needs_exactly_two_files(client: FlaskClient, count: int, error: str) -> None:
    """DeepStack middlewares.go ``CheckFaceMatch``: 400 for 0, 1 or more than 2 files, with
    these messages."""
    images = {f"f{i}": face("obama_small.jpg") for i in range(count)}
    response = client.post("/v1/vision/face/match", data=files(**images) or {"x": "y"})
    assert response.status_code == 400
    assert response.get_json()["error"] == error and response.get_json()["success"] is False


def test_match_without_a_face_is_success_false_in_a_200(client: FlaskClient) -> None:
    """DeepStack face.py "match": no face in either image -> ``{"success": False, "error":
    "no face found"}`` with no ``code``; server.go ``facematch`` passes that code (0) to
    ``c.JSON`` and gin leaves the status at 200."""
    response = client.post("/v1/vision/face/match",
                           data=files(image1=face("obama.jpg"), image2=NO_FACE))
    assert response.status_code == 200
    body = response.get_json()
    assert body["success"] is False and body["error"] == "no face found"


# -- min_confidence ------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["-3", "-0.1", "0", "0.05"])
def test_low_or_negative_min_confidence_is_accepted(client: FlaskClient, value: str) -> None:
    """DeepStack middlewares.go ``CheckConfidence`` refuses only a non-number or a value
    above 1; process.py ``YOLODetector.predict`` raises the threshold with
    ``max(0.1, confidence)``.  Every face reported here scores at least 0.1."""
    response = client.post("/v1/vision/face", data=files(image=face("obama.jpg"),
                                                         min_confidence=value))
    assert response.status_code == 200, response.get_json()
    predictions = response.get_json()["predictions"]
    assert len(predictions) == 1 and all(p["confidence"] >= 0.1 for p in predictions)


def test_face_min_confidence_filters_on_each_face_confidence(client: FlaskClient) -> None:
    """``min_confidence`` on /v1/vision/face keeps the faces whose own ``confidence`` is at
    least it (DeepStack passes it to its face detector as the score threshold)."""
    image = face("obama_and_biden.jpg")
    everything = client.post("/v1/vision/face", data=files(image=image, min_confidence="0"))
    confidences = sorted(p["confidence"] for p in everything.get_json()["predictions"])
    assert confidences, "the fixture has faces"
    for threshold in {*confidences, 1.0}:
        kept = client.post("/v1/vision/face", data=files(
            image=image, min_confidence=str(threshold))).get_json()["predictions"]
        assert sorted(p["confidence"] for p in kept) == [
            c for c in confidences if c >= max(threshold, 0.1)]


# -- keys ----------------------------------------------------------------------------------

KEYS = {"api_keys": "user-key", "admin_keys": "admin-key"}


def test_register_and_delete_need_only_the_api_key(face_worker: subprocess.Popen,
                                                   redis_url: str, make_client: AppFactory,
                                                   clean_faces: None) -> None:
    """DeepStack server.go puts face/register and face/delete in the ``vision`` group behind
    ``CheckApiKey`` only (form field ``api_key``); ``CheckAdminKey`` guards only addmodel,
    deletemodel, listmodels, backup and restore."""
    client = make_client(redis_url, **KEYS)
    registered = client.post("/v1/vision/face/register", data=files(
        userid="obama", image=face("obama.jpg"), api_key="user-key"))
    assert registered.status_code == 200, registered.get_json()
    deleted = client.post("/v1/vision/face/delete", data={"userid": "obama",
                                                          "api_key": "user-key"})
    assert deleted.status_code == 200 and deleted.get_json()["deleted"] is True
    assert client.post("/v1/vision/face/list", data={"api_key": "wrong"}).status_code == 401


def test_admin_key_form_field_is_read(idle_redis_url: str, make_client: AppFactory) -> None:
    """DeepStack middlewares.go ``CheckAdminKey`` reads the form field ``admin_key``; DeepStack
    clients send it beside ``api_key``.  The job API's rules stay: an API key alone is a 403
    on an admin route, a wrong key a 401."""
    client = make_client(idle_redis_url, **KEYS)
    assert client.post("/v1/backup", data={"api_key": "user-key"}).status_code == 403
    both = client.post("/v1/backup", data={"api_key": "user-key", "admin_key": "admin-key"})
    assert both.status_code == 200 and both.get_json()["format"] == "visionq-faces"
    assert client.post("/v1/backup", data={"admin_key": "admin-key"}).status_code == 200
    wrong = client.post("/v1/backup", data={"api_key": "user-key", "admin_key": "nope"})
    assert wrong.status_code == 401 and wrong.get_json()["code"] == "invalid_api_key"


# -- CodeProject.AI keys -------------------------------------------------------------------

def _assert_codeproject(body: dict) -> None:
    for key in CODEPROJECT_KEYS:
        assert key in body, key
    assert isinstance(body["message"], str) and isinstance(body["moduleId"], str)
    for key in ("count", "inferenceMs", "processMs", "analysisRoundTripMs"):
        assert isinstance(body[key], int) and body[key] >= 0, key


def test_codeproject_keys_on_every_response(client: FlaskClient) -> None:
    """CodeProject.AI Server answers DeepStack's shape plus ``moduleId``, ``inferenceMs``,
    ``processMs`` and ``analysisRoundTripMs`` (codeproject/CodeProject.AI-Server
    ``src/SDK/NET/API/ModuleResponses.cs``, class ``ModuleResponse``, serialised camelCase)
    and its vision modules add ``message`` ("Found ...") and ``count``; Blue Iris and
    CodeProject.AI clients read them.  visionq adds them to every /v1/vision/* body, errors
    included."""
    found = client.post("/v1/vision/face", data=files(image=face("obama_and_biden.jpg")))
    body = found.get_json()
    _assert_codeproject(body)
    assert body["count"] == len(body["predictions"]) >= 2
    assert body["moduleId"] == "face_recognition" and body["message"].startswith("Found")
    assert 0 < body["inferenceMs"] <= body["processMs"] <= body["analysisRoundTripMs"] + 1
    client.post("/v1/vision/face/register", data=files(userid="obama", image=face("obama.jpg")))
    for path, data in [("/v1/vision/face/recognize", files(image=face("obama2.jpg"))),
                       ("/v1/vision/face/list", {}),
                       ("/v1/vision/face/match", files(a=face("obama.jpg"), b=NO_FACE)),
                       ("/v1/vision/face/delete", {"userid": "obama"}),
                       ("/v1/vision/face", files(picture=face("obama.jpg"))),  # 400
                       ("/v1/vision/scene", files(image=face("obama.jpg")))]:  # 501
        response = client.post(path, data=data)
        _assert_codeproject(response.get_json())
    error = client.post("/v1/vision/face", data=files(picture=face("obama.jpg"))).get_json()
    assert error["message"] == error["error"] and error["count"] == 0


def test_detection_floor_and_codeproject_keys(start_worker: WorkerFactory, redis_url: str,
                                              make_client: AppFactory) -> None:
    """DeepStack process.py ``YOLODetector.predict``: ``confidence = max(0.1, confidence)``,
    so min_confidence 0 or below answers like 0.1; the detection module id is the model's."""
    from tests.api.test_deepstack import _detect_model_ready

    reason = _detect_model_ready()
    if reason:
        pytest.skip(reason)
    if not redis.Redis.from_url(redis_url).exists(f"{WORKER_KEY_PREFIX}detect@testhost"):
        start_worker(redis_url, "detect", "detect")
    client = make_client(redis_url)
    image = (FIXTURES / "detect" / "images" / "bus.jpg").read_bytes()
    answers = {}
    for value in ("-1", "0", "0.1"):
        response = client.post("/v1/vision/detection", data=files(image=image,
                                                                    min_confidence=value))
        assert response.status_code == 200, response.get_json()
        answers[value] = response.get_json()
    boxes = {value: [(p["label"], p["x_min"], p["y_min"]) for p in body["predictions"]]
             for value, body in answers.items()}
    assert boxes["-1"] == boxes["0"] == boxes["0.1"]
    assert all(p["confidence"] >= 0.1 for p in answers["0"]["predictions"])
    _assert_codeproject(answers["0"])
    assert answers["0"]["count"] == len(answers["0"]["predictions"])
    assert answers["0"]["moduleId"] not in ("", "visionq")
