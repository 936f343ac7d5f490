"""Issue 30, "every option bounded before it is queued": a tiny request must not buy a
minute of CPU and gigabytes (a 23 KB black 6000x4000 PNG with ``upsample: 2`` ran 48 s at
4.3 GB RSS), nor copy an unbounded ``classes`` list into every job record.

The face cost is refused at submit (nothing reaches the ``face`` queue) and again by the
face plugin before it detects (a job queued by an older API or another queue client)."""

from __future__ import annotations

import io
import json
import subprocess
import time
from typing import Any

import numpy as np
import pytest
import redis
from flask.testing import FlaskClient
from PIL import Image

from api.openapi import build_spec
from api.options import MAX_OPTIONS_BYTES
from tests.api.conftest import AppFactory
from visionq.face_budget import DEFAULT_FACE_MAX_SCAN_PIXELS, FaceCostTooHighError
from visionq.imaging import DecodedImage, ImageError
from visionq.labels import COCO_LABELS
from visionq.settings import Settings
from workers.plugins.face_recognition_model import FaceRecognitionModel

WIDTH, HEIGHT = 6000, 4000


@pytest.fixture(scope="module")
def black_png() -> bytes:
    """The table's image: 6000x4000 black (~70 KB as PIL writes it; 23 KB in the issue)."""
    buffer = io.BytesIO()
    Image.new("RGB", (WIDTH, HEIGHT)).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def _submit(client: FlaskClient, task: str, image: bytes, options: str) -> Any:
    return client.post(f"/v1/jobs?task={task}", data={
        "image": (io.BytesIO(image), "x.png"), "options": options})


def _queued(redis_url: str, queue: str) -> int:
    return int(redis.Redis.from_url(redis_url).llen(queue))


def _small_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("options", [{"upsample": 2}, {"upsample": 3}, {"upsample": 1},
                                     {"min_face_px": 20}, {"min_face_px": 40}])
def test_face_cost_over_budget_is_refused_at_submit(
        idle_redis_url: str, make_client: AppFactory, black_png: bytes,
        options: dict[str, int]) -> None:
    """HOG's count (a server whose VISIONQ_FACE_DETECTOR is hog; YuNet's pixels count 4:
    tests/security/test_face_yunet_cost.py)."""
    client = make_client(idle_redis_url, face_detector="hog")
    before = _queued(idle_redis_url, "face")
    response = _submit(client, "face", black_png, json.dumps(options))
    body = response.get_json()
    assert response.status_code == 400, body
    assert body["success"] is False and body["code"] == "face_cost_too_high"
    assert f"{DEFAULT_FACE_MAX_SCAN_PIXELS:,}" in body["error"]  # names the limit
    scanned = (WIDTH * HEIGHT * 4 ** options["upsample"] if "upsample" in options
               else WIDTH * HEIGHT * (80 // options["min_face_px"]) ** 2)
    assert f"{scanned:,}" in body["error"]  # and the value
    assert _queued(idle_redis_url, "face") == before


@pytest.mark.parametrize("options", [{}, {"upsample": 0}, {"min_face_px": 80}])
def test_face_cost_within_budget_is_accepted(idle_redis_url: str, make_client: AppFactory,
                                             black_png: bytes, options: dict[str, int]) -> None:
    """The default policy (bounded by VISIONQ_FACE_PIXEL_BUDGET) and a full-size HOG scan."""
    client = make_client(idle_redis_url, face_detector="hog")
    before = _queued(idle_redis_url, "face")
    response = _submit(client, "face", black_png, json.dumps(options))
    assert response.status_code == 202, response.get_json()
    assert _queued(idle_redis_url, "face") == before + 1


def test_face_budget_is_a_setting(idle_redis_url: str, make_client: AppFactory,
                                  black_png: bytes) -> None:
    client = make_client(idle_redis_url, face_detector="hog", face_max_scan_pixels=400_000_000)
    assert _submit(client, "face", black_png, '{"upsample": 2}').status_code == 202


@pytest.mark.parametrize(("classes", "problem"), [
    (["person"] * 81, "classes"),
    (["person", "dog", "person"], "duplicate"),
    (["person", "unicorn"], "classes"),
])
def test_classes_are_unique_known_labels(idle_redis_url: str, make_client: AppFactory,
                                         classes: list[str], problem: str) -> None:
    client = make_client(idle_redis_url)
    before = _queued(idle_redis_url, "detect")
    response = _submit(client, "detect", _small_png(), json.dumps({"classes": classes}))
    body = response.get_json()
    assert response.status_code == 400, body
    assert body["code"] == "invalid_options" and problem in body["error"]
    assert _queued(idle_redis_url, "detect") == before


def test_every_label_once_is_accepted(idle_redis_url: str, make_client: AppFactory) -> None:
    client = make_client(idle_redis_url)
    response = _submit(client, "detect", _small_png(),
                       json.dumps({"classes": list(COCO_LABELS)}))
    assert response.status_code == 202, response.get_json()


def test_large_options_are_refused(idle_redis_url: str, make_client: AppFactory) -> None:
    """10 KB of options (valid-looking: 1,000 ``person``), as a form field and in JSON."""
    client = make_client(idle_redis_url)
    options = {"min_confidence": 0.5, "classes": ["person"] * 1000}
    text = json.dumps(options)
    assert len(text) > 10_000
    form = _submit(client, "detect", _small_png(), text)
    import base64
    body = client.post("/v1/jobs?task=detect", json={
        "image": base64.b64encode(_small_png()).decode(), "options": options})
    batch = client.post("/v1/jobs/batch?task=detect", json={
        "images": [base64.b64encode(_small_png()).decode()], "options": options})
    for response in (form, body, batch):
        payload = response.get_json()
        assert response.status_code == 400, payload
        assert payload["code"] == "options_too_large"
        assert f"{MAX_OPTIONS_BYTES:,}" in payload["error"]
    assert _queued(idle_redis_url, "detect") == 0


def _numbers_and_arrays(schema: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(schema, dict):
        if schema.get("type") in ("integer", "number", "array"):
            found.append((path, schema))
        for key, value in schema.items():
            found += _numbers_and_arrays(value, f"{path}/{key}")
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            found += _numbers_and_arrays(value, f"{path}/{index}")
    return found


def test_every_option_has_a_range_in_the_openapi_document() -> None:
    schemas = build_spec()["components"]["schemas"]
    options = {name: schema for name, schema in schemas.items() if name.endswith("Options")}
    assert set(options) >= {"FaceOptions", "DetectOptions", "ClassifyOptions",
                            "CustomOptions"}
    fields = [item for name, schema in options.items()
              for item in _numbers_and_arrays(schema, name)]
    assert any(schema["type"] == "array" for _, schema in fields)
    for path, schema in fields:
        if schema["type"] == "array":
            assert "maxItems" in schema and schema.get("uniqueItems") is True, path
        else:
            assert "minimum" in schema and "maximum" in schema, path


@pytest.fixture(scope="module")
def face_model() -> FaceRecognitionModel:
    model = FaceRecognitionModel(Settings())
    model.load()
    return model


def test_the_worker_refuses_an_over_budget_job_without_detecting(
        face_model: FaceRecognitionModel) -> None:
    """A job queued by an older API: the plugin fails it with the same budget, at once (the
    detector would scan 64 MP here, ~7 CPU-s and ~0.8 GB); the runner records any
    ``ImageError`` as a failed job with its code."""
    image = DecodedImage.from_array(np.zeros((1000, 1000, 3), np.uint8))
    started = time.process_time()
    with pytest.raises(FaceCostTooHighError) as refused:
        face_model.predict([image], {"upsample": 3, "landmarks": "none"})
    assert time.process_time() - started < 0.5
    assert isinstance(refused.value, ImageError) and refused.value.code == "face_cost_too_high"
    assert "64,000,000" in refused.value.message
    assert f"{DEFAULT_FACE_MAX_SCAN_PIXELS:,}" in refused.value.message


def test_the_worker_runs_a_job_within_budget(face_model: FaceRecognitionModel) -> None:
    image = DecodedImage.from_array(np.zeros((400, 300, 3), np.uint8))
    result = face_model.predict([image], {"upsample": 2, "landmarks": "none"})[0]
    assert result["faces"] == []


def test_a_job_an_older_api_queued_fails_in_the_worker(face_worker: subprocess.Popen,
                                                      redis_url: str,
                                                      make_client: AppFactory) -> None:
    """An API that does not check (here: one with a huge budget) queues ``upsample: 3`` on a
    1 MP photo (64 MP scanned); the real face worker, at the default budget, fails the job
    with the same code at once and lives on."""
    older = make_client(redis_url, face_max_scan_pixels=10**12)
    buffer = io.BytesIO()
    Image.new("RGB", (1000, 1000)).save(buffer, "PNG")
    response = older.post("/v1/jobs?task=face&wait=60", data={
        "image": (io.BytesIO(buffer.getvalue()), "x.png"), "options": '{"upsample": 3}'})
    job = response.get_json()
    assert job["status"] == "failed", job
    assert job["code"] == "face_cost_too_high" and "64,000,000" in job["error"]
    assert job["timings"]["inference_ms"] < 1000  # no detection (it would take ~7 s)
    assert face_worker.poll() is None
