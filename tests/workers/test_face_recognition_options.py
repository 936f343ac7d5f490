"""The face plugin's recognition part with the real dlib models: CompreFace's ``limit`` and
``det_prob_threshold`` (chosen before landmarks and encodings), ``quality`` on every face,
and option ``recognize`` against the registry in a real Redis (``prediction_count``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from visionq.faces_registry import FaceRegistry
from visionq.imaging import DecodedImage, decode
from visionq.settings import Settings
from workers.plugins.face_recognition_model import FaceRecognitionModel, select_faces

FACES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "faces"


@pytest.fixture(scope="module")
def model() -> FaceRecognitionModel:
    loaded = FaceRecognitionModel(Settings())
    loaded.load()
    return loaded


def image(name: str) -> DecodedImage:
    return decode((FACES / name).read_bytes())


def test_select_faces_threshold_then_largest() -> None:
    small, large, middle = ((0, 10, 10, 0), 0.9), ((0, 50, 50, 0), 0.3), ((0, 30, 30, 0), 0.8)
    found = [small, large, middle]
    assert select_faces(found, None, 0) == found
    assert select_faces(found, None, 2) == [large, middle]  # detection order kept
    assert select_faces(found, 0.5, 1) == [middle]  # the largest is below the threshold
    assert select_faces(found, 0.95, 0) == []


def test_limit_keeps_the_largest_face(model: FaceRecognitionModel) -> None:
    every = model.predict([image("obama_and_biden.jpg")], {"landmarks": "none"})[0]["faces"]
    [kept] = model.predict([image("obama_and_biden.jpg")],
                           {"landmarks": "none", "limit": 1})[0]["faces"]
    def area(face: dict) -> int:
        return (face["x_max"] - face["x_min"]) * (face["y_max"] - face["y_min"])
    assert len(every) == 3 and area(kept) == max(map(area, every))


def test_det_prob_threshold_and_quality(model: FaceRecognitionModel) -> None:
    hog = {"landmarks": "none", "face_detector": "hog"}  # HOG's calibrated confidences
    faces = model.predict([image("obama_and_biden.jpg")], hog)[0]["faces"]
    assert len(faces) == 3  # the third face (nobody registered) scores ~0.15
    for face in faces:
        assert face["quality"]["size_px"] == face["y_max"] - face["y_min"]
        assert face["quality"]["sharpness"] > 0
    kept = model.predict([image("obama_and_biden.jpg")],
                         {**hog, "det_prob_threshold": 0.5})[0]["faces"]
    assert sorted(f["confidence"] for f in kept) == sorted(
        f["confidence"] for f in faces if f["confidence"] >= 0.5)
    assert len(kept) == 2


def test_recognize_option_names_faces_from_the_registry(idle_redis_url: str) -> None:
    worker = FaceRecognitionModel(Settings(redis_url=idle_redis_url))
    worker.load()
    registry = FaceRegistry(redis.Redis.from_url(idle_redis_url))
    for userid, name in (("obama", "obama.jpg"), ("biden", "biden.jpg")):
        [face] = worker.predict([image(name)], {"encodings": True})[0]["faces"]
        registry.add(userid, [face["encoding"]])
    faces = worker.predict([image("obama_and_biden.jpg")],
                           {"landmarks": "none", "recognize": True, "prediction_count": 2}
                           )[0]["faces"]
    assert sorted(f["userid"] for f in faces) == ["biden", "obama", "unknown"]
    for face in faces:
        assert "encoding" not in face  # encodings only when asked for
        assert [s["subject"] for s in face["subjects"]] in (["obama", "biden"],
                                                            ["biden", "obama"])
        assert face["distance"] == face["subjects"][0]["distance"]
        named = face["userid"] != "unknown"
        assert (face["unknown_reason"] is None) == named
        assert (face["similarity"] > 0.5) == named
