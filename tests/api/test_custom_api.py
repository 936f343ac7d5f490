"""Custom models end to end: a model dropped in the folder (or added with ``addmodel``) is
served at ``/v1/vision/custom/<name>`` and as job task ``custom/<name>`` through a real
``custom`` Celery worker, with no code; management needs the admin key; a bad manifest is
reported, never a crashed worker.  Models are built in the test (no downloads)."""

from __future__ import annotations

import io
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from tests.api.conftest import AppFactory
from tests.conftest import WorkerPool
from tests.workers.custom_builders import (
    EXPECTED_CAT,
    colour_keras_model,
    colour_manifest,
    png,
    write_model,
    yolo_manifest,
    yolo_onnx,
)
from visionq.custom_models import CUSTOM_QUEUE
from visionq.jobs import JobStore

WHITE, BLACK = png((255, 255, 255)), png((0, 0, 0))


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def custom_worker(redis_url: str, models_dir: Path) -> Iterator[subprocess.Popen]:
    """``celery -A tasks worker -Q custom``, started with an empty folder: models arrive
    while it runs."""
    pool = WorkerPool()
    yield pool.start(redis_url, CUSTOM_QUEUE, "custom-e2e", VISIONQ_MODELS_DIR=str(models_dir))
    pool.stop_all()


@pytest.fixture()
def client(make_client: AppFactory, redis_url: str, models_dir: Path,
           custom_worker: subprocess.Popen) -> FlaskClient:
    return as_admin(make_client(redis_url, models_dir=str(models_dir), sync_timeout_s=120,
                                admin_keys=ADMIN_KEY))


ADMIN_KEY = "custom-admin"


def as_admin(client: FlaskClient) -> FlaskClient:
    """Every request of ``client`` sends the admin key (model management needs one)."""
    client.environ_base["HTTP_X_API_KEY"] = ADMIN_KEY
    return client


def post_image(client: FlaskClient, path: str, image: bytes, **fields: str) -> Any:
    return client.post(path, data={"image": (io.BytesIO(image), "x.png"), **fields},
                       content_type="multipart/form-data")


def add_model(client: FlaskClient, manifest: dict[str, Any], model: bytes,
              filename: str, **headers: str) -> Any:
    return client.post("/v1/vision/addmodel", headers=headers, data={
        "model": (io.BytesIO(model), filename), "manifest": json.dumps(manifest)},
        content_type="multipart/form-data")


def wait_job(client: FlaskClient, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        body = client.get(f"/v1/jobs/{job_id}?wait=10").get_json()
        if body["status"] in ("succeeded", "failed"):
            return body
    raise AssertionError(f"job {job_id} did not finish")


def test_addmodel_then_served_sync_and_as_a_job(client: FlaskClient) -> None:
    added = add_model(client, yolo_manifest("pets5", "yolov5"), yolo_onnx("yolov5"), "best.onnx")
    assert added.status_code == 200, added.get_json()
    assert added.get_json()["model"]["task"] == "custom/pets5"

    white = post_image(client, "/v1/vision/custom/pets5", WHITE)
    assert white.status_code == 200, white.get_json()
    body = white.get_json()
    assert body["success"] is True and body["predictions"] == [EXPECTED_CAT]
    assert post_image(client, "/v1/vision/custom/pets5", BLACK).get_json()["predictions"] == []
    # DeepStack's min_confidence filters here too
    assert post_image(client, "/v1/vision/custom/pets5", WHITE, min_confidence="0.95"
                      ).get_json()["predictions"] == []

    for task in ("custom/pets5", "pets5"):  # the bare name works when it is not built in
        accepted = post_image(client, f"/v1/jobs?task={task}", WHITE)
        assert accepted.status_code == 202, accepted.get_json()
        assert accepted.get_json()["task"] == "custom/pets5"
        job = wait_job(client, accepted.get_json()["id"])
        assert job["status"] == "succeeded", job
        assert job["result"]["predictions"] == [EXPECTED_CAT]
        assert job["result"]["model_version"] == "pets5:1"


def test_a_model_dropped_in_the_folder_is_served(client: FlaskClient, models_dir: Path) -> None:
    write_model(models_dir / "custom", yolo_manifest("pets8", "yolov8"),
                {"pets8.onnx": yolo_onnx("yolov8")})
    listed = client.get("/v1/vision/custom/list").get_json()
    assert listed["success"] is True and "pets8" in listed["models"]
    details = {m["name"]: m for m in client.post("/v1/vision/listmodels").get_json()["models"]}
    assert details["pets8"]["layout"] == "yolov8" and details["pets8"]["labels"] == 2
    response = post_image(client, "/v1/vision/custom/pets8/", WHITE)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["predictions"] == [EXPECTED_CAT]


def test_tensorflow_formats_through_the_queue(client: FlaskClient, models_dir: Path) -> None:
    tf = pytest.importorskip("tensorflow", reason="visionq[tensorflow] is not installed")
    model = colour_keras_model()
    root = models_dir / "custom"
    keras_dir = write_model(root, colour_manifest("colours-keras", "keras"), {})
    model.save(keras_dir / "colours.keras")
    saved = root / "colours-saved"
    model.export(str(saved), format="tf_saved_model", verbose=False)
    write_model(root, colour_manifest("colours-saved", "savedmodel"), {})
    write_model(root, colour_manifest("colours-lite", "tflite"), {
        "colours.tflite": tf.lite.TFLiteConverter.from_keras_model(model).convert()})
    for name in ("colours-keras", "colours-saved", "colours-lite"):
        for colour, label in (((255, 0, 0), "red"), ((0, 0, 255), "blue")):
            response = post_image(client, f"/v1/vision/custom/{name}", png(colour))
            assert response.status_code == 200, (name, response.get_json())
            body = response.get_json()
            assert body["label"] == label and body["confidence"] > 0.99, (name, body)
            assert "x_min" not in body["predictions"][0]


def test_bad_models_are_reported_and_the_worker_keeps_serving(
        client: FlaskClient, models_dir: Path, custom_worker: subprocess.Popen) -> None:
    root = models_dir / "custom"
    (root / "broken").mkdir(parents=True, exist_ok=True)
    (root / "broken" / "manifest.json").write_text('{"kind": "detect"')
    write_model(root, yolo_manifest("junk", "yolov5"), {"junk.onnx": b"\x08\x07 not onnx"})
    listed = client.post("/v1/vision/custom/list").get_json()
    assert "broken" not in listed["models"]
    assert [e["name"] for e in listed["errors"]] == ["broken"]
    assert "not valid JSON" in listed["errors"][0]["error"]
    missing = post_image(client, "/v1/vision/custom/broken", WHITE)
    assert missing.status_code == 404 and missing.get_json()["code"] == "model_not_found"

    failed = post_image(client, "/v1/vision/custom/junk", WHITE)
    assert failed.status_code == 500, failed.get_json()
    assert "not a loadable ONNX model" in failed.get_json()["error"]
    assert custom_worker.poll() is None
    write_model(root, yolo_manifest("after", "yolov5"), {"after.onnx": yolo_onnx("yolov5")})
    assert post_image(client, "/v1/vision/custom/after", WHITE).get_json()[
        "predictions"] == [EXPECTED_CAT]


def test_management_needs_the_admin_key(make_client: AppFactory, redis_url: str,
                                        models_dir: Path) -> None:
    client = make_client(redis_url, models_dir=str(models_dir), api_keys="user",
                         admin_keys="boss")
    model, manifest = yolo_onnx("yolov5"), yolo_manifest("guarded", "yolov5")
    refused = add_model(client, manifest, model, "m.onnx", **{"X-API-Key": "user"})
    assert refused.status_code == 403 and refused.get_json()["code"] == "admin_key_required"
    assert add_model(client, manifest, model, "m.onnx", **{"X-API-Key": "boss"}
                     ).status_code == 200
    listed = client.get("/v1/vision/listmodels", headers={"X-API-Key": "user"})
    assert listed.status_code == 200
    assert "guarded" in [m["name"] for m in listed.get_json()["models"]]
    delete = {"name": "guarded"}
    assert client.post("/v1/vision/deletemodel", data=delete,
                       headers={"X-API-Key": "user"}).status_code == 403
    assert client.post("/v1/vision/deletemodel", data=delete,
                       headers={"X-API-Key": "boss"}).status_code == 200
    gone = client.post("/v1/vision/deletemodel", data=delete, headers={"X-API-Key": "boss"})
    assert gone.status_code == 404 and gone.get_json()["code"] == "model_not_found"
    assert "guarded" not in client.get("/v1/vision/custom/list", headers={
        "X-API-Key": "user"}).get_json()["models"]


@pytest.mark.parametrize(("fields", "message"), [
    ({"name": "x", "kind": "detect", "format": "onnx", "labels": "a,b", "input_size": "64"},
     "needs a layout"),
    ({"name": "x", "kind": "detect", "format": "tflite", "layout": "ssd", "labels": "a",
      "input_size": "64"}, "TFL3"),
    ({"name": "x", "kind": "detect", "format": "onnx", "layout": "yolov5", "labels": "a",
      "input_size": "64"}, "not an ONNX model"),
])
def test_addmodel_refuses_bad_manifests_and_files(make_client: AppFactory, idle_redis_url: str,
                                                  tmp_path: Path, fields: dict[str, str],
                                                  message: str) -> None:
    client = as_admin(make_client(idle_redis_url, models_dir=str(tmp_path),
                                  admin_keys=ADMIN_KEY))
    response = client.post("/v1/vision/addmodel", data={
        "model": (io.BytesIO(b"\x00" * 16), "m.bin"), **fields},
        content_type="multipart/form-data")
    assert response.status_code == 400 and response.get_json()["code"] == "invalid_model"
    assert message in response.get_json()["error"]
    assert not (tmp_path / "custom" / "x").exists()


def test_custom_jobs_go_to_the_custom_queue(make_client: AppFactory, idle_redis_url: str,
                                            tmp_path: Path) -> None:
    """Checked on a Redis no worker consumes: the message waits in ``custom``, the job's
    task names the model; unknown models and options are 400s."""
    write_model(tmp_path / "custom", yolo_manifest("queued", "yolov5"), {"queued.onnx": b"x"})
    client = make_client(idle_redis_url, models_dir=str(tmp_path))
    conn = redis.Redis.from_url(idle_redis_url)
    accepted = post_image(client, "/v1/jobs?task=custom/queued", WHITE)
    assert accepted.status_code == 202, accepted.get_json()
    assert conn.llen(CUSTOM_QUEUE) == 1
    job = JobStore(conn, 60).get(accepted.get_json()["id"])
    assert job is not None and job.task == "custom/queued"
    unknown = post_image(client, "/v1/jobs?task=custom/nope", WHITE)
    assert unknown.status_code == 400 and unknown.get_json()["code"] == "unknown_task"
    bad = client.post("/v1/jobs?task=custom/queued", data={
        "image": (io.BytesIO(WHITE), "x.png"), "options": '{"classes": ["cat"]}'},
        content_type="multipart/form-data")
    assert bad.status_code == 400 and bad.get_json()["code"] == "invalid_options"
    listed = client.get("/v1/jobs?task=custom/queued&source=live").get_json()["jobs"]
    assert [j["id"] for j in listed] == [accepted.get_json()["id"]]
