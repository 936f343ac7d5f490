"""The face plugin with ``face_detector: "yunet"`` (real YuNet weights, installed as
``visionq install-models`` does; real dlib landmarks and encodings on its boxes), the
option's older name ``model``, and ``VISIONQ_FACE_DETECTOR``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from visionq.imaging import decode, probe
from visionq.options import FaceOptions
from visionq.settings import Settings
from workers import weights
from workers.install import yunet as install_yunet
from workers.plugins import yunet
from workers.plugins.face_recognition_model import FaceRecognitionModel

FACES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "faces"
EXPECTED: dict[str, dict[str, Any]] = json.loads((FACES / "expected.json").read_text())["images"]
YUNET = {"face_detector": "yunet"}


def iou(a: list[int], b: list[int]) -> float:
    """IoU of two [top, right, bottom, left] boxes."""
    top, right, bottom, left = (max(a[0], b[0]), min(a[1], b[1]), min(a[2], b[2]),
                                max(a[3], b[3]))
    inter = max(right - left, 0) * max(bottom - top, 0)
    area = (a[1] - a[3]) * (a[2] - a[0]) + (b[1] - b[3]) * (b[2] - b[0])
    return inter / (area - inter)


@pytest.fixture(scope="module")
def settings() -> Settings:
    base = Settings()
    if weights.YUNET.installed_manifest(weights.YUNET.model_dir(base.models_dir)) is None:
        install_yunet.install(base.models_dir)
    return base


@pytest.fixture(scope="module")
def model(settings: Settings) -> FaceRecognitionModel:
    loaded = FaceRecognitionModel(settings)
    loaded.load()
    return loaded


def run(model: FaceRecognitionModel, name: str, options: dict[str, Any]) -> dict[str, Any]:
    """As the runner does: decode as ``max_side_for`` says (without the job's options)."""
    data = (FACES / name).read_bytes()
    image = decode(data, max_side=model.max_side_for(probe(data)))
    return model.predict([image], options)[0]


def trbl(face: dict[str, Any]) -> list[int]:
    return [face["y_min"], face["x_max"], face["y_max"], face["x_min"]]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_faces_match_at_iou_half(model: FaceRecognitionModel, name: str) -> None:
    """At the default scale, every fixture face (HOG's box) is found at IoU >= 0.5 with
    YuNet's box, nothing else on these photos, with YuNet's confidence."""
    result = run(model, name, {**YUNET, "landmarks": "none"})
    assert result["face_detector"] == "yunet"
    expected = [face["box_trbl"] for face in EXPECTED[name]["faces"]]
    found = [trbl(face) for face in result["faces"]]
    for box in expected:
        assert max((iou(box, f) for f in found), default=0) >= 0.5, (box, found)
    extra = [f for f in found if max((iou(f, box) for box in expected), default=0) < 0.5]
    if name == "obama_and_biden.jpg":  # a fourth face in the background HOG misses
        assert len(extra) <= 1, found
    else:
        assert extra == [], found
    assert all(yunet.SCORE_THRESHOLD <= f["confidence"] <= 1 for f in result["faces"])


def test_encodings_on_yunet_boxes_identify_the_same_people(model: FaceRecognitionModel) -> None:
    """dlib's encodings on YuNet's (dlib-style) boxes: obama matches obama2 and not biden at
    face_recognition's tolerance, as with HOG's boxes."""
    def encoding(name: str) -> Any:
        import numpy as np
        faces = run(model, name, {**YUNET, "encodings": True, "landmarks": "none"})["faces"]
        assert len(faces) == 1
        return np.array(faces[0]["encoding"])

    import numpy as np
    obama, obama2, biden = encoding("obama.jpg"), encoding("obama2.jpg"), encoding("biden.jpg")
    assert np.linalg.norm(obama - obama2) < 0.6 < np.linalg.norm(obama - biden)


def test_yunet_landmarks_are_its_five_points(model: FaceRecognitionModel) -> None:
    face = run(model, "obama.jpg", {**YUNET, "landmarks": "yunet"})["faces"][0]
    assert list(face["landmarks"]) == list(yunet.LANDMARK_NAMES)
    (right_eye,), (left_eye,) = face["landmarks"]["right_eye"], face["landmarks"]["left_eye"]
    (nose,), (mouth_r,) = face["landmarks"]["nose_tip"], face["landmarks"]["mouth_right"]
    assert face["x_min"] < right_eye[0] < nose[0] < left_eye[0] < face["x_max"]
    assert face["y_min"] < right_eye[1] < nose[1] < mouth_r[1] < face["y_max"]
    dlib68 = run(model, "obama.jpg", YUNET)["faces"][0]["landmarks"]
    assert "chin" in dlib68 and len(dlib68["chin"]) == 17  # dlib's 68 on YuNet's box


def test_option_model_is_the_older_name(model: FaceRecognitionModel) -> None:
    assert FaceOptions().detector("yunet") == "yunet"
    assert FaceOptions(model="hog").detector("yunet") == "hog"
    assert FaceOptions(model="cnn", face_detector="cnn").detector("hog") == "cnn"
    with pytest.raises(ValidationError, match="disagree"):
        FaceOptions.model_validate({"model": "hog", "face_detector": "yunet"})
    with pytest.raises(ValidationError, match="needs face_detector 'yunet'"):
        FaceOptions.model_validate({"face_detector": "hog", "landmarks": "yunet"})
    hog = run(model, "two_people.jpg", {"model": "hog", "landmarks": "none"})
    assert all(f["confidence"] > 0.99 for f in hog["faces"])  # HOG's calibrated scores


def test_setting_chooses_the_default_detector(settings: Settings) -> None:
    """``VISIONQ_FACE_DETECTOR=yunet``: jobs without the option run YuNet, its default
    decode follows YuNet's scale, and an explicit ``hog`` still runs HOG."""
    chosen = FaceRecognitionModel(settings.model_copy(update={"face_detector": "yunet"}))
    chosen.load()
    plain = FaceRecognitionModel(settings.model_copy(update={"face_detector": "hog"}))
    plain.load()
    info = probe((FACES / "obama3.jpg").read_bytes())  # 1434x2333: 3.3 MP
    assert chosen.max_side_for(info) < (plain.max_side_for(info) or max(info.width,
                                                                         info.height))
    assert run(plain, "obama_small.jpg", {"landmarks": "none"})["face_detector"] == "hog"
    assert run(chosen, "obama_small.jpg", {"landmarks": "none"})["face_detector"] == "yunet"
    by_default = run(chosen, "obama.jpg", {"landmarks": "yunet"})["faces"]
    assert list(by_default[0]["landmarks"]) == list(yunet.LANDMARK_NAMES)
    hog = run(chosen, "obama.jpg", {"face_detector": "hog", "landmarks": "none"})["faces"]
    assert iou(trbl(hog[0]), EXPECTED["obama.jpg"]["faces"][0]["box_trbl"]) >= 0.5
    assert hog[0]["confidence"] > 0.99 > by_default[0]["confidence"]  # HOG's calibration


def test_missing_weights_is_a_clear_load_error(tmp_path: Path, settings: Settings) -> None:
    from workers.model import ModelLoadError

    empty = settings.model_copy(update={"face_detector": "yunet", "models_dir": tmp_path})
    with pytest.raises(ModelLoadError, match="install-models"):
        FaceRecognitionModel(empty).load()


def test_upsample_enlarges_yunets_input(model: FaceRecognitionModel) -> None:
    """``upsample: 1`` on a small photo: YuNet scans it at twice the size, boxes still in
    original pixels."""
    once = run(model, "obama-240p.jpg", {**YUNET, "upsample": 1, "landmarks": "none"})
    expected = EXPECTED["obama-240p.jpg"]["faces"][0]["box_trbl"]
    assert len(once["faces"]) == 1 and iou(trbl(once["faces"][0]), expected) >= 0.5
