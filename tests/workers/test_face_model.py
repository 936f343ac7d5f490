"""face_recognition plugin against the shared face fixtures, with the real dlib models.

``../shared/fixtures/faces/expected.json`` holds ``face_recognition``'s own answers for each
fixture (boxes at one and zero upsamples, obama's 68 landmarks); the plugin must return the
same boxes in DeepStack order, and the same boxes in original pixels when a big photo takes
the reduced-size decode path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from visionq.imaging import DecodedImage, decode, probe
from visionq.options import FaceOptions
from visionq.settings import Settings
from workers.model import Model
from workers.plugins.face_recognition_model import (
    DEFAULT_FAST_ABOVE,
    DEFAULT_FAST_SIDE,
    FaceRecognitionModel,
    FaceSettings,
)

FACES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "faces"
EXPECTED: dict[str, dict[str, Any]] = json.loads((FACES / "expected.json").read_text())["images"]
TOLERANCE_PX = 2
"""expected.json: HOG boxes are deterministic for one dlib build, +-2 px across builds."""


@pytest.fixture(scope="module")
def model() -> FaceRecognitionModel:
    loaded = FaceRecognitionModel(Settings())
    loaded.load()
    return loaded


def image(name: str, max_side: int | None = None) -> DecodedImage:
    return decode((FACES / name).read_bytes(), max_side=max_side)


def boxes(result: dict[str, Any]) -> list[list[int]]:
    """DeepStack order (x_min, y_min, x_max, y_max) -> face_recognition's [t, r, b, l]."""
    return [[f["y_min"], f["x_max"], f["y_max"], f["x_min"]] for f in result["faces"]]


def close(found: list[list[int]], expected: list[list[int]], tolerance: float) -> bool:
    return len(found) == len(expected) and all(
        abs(a - b) <= tolerance for f, e in zip(sorted(found), sorted(expected), strict=True)
        for a, b in zip(f, e, strict=True))


def iou(a: list[int], b: list[int]) -> float:
    top, right, bottom, left = (max(a[0], b[0]), min(a[1], b[1]), min(a[2], b[2]),
                                max(a[3], b[3]))
    inter = max(right - left, 0) * max(bottom - top, 0)
    area = (a[1] - a[3]) * (a[2] - a[0]) + (b[1] - b[3]) * (b[2] - b[0])
    return inter / (area - inter)


def test_implements_the_protocol(model: FaceRecognitionModel) -> None:
    assert isinstance(model, Model)
    assert (model.name, model.task, model.extra) == ("face_recognition", "face", "face")
    assert model.options is FaceOptions
    assert model.fork_safe and model.input_size is None
    assert model.version.startswith("face_recognition ") and "/models " in model.version


@pytest.mark.parametrize("name", ["obama.jpg", "obama_small.jpg", "two_people.jpg",
                                  "obama_partial_face.jpg", "000000000009.jpg"])
def test_boxes_are_face_recognitions(model: FaceRecognitionModel, name: str) -> None:
    expected = EXPECTED[name]
    result = model.predict([image(name)], {"landmarks": "none"})[0]
    assert (result["model"], result["model_version"]) == (model.name, model.version)
    assert (result["width"], result["height"]) == (expected["width"], expected["height"])
    assert close(boxes(result), [f["box_trbl"] for f in expected["faces"]], TOLERANCE_PX)
    assert all("landmarks" not in face and "encoding" not in face for face in result["faces"])


def test_upsample_option(model: FaceRecognitionModel) -> None:
    result = model.predict([image("obama.jpg")], {"upsample": 0, "landmarks": "none"})[0]
    assert close(boxes(result), EXPECTED["obama.jpg"]["boxes_trbl_upsample0"], TOLERANCE_PX)


def test_default_options_give_68_landmarks_and_no_encodings(model: FaceRecognitionModel) -> None:
    face = model.predict([image("obama.jpg")], {})[0]["faces"][0]
    expected = EXPECTED["obama.jpg"]["landmarks_68"]
    assert set(face["landmarks"]) == set(expected)
    for part, points in expected.items():
        assert len(face["landmarks"][part]) == len(points)
        assert all(abs(a - b) <= TOLERANCE_PX for p, q in zip(face["landmarks"][part], points,
                                                                strict=True)
                   for a, b in zip(p, q, strict=True)), part
    assert "encoding" not in face


def test_five_point_landmarks_and_encodings(model: FaceRecognitionModel) -> None:
    face = model.predict([image("obama.jpg")], {"landmarks": "5", "encodings": True})[0]["faces"][0]
    assert set(face["landmarks"]) == {"nose_tip", "left_eye", "right_eye"}
    assert len(face["encoding"]) == 128 and all(isinstance(v, float) for v in face["encoding"])


def test_one_result_per_image_in_order(model: FaceRecognitionModel) -> None:
    names = ["two_people.jpg", "000000000009.jpg", "obama_small.jpg"]
    results = model.predict([image(n) for n in names], {"landmarks": "none"})
    assert [len(r["faces"]) for r in results] == [EXPECTED[n]["face_count"] for n in names]


@pytest.mark.parametrize("options", [{"model": "yolo"}, {"upsample": 9}, {"upsample": "1"},
                                     {"landmarks": 68}, {"encodings": 1}, {"colour": True}])
def test_bad_options_raise_value_error(model: FaceRecognitionModel,
                                       options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        model.predict([image("obama_small.jpg")], options)


def test_max_side_for_takes_the_fast_path_only_for_big_photos(
        model: FaceRecognitionModel) -> None:
    assert (model.config.fast_above, model.config.fast_side) == (DEFAULT_FAST_ABOVE,
                                                                 DEFAULT_FAST_SIDE)
    assert model.max_side_for(probe((FACES / "obama3.jpg").read_bytes())) is None  # 2333 px
    small = FaceRecognitionModel(fast_above=2000, fast_side=800)
    assert small.max_side_for(probe((FACES / "obama3.jpg").read_bytes())) == 800
    assert small.max_side_for(probe((FACES / "obama.jpg").read_bytes())) is None
    never = FaceRecognitionModel(fast_above=0)
    assert never.max_side_for(probe((FACES / "obama3.jpg").read_bytes())) is None


def test_fast_path_boxes_are_in_original_pixels(model: FaceRecognitionModel) -> None:
    """obama_and_biden.jpg (2000 px) over a 1500 px threshold is decoded at half size; the
    three faces come back where full-resolution detection puts them (IoU >= 0.5: HOG's
    box sizes step with the pyramid level, so half size + one upsample draws the boxes of
    full size + no upsample, which expected.json also holds)."""
    fast = FaceRecognitionModel(fast_above=1500, fast_side=1000)
    fast.load()
    data = (FACES / "obama_and_biden.jpg").read_bytes()
    max_side = fast.max_side_for(probe(data))
    assert max_side == 1000
    reduced = decode(data, max_side=max_side)
    assert reduced.scale == 2 and (reduced.width, reduced.height) == (2000, 1428)
    result = fast.predict([reduced], {"landmarks": "none"})[0]
    expected = [f["box_trbl"] for f in EXPECTED["obama_and_biden.jpg"]["faces"]]
    found = boxes(result)
    assert len(found) == len(expected)
    for box in expected:
        assert max(iou(box, other) for other in found) >= 0.5, (box, found)
    upsample0 = EXPECTED["obama_and_biden.jpg"]["boxes_trbl_upsample0"]
    assert close(found[:2], upsample0[:2], 2 * reduced.scale + TOLERANCE_PX)
    for face in result["faces"]:
        assert 0 <= face["x_min"] < face["x_max"] <= 2000
        assert 0 <= face["y_min"] < face["y_max"] <= 1428


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISIONQ_FACE_FAST_ABOVE", "3000")
    monkeypatch.setenv("VISIONQ_FACE_FAST_SIDE", "1200")
    assert FaceSettings().model_dump() == {"fast_above": 3000, "fast_side": 1200}
    configured = FaceRecognitionModel(Settings())
    assert (configured.config.fast_above, configured.config.fast_side) == (3000, 1200)
    assert FaceRecognitionModel(fast_side=640).config.fast_side == 640  # keyword wins
    monkeypatch.setenv("VISIONQ_FACE_FAST_SIDE", "0")
    with pytest.raises(ValueError, match="fast_side"):
        FaceRecognitionModel()
