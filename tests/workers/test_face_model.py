"""face_recognition plugin against the shared face fixtures, with the real dlib models.

``../shared/fixtures/faces/expected.json`` holds ``face_recognition``'s own answers for each
fixture (boxes at one and zero upsamples, obama's 68 landmarks); the plugin must return the
same boxes in DeepStack order where the photo is decoded at full size and scanned at
face_recognition's scale (small photos by default, any full-size decode with an explicit
``upsample``), and boxes in original pixels when the decode-scale policy
(``workers/plugins/face_scale.py``) takes a reduced-size decode or a resize.

These are HOG's answers: the plugin here is a worker whose ``VISIONQ_FACE_DETECTOR`` is
``hog`` (the default is ``yunet``, whose boxes ``test_face_yunet.py`` checks against the
same fixtures by IoU).
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
    HOG_CALIBRATION,
    FaceRecognitionModel,
    FaceSettings,
    hog_confidence,
)
from workers.plugins.face_scale import DEFAULT_PIXEL_BUDGET, DetectionPlan

FACES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "faces"
EXPECTED: dict[str, dict[str, Any]] = json.loads((FACES / "expected.json").read_text())["images"]
TOLERANCE_PX = 2
"""expected.json: HOG boxes are deterministic for one dlib build, +-2 px across builds."""


@pytest.fixture(scope="module")
def model() -> FaceRecognitionModel:
    loaded = FaceRecognitionModel(Settings(face_detector="hog"))  # face_recognition's boxes
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
                                  "obama_partial_face.jpg", "000000000009.jpg", "obama3.jpg"])
def test_boxes_are_face_recognitions_at_full_size(model: FaceRecognitionModel,
                                                  name: str) -> None:
    """An explicit ``upsample`` on a photo decoded at full size: face_recognition's boxes."""
    expected = EXPECTED[name]
    result = model.predict([image(name)], {"upsample": 1, "landmarks": "none"})[0]
    assert (result["model"], result["model_version"]) == (model.name, model.version)
    assert (result["width"], result["height"]) == (expected["width"], expected["height"])
    assert close(boxes(result), [f["box_trbl"] for f in expected["faces"]], TOLERANCE_PX)
    assert all("landmarks" not in face and "encoding" not in face for face in result["faces"])


@pytest.mark.parametrize("name", ["obama_small.jpg", "obama-240p.jpg", "000000000009.jpg",
                                  "000000000025.jpg"])
def test_small_photos_get_face_recognitions_boxes_by_default(model: FaceRecognitionModel,
                                                             name: str) -> None:
    """Up to pixel_budget / 4 (~0.4 MP) the default plan is face_recognition's own: full size,
    one upsample, no resize."""
    data = (FACES / name).read_bytes()
    assert model.max_side_for(probe(data)) is None
    decoded = decode(data)
    assert model.detection_plan(decoded, FaceOptions()) == DetectionPlan(resize=1.0, upsample=1)
    result = model.predict([decoded], {"landmarks": "none"})[0]
    assert close(boxes(result), [f["box_trbl"] for f in EXPECTED[name]["faces"]], TOLERANCE_PX)


@pytest.mark.parametrize("name", ["obama.jpg", "two_people.jpg", "biden.jpg", "obama3.jpg",
                                  "obama_and_biden.jpg", "obama_partial_face2.jpg"])
def test_default_policy_finds_the_same_faces_in_original_pixels(
        model: FaceRecognitionModel, name: str) -> None:
    """Bigger photos are scanned at fewer pixels (a resize, or a reduced JPEG decode): every
    face face_recognition finds is found (IoU >= 0.5; HOG's box sizes step with the pyramid
    level), in original-image pixels."""
    data = (FACES / name).read_bytes()
    decoded = decode(data, max_side=model.max_side_for(probe(data)))
    assert model.detection_plan(decoded, FaceOptions()) != DetectionPlan(1.0, 1)
    result = model.predict([decoded], {"landmarks": "none"})[0]
    expected = [f["box_trbl"] for f in EXPECTED[name]["faces"]]
    found = boxes(result)
    assert len(found) == len(expected)
    for box in expected:
        assert max(iou(box, other) for other in found) >= 0.5, (box, found)
    for face in result["faces"]:
        assert 0 <= face["x_min"] < face["x_max"] <= result["width"]
        assert 0 <= face["y_min"] < face["y_max"] <= result["height"]


def test_upsample_option(model: FaceRecognitionModel) -> None:
    result = model.predict([image("obama.jpg")], {"upsample": 0, "landmarks": "none"})[0]
    assert close(boxes(result), EXPECTED["obama.jpg"]["boxes_trbl_upsample0"], TOLERANCE_PX)


def test_default_options_give_68_landmarks_and_no_encodings(model: FaceRecognitionModel) -> None:
    face = model.predict([image("obama.jpg")], {"upsample": 1})[0]["faces"][0]
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


def test_default_policy_landmarks_are_close_to_full_size(model: FaceRecognitionModel) -> None:
    """Landmarks are fitted on the decoded pixels (not the resized scan): the default plan's
    68 points stay within a few pixels of face_recognition's on a 1 MP photo."""
    face = model.predict([image("obama.jpg")], {})[0]["faces"][0]
    expected = EXPECTED["obama.jpg"]["landmarks_68"]
    errors = [abs(a - b) for part, points in expected.items()
              for p, q in zip(face["landmarks"][part], points, strict=True)
              for a, b in zip(p, q, strict=True)]
    assert sorted(errors)[len(errors) // 2] <= 3 and max(errors) <= 15


@pytest.mark.parametrize("options", [{"model": "yolo"}, {"upsample": 9}, {"upsample": "1"},
                                     {"landmarks": 68}, {"encodings": 1}, {"colour": True},
                                     {"min_face_px": 10}, {"min_face_px": "40"},
                                     {"min_face_px": 20_000}, {"min_face_px": 40.5}])
def test_bad_options_raise_value_error(model: FaceRecognitionModel,
                                       options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        model.predict([image("obama_small.jpg")], options)


def test_min_face_px_trades_small_faces_for_cost(model: FaceRecognitionModel) -> None:
    """obama-240p.jpg's face is 62 px tall: found by default (min 40 px), not when only faces
    of >= 120 px are asked for (the photo is then scanned at 2/3 of its size, 1/9 of the
    pixels)."""
    decoded = image("obama-240p.jpg")
    assert len(model.predict([decoded], {"landmarks": "none"})[0]["faces"]) == 1
    plan = model.detection_plan(decoded, FaceOptions(min_face_px=120))
    assert plan.upsample == 0 and plan.resize == pytest.approx(80 / 120)
    assert model.predict([decoded], {"min_face_px": 120, "landmarks": "none"})[0]["faces"] == []


def test_max_side_for_follows_the_policy(model: FaceRecognitionModel) -> None:
    """Reduced-size JPEG decoding from the pixel count and min_face_px: a 12 MP photo's
    default (faces >= 220 px) decodes at 1/2, min_face_px 400 at 1/4, an explicit upsample
    and small photos at full size."""
    twelve = big_jpeg(4000, 3000)
    info = probe(twelve)
    assert model.min_face_px(4000, 3000, FaceOptions()) == 220
    assert model.max_side_for(info) == 2000
    assert model.max_side_for(info, {"min_face_px": 400}) == 1000
    assert model.max_side_for(info, {"min_face_px": 40}) is None
    assert model.max_side_for(info, {"upsample": 1}) is None
    assert model.max_side_for(probe((FACES / "obama3.jpg").read_bytes())) is None  # 3.3 MP
    tight = FaceRecognitionModel(Settings(face_detector="hog"), pixel_budget=200_000)
    assert tight.max_side_for(probe((FACES / "obama3.jpg").read_bytes())) == 584  # 1/4


def big_jpeg(width: int, height: int) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 150)).save(out, "JPEG", quality=50)
    return out.getvalue()


def test_reduced_decode_boxes_are_in_original_pixels(model: FaceRecognitionModel) -> None:
    """obama_and_biden.jpg (2000 px) asked for faces >= 160 px is decoded at half size (DCT
    scaling) and scanned as decoded; the three faces come back where full-resolution
    detection puts them (IoU >= 0.5)."""
    data = (FACES / "obama_and_biden.jpg").read_bytes()
    options = {"min_face_px": 160, "landmarks": "none"}
    max_side = model.max_side_for(probe(data), options)
    assert max_side == 1000
    reduced = decode(data, max_side=max_side)
    assert reduced.scale == 2 and (reduced.width, reduced.height) == (2000, 1428)
    assert model.detection_plan(reduced, FaceOptions(min_face_px=160)) == DetectionPlan(1.0, 0)
    result = model.predict([reduced], options)[0]
    expected = [f["box_trbl"] for f in EXPECTED["obama_and_biden.jpg"]["faces"]]
    found = boxes(result)
    assert len(found) == len(expected)
    for box in expected:
        assert max(iou(box, other) for other in found) >= 0.5, (box, found)
    for face in result["faces"]:
        assert 0 <= face["x_min"] < face["x_max"] <= 2000
        assert 0 <= face["y_min"] < face["y_max"] <= 1428


def test_reduced_decode_keeps_the_exif_orientation(model: FaceRecognitionModel) -> None:
    """The same photo stored rotated (EXIF orientation 6) takes the same reduced decode and
    its boxes come back in the upright frame."""
    import io

    from PIL import Image

    upright = Image.open(FACES / "obama_and_biden.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    upright.transpose(Image.Transpose.ROTATE_90).save(out, "JPEG", quality=92, exif=exif)
    data = out.getvalue()
    options = {"min_face_px": 160, "landmarks": "none"}
    reduced = decode(data, max_side=model.max_side_for(probe(data), options))
    assert reduced.scale == 2 and (reduced.width, reduced.height) == (2000, 1428)
    found = boxes(model.predict([reduced], options)[0])
    for box in [f["box_trbl"] for f in EXPECTED["obama_and_biden.jpg"]["faces"]]:
        assert max(iou(box, other) for other in found) >= 0.5, (box, found)


def test_faces_carry_a_calibrated_confidence(model: FaceRecognitionModel) -> None:
    """HOG: dlib's score through the fitted logistic (0.115 at the detector's threshold, 0.5
    at score 0.25); clear frontal faces score high, and no face is absent."""
    assert hog_confidence(0.0) == pytest.approx(0.115, abs=0.001)
    assert hog_confidence(0.25) == pytest.approx(0.5, abs=0.01)
    assert hog_confidence(-1) < hog_confidence(0.3) < hog_confidence(1) < 1
    for name in ("obama.jpg", "two_people.jpg", "obama_small.jpg"):
        faces = model.predict([image(name)], {"landmarks": "none"})[0]["faces"]
        assert faces and all(0.9 <= face["confidence"] <= 1 for face in faces), (name, faces)


def test_calibration_is_the_benchs_fit() -> None:
    """The constants are the logistic ``python -m bench faces`` fitted (committed results)."""
    results = Path(__file__).resolve().parents[2] / "bench" / "results" / "faces.json"
    fitted = json.loads(results.read_text())["hog_calibration"]
    assert (fitted["slope"], fitted["intercept"]) == HOG_CALIBRATION


def test_cnn_keeps_its_own_confidence(model: FaceRecognitionModel) -> None:
    faces = model.predict([image("obama_small.jpg")], {"model": "cnn", "landmarks": "none",
                                                       "upsample": 0})[0]["faces"]
    assert len(faces) == 1 and 0.5 <= faces[0]["confidence"] <= 1


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert FaceSettings().pixel_budget == DEFAULT_PIXEL_BUDGET
    monkeypatch.setenv("VISIONQ_FACE_PIXEL_BUDGET", "3000000")
    assert FaceSettings().model_dump() == {"pixel_budget": 3_000_000}
    configured = FaceRecognitionModel(Settings())
    assert configured.config.pixel_budget == 3_000_000
    assert configured.min_face_px(4000, 3000, FaceOptions()) == 160
    assert FaceRecognitionModel(pixel_budget=640_000).config.pixel_budget == 640_000
    monkeypatch.setenv("VISIONQ_FACE_PIXEL_BUDGET", "10")
    with pytest.raises(ValueError, match="pixel_budget"):
        FaceRecognitionModel()
