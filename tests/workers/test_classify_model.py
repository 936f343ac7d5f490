"""EfficientNet-Lite0 plugin against the shared ImageNet fixtures, with the real weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from visionq.imaging import DecodedImage, decode
from workers.model import Model, ModelLoadError
from workers.plugins.efficientnet_lite0 import EfficientNetLite0

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
CLASSIFY = FIXTURES / "classify"
LABELS: dict[str, dict[str, Any]] = json.loads((CLASSIFY / "labels.json").read_text())["images"]

@pytest.fixture(scope="module")
def model() -> EfficientNetLite0:
    loaded = EfficientNetLite0(num_threads=1)
    loaded.load()
    return loaded


def fixture_image(name: str, max_side: int | None = EfficientNetLite0.input_size) -> DecodedImage:
    return decode((CLASSIFY / name).read_bytes(), max_side=max_side)


def class_ids(result: dict[str, Any]) -> list[int]:
    return [p["class_id"] for p in result["predictions"]]


def test_implements_protocol(model: EfficientNetLite0) -> None:
    assert isinstance(model, Model)
    assert (model.name, model.task, model.extra) == ("efficientnet_lite0", "classify", "classify")
    assert model.version.endswith("aa03e4017f54")


def test_embedded_labels_match_imagenet_index_order(model: EfficientNetLite0) -> None:
    names = json.loads((FIXTURES / "imagenet_classes.json").read_text())["names"]
    assert model._labels == names


@pytest.mark.parametrize("name", sorted(LABELS))
def test_labelled_class_in_top5_and_top1_acceptable(model: EfficientNetLite0, name: str) -> None:
    expected = LABELS[name]
    image = fixture_image(name)
    result = model.predict([image], {})[0]
    assert (result["width"], result["height"]) == (expected["width"], expected["height"])
    assert expected["label_index"] in class_ids(result)
    top1 = result["predictions"][0]
    assert str(top1["class_id"]) in expected["acceptable_top1"], top1
    assert top1["label"] == expected["acceptable_top1"][str(top1["class_id"])]


@pytest.mark.parametrize(("name", "min_confidence"),
                         [("coco_000000000034_zebra.jpg", 0.9), ("coffee.png", 0.8)])
def test_clear_images_are_confident(model: EfficientNetLite0, name: str,
                                    min_confidence: float) -> None:
    top1 = model.predict([fixture_image(name)], {})[0]["predictions"][0]
    assert top1["class_id"] == LABELS[name]["label_index"]
    assert top1["confidence"] >= min_confidence


def test_result_shape_and_top_k(model: EfficientNetLite0) -> None:
    result = model.predict([fixture_image("coffee.png")], {"top_k": 3})[0]
    assert set(result) == {"model", "model_version", "width", "height", "predictions"}
    assert len(result["predictions"]) == 3
    confidences = [p["confidence"] for p in result["predictions"]]
    assert confidences == sorted(confidences, reverse=True)
    assert all(0 < c <= 1 for c in confidences)
    json.dumps(result)


@pytest.mark.parametrize("top_k", [0, -1, "5", 2.5, True])
def test_bad_top_k_is_rejected(model: EfficientNetLite0, top_k: object) -> None:
    with pytest.raises(ValueError, match="top_k"):
        model.predict([fixture_image("coffee.png")], {"top_k": top_k})


def test_batch_equals_single_calls(model: EfficientNetLite0) -> None:
    images = [fixture_image(name) for name in sorted(LABELS)]
    batched = model.predict(images, {"top_k": 10})
    assert batched == [model.predict([image], {"top_k": 10})[0] for image in images]


def test_full_and_draft_decode_agree_on_top1(model: EfficientNetLite0) -> None:
    name = "pytorch_hub_dog_640.jpg"
    full, draft = (model.predict([fixture_image(name, side)], {})[0] for side in (None, 224))
    assert class_ids(full)[0] == class_ids(draft)[0] == LABELS[name]["label_index"]


@pytest.mark.parametrize("pixels", [
    np.zeros((1, 1, 3), np.uint8),
    np.full((300, 200, 3), 128, np.uint8),
    np.full((7, 1000, 3), 255, np.uint8),
], ids=["1x1", "grey", "thin-white"])
def test_degenerate_images_do_not_crash(model: EfficientNetLite0, pixels: np.ndarray) -> None:
    result = model.predict([DecodedImage.from_array(pixels)], {})[0]
    assert (result["width"], result["height"]) == (pixels.shape[1], pixels.shape[0])
    assert len(result["predictions"]) <= 5
    assert all(0 < p["confidence"] <= 1 for p in result["predictions"])


def test_empty_batch(model: EfficientNetLite0) -> None:
    assert model.predict([], {}) == []


def test_missing_weights_file_is_a_load_error(tmp_path: Path) -> None:
    missing = EfficientNetLite0(model_path=tmp_path / "nope.tflite")
    with pytest.raises(ModelLoadError, match="does not exist"):
        missing.load()


def test_file_without_labels_is_a_load_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.tflite"
    bogus.write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match="label"):
        EfficientNetLite0(model_path=bogus).load()


def test_missing_weights_package_is_a_load_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("workers.plugins.efficientnet_lite0.WEIGHTS_PACKAGE", "no_such_pkg_x")
    with pytest.raises(ModelLoadError, match="visionq\\[classify\\]"):
        EfficientNetLite0().load()
