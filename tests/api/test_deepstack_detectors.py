"""``/v1/vision/detection`` served by the detector the admin chooses: a ``detect`` worker
started with ``VISIONQ_DETECT_MODEL=custom/frigate`` answers Frigate's request (multipart
``image`` of JPEG bytes without a filename extension, ``api_key`` form field) with the known
box of a YOLOv8, a YOLOX, a DETR-style and an RT-DETR-export graph in turn, each put in
place with ``addmodel`` (admin) while the worker runs, labels spelled as Frigate's labelmap
spells them.  A worker told to serve a model the folder lacks does not start."""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from PIL import Image

from tests.api.conftest import AppFactory
from tests.api.test_deepstack_frigate import frigate_labels, frigate_reads
from tests.conftest import BIN, REPO, WorkerPool, service_env
from tests.workers.custom_builders import yolo_onnx
from tests.workers.detector_builders import (
    FRIGATE_ANSWER,
    LAYOUTS,
    detector_manifest,
    detector_onnx,
)
from visionq.labels import COCO_SYNONYMS, coco_name

DB = 15
"""This module's database of the session Redis (tests/conftest.py lists the owners): its
detect worker serves a custom model, so it must not take the shared stack's detect jobs."""
MODEL = "frigate"
USER_KEY, ADMIN_KEY = "frigate-key", "boss"


def model_files(layout: str) -> tuple[dict[str, Any], bytes]:
    if layout == "yolov8":  # the custom-model tests' YOLOv8 graph (its class 1 is ours)
        manifest = {**detector_manifest(MODEL, "detr"), "layout": "yolov8"}
        return manifest, yolo_onnx("yolov8")
    return detector_manifest(MODEL, layout), detector_onnx(layout)


def jpeg(colour: tuple[int, int, int], size: tuple[int, int] = (128, 128)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="JPEG")
    return out.getvalue()


@pytest.fixture(scope="module")
def db_url(redis_server: tuple[int, subprocess.Popen]) -> Iterator[str]:
    url = f"redis://127.0.0.1:{redis_server[0]}/{DB}"
    redis.Redis.from_url(url).flushdb()
    yield url
    redis.Redis.from_url(url).flushdb()


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from visionq.custom_models import custom_root, install, parse_manifest

    folder = tmp_path_factory.mktemp("models")
    manifest, data = model_files("yolov8")  # the worker refuses to start without it
    install(custom_root(folder), parse_manifest(manifest), "frigate.onnx", data)
    return folder


@pytest.fixture(scope="module")
def detect_worker(db_url: str, models_dir: Path) -> Iterator[subprocess.Popen]:
    pool = WorkerPool()
    yield pool.start(db_url, "detect", "detect-custom", VISIONQ_MODELS_DIR=str(models_dir),
                     VISIONQ_DETECT_MODEL=f"custom/{MODEL}")
    pool.stop_all()


@pytest.fixture()
def client(make_client: AppFactory, db_url: str, models_dir: Path,
           detect_worker: subprocess.Popen) -> FlaskClient:
    return make_client(db_url, models_dir=str(models_dir), sync_timeout_s=120,
                       api_keys=USER_KEY, admin_keys=ADMIN_KEY)


def frigate_post(client: FlaskClient, image: bytes) -> Any:
    """As frigate/detectors/plugins/deepstack.py: ``files={"image": bytes}`` (field and file
    name ``image``) and ``data={"api_key": ...}``."""
    return client.post("/v1/vision/detection",
                       data={"image": (io.BytesIO(image), "image"), "api_key": USER_KEY},
                       content_type="multipart/form-data")


@pytest.mark.parametrize("layout", ["yolov8", *LAYOUTS])
def test_detection_serves_the_chosen_detector(client: FlaskClient, layout: str) -> None:
    manifest, data = model_files(layout)
    added = client.post("/v1/vision/addmodel", headers={"X-API-Key": ADMIN_KEY}, data={
        "model": (io.BytesIO(data), "model.onnx"), "manifest": json.dumps(manifest)},
        content_type="multipart/form-data")
    assert added.status_code == 200, added.get_json()

    response = frigate_post(client, jpeg((255, 255, 255)))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["success"] is True
    assert len(body["predictions"]) == 1, body
    assert frigate_reads(body["predictions"]) == body["predictions"]  # Frigate keeps it
    found = body["predictions"][0]
    assert found["confidence"] == pytest.approx(FRIGATE_ANSWER["confidence"], abs=0.01)
    assert {k: v for k, v in found.items() if k != "confidence"} == {
        k: v for k, v in FRIGATE_ANSWER.items() if k != "confidence"}
    assert frigate_post(client, jpeg((0, 0, 0))).get_json()["predictions"] == []

    job = client.post("/v1/jobs?task=detect&wait=60", headers={"X-API-Key": USER_KEY},
                      data={"image": (io.BytesIO(jpeg((255, 255, 255))), "white.jpg")},
                      content_type="multipart/form-data").get_json()
    assert job["status"] == "succeeded", job
    assert job["result"]["model"] == f"custom/{MODEL}"
    assert [p["label"] for p in job["result"]["predictions"]] == ["motorcycle"]


def test_a_worker_for_a_model_the_folder_lacks_does_not_start(db_url: str,
                                                               tmp_path: Path) -> None:
    env = service_env(db_url, VISIONQ_DETECT_MODEL="custom/absent",
                      VISIONQ_MODELS_DIR=str(tmp_path))
    out = subprocess.run([str(BIN / "celery"), "-A", "tasks", "worker", "-Q", "detect",
                          "-n", "absent@testhost", "--without-mingle", "--without-gossip"],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    output = out.stdout + out.stderr
    assert "cannot start a worker for queue 'detect'" in output
    assert "custom/absent cannot serve the detect queue" in output


def test_every_mapped_spelling_is_a_frigate_label() -> None:
    """Other detectors' spellings (``motorbike``, ``tvmonitor``, ``dining_table``, ...) come
    out as names in Frigate's labelmap (``tests/api/frigate_labelmap.txt``)."""
    known = frigate_labels()
    for spelling in [*COCO_SYNONYMS, "Dining_Table", "TV", "potted-plant"]:
        assert coco_name(spelling) in known, spelling
    assert coco_name("package") == "package"  # not a COCO class: passed through
