"""The face cost budget covers YuNet: each YuNet pixel counts ``YUNET_PIXEL_WEIGHT`` (4)
against ``VISIONQ_FACE_MAX_SCAN_PIXELS`` (its memory per pixel is ~4.5x HOG's), checked at
submit, from the job's ``face_detector`` or the server's ``VISIONQ_FACE_DETECTOR``, and by
the worker; and a ``face_detector: "yunet"`` job end to end through a real face worker."""

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

from tests.api.conftest import AppFactory
from tests.workers.test_face_yunet import EXPECTED, FACES, iou, trbl
from visionq.face_budget import (
    DEFAULT_FACE_MAX_SCAN_PIXELS,
    YUNET_PIXEL_WEIGHT,
    FaceCostTooHighError,
    scan_pixels,
)
from visionq.imaging import DecodedImage
from visionq.settings import Settings
from workers import weights
from workers.install import yunet as install_yunet
from workers.plugins.face_recognition_model import FaceRecognitionModel

WIDTH, HEIGHT = 4000, 3000
"""12 MP: ``upsample: 0`` is 12 MP for HOG (accepted) and 48 MP for YuNet (refused)."""


@pytest.fixture(scope="module")
def black_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (WIDTH, HEIGHT)).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def yunet_installed() -> None:
    base = Settings().models_dir
    if weights.YUNET.installed_manifest(weights.YUNET.model_dir(base)) is None:
        install_yunet.install(base)


def _submit(client: FlaskClient, image: bytes, options: dict[str, Any]) -> Any:
    return client.post("/v1/jobs?task=face", data={
        "image": (io.BytesIO(image), "x.png"), "options": json.dumps(options)})


def _queued(redis_url: str) -> int:
    return int(redis.Redis.from_url(redis_url).llen("face"))


def test_yunet_pixels_weigh_four() -> None:
    assert scan_pixels(1000, 0, None, model="yunet") == 4000
    assert scan_pixels(1000, 1, None, model="yunet") == 16000
    # a promised face of m px is scanned at 32 px: (32 / 64)^2 x 4 = 1
    assert scan_pixels(1000, None, 64, model="yunet") == 1000
    assert scan_pixels(1000, None, 64, model="hog") == 1563  # (80 / 64)^2


@pytest.mark.parametrize(("settings", "options"), [
    ({"face_detector": "hog"}, {"face_detector": "yunet", "upsample": 0}),
    ({"face_detector": "yunet"}, {"upsample": 0}),  # the server's detector
    ({}, {"upsample": 0}),  # the default detector (yunet)
])
def test_yunet_over_budget_is_refused_at_submit(
        idle_redis_url: str, make_client: AppFactory, black_png: bytes,
        settings: dict[str, Any], options: dict[str, Any]) -> None:
    client = make_client(idle_redis_url, **settings)
    before = _queued(idle_redis_url)
    response = _submit(client, black_png, options)
    body = response.get_json()
    assert response.status_code == 400, body
    assert body["code"] == "face_cost_too_high"
    assert f"{WIDTH * HEIGHT * YUNET_PIXEL_WEIGHT:,}" in body["error"] and "yunet" in body["error"]
    assert f"{DEFAULT_FACE_MAX_SCAN_PIXELS:,}" in body["error"]
    assert _queued(idle_redis_url) == before


@pytest.mark.parametrize(("settings", "options"), [
    ({"face_detector": "hog"}, {"upsample": 0}),  # HOG: 12 MP counted
    ({"face_detector": "yunet"}, {"face_detector": "hog", "upsample": 0}),
    ({"face_detector": "yunet"}, {"model": "hog", "upsample": 0}),  # the older name
    ({"face_detector": "hog"}, {"face_detector": "yunet"}),  # YuNet's default scale
    ({}, {}),  # the default detector (yunet) at its default scale: not a caller's choice
])
def test_within_budget_is_accepted(idle_redis_url: str, make_client: AppFactory,
                                   black_png: bytes, settings: dict[str, Any],
                                   options: dict[str, Any]) -> None:
    client = make_client(idle_redis_url, **settings)
    before = _queued(idle_redis_url)
    response = _submit(client, black_png, options)
    assert response.status_code == 202, response.get_json()
    assert _queued(idle_redis_url) == before + 1


@pytest.mark.parametrize(("settings", "options", "message"), [
    ({"face_detector": "hog"}, {"landmarks": "yunet"}, "default is 'hog'"),
    ({}, {"face_detector": "cnn", "landmarks": "yunet"}, "needs face_detector 'yunet'"),
    ({}, {"model": "cnn", "face_detector": "yunet"}, "disagree"),
    ({}, {"face_detector": "dlib"}, "face_detector"),
])
def test_bad_detector_options_are_400(idle_redis_url: str, make_client: AppFactory,
                                      settings: dict[str, Any], options: dict[str, Any],
                                      message: str) -> None:
    client = make_client(idle_redis_url, **settings)
    response = _submit(client, (FACES / "obama_small.jpg").read_bytes(), options)
    body = response.get_json()
    assert response.status_code == 400, body
    assert body["code"] == "invalid_options" and message in body["error"], body


def test_the_worker_refuses_yunet_over_budget_without_detecting(yunet_installed: None) -> None:
    """Queued by an older API: 12 MP with YuNet at full size (48 MP counted)."""
    model = FaceRecognitionModel(Settings())
    model.load()
    image = DecodedImage.from_array(np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    started = time.process_time()
    with pytest.raises(FaceCostTooHighError) as refused:
        model.predict([image], {"face_detector": "yunet", "upsample": 0, "landmarks": "none"})
    assert time.process_time() - started < 0.5
    assert f"{WIDTH * HEIGHT * YUNET_PIXEL_WEIGHT:,}" in refused.value.message


def test_a_yunet_job_end_to_end(yunet_installed: None, face_worker: subprocess.Popen,
                                redis_url: str, make_client: AppFactory) -> None:
    """Through the API and the real face worker (default detector hog): the job's
    ``face_detector: "yunet"`` runs YuNet (its 5 points), boxes on the fixture's faces."""
    client = make_client(redis_url)
    response = client.post("/v1/jobs?task=face&wait=60", data={
        "image": (io.BytesIO((FACES / "two_people.jpg").read_bytes()), "two_people.jpg"),
        "options": json.dumps({"face_detector": "yunet", "landmarks": "yunet",
                               "encodings": True})})
    job = response.get_json()
    assert job["status"] == "succeeded", job
    assert job["result"]["face_detector"] == "yunet"
    faces = job["result"]["faces"]
    expected = [face["box_trbl"] for face in EXPECTED["two_people.jpg"]["faces"]]
    assert len(faces) == len(expected)
    for box in expected:
        assert max(iou(box, trbl(face)) for face in faces) >= 0.5
    for face in faces:
        assert sorted(face["landmarks"]) == sorted(
            ["right_eye", "left_eye", "nose_tip", "mouth_right", "mouth_left"])
        assert len(face["encoding"]) == 128
    assert face_worker.poll() is None
