"""EfficientNet-Lite0 plugin against the shared ImageNet fixtures, with the real weights.

The preprocessing is pinned to the winner of ``python -m bench classify-eval`` (1,300
labelled ImageNet validation images): EfficientNet's 224/256 centre crop, bicubic, pixels
encoded with the input tensor's quantisation parameters from (p - 127) / 128."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from visionq.imaging import DecodedImage, ImageInfo, decode, probe
from workers.model import Model, ModelLoadError
from workers.plugins.efficientnet_lite0 import (
    DEFAULT_PREPROCESSING,
    REFERENCE_CROP,
    EfficientNetLite0,
    Preprocessing,
    preprocess,
    quantize_input,
)

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
CLASSIFY = FIXTURES / "classify"
LABELS: dict[str, dict[str, Any]] = json.loads((CLASSIFY / "labels.json").read_text())["images"]
EVALUATION = Path(__file__).resolve().parents[2] / "bench" / "results" / "classify_eval.json"

@pytest.fixture(scope="module")
def model() -> EfficientNetLite0:
    loaded = EfficientNetLite0(num_threads=1)
    loaded.load()
    return loaded


def fixture_image(name: str, max_side: int | None | str = "worker") -> DecodedImage:
    """Decoded as the worker decodes it (``max_side_for``), or at ``max_side``."""
    data = (CLASSIFY / name).read_bytes()
    if max_side == "worker":
        max_side = EfficientNetLite0().max_side_for(probe(data))
    return decode(data, max_side=max_side)  # type: ignore[arg-type]


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


def test_default_preprocessing_is_the_evaluations_best() -> None:
    """The plugin's default is the variant with the best top-1 in the committed
    ``bench/results/classify_eval.json`` (and EfficientNet's reference evaluation)."""
    reference = Preprocessing(crop=224 / 256, resample="bicubic", input="quantized")
    assert reference == DEFAULT_PREPROCESSING
    evaluation = json.loads(EVALUATION.read_text())
    variants = evaluation["variants"]
    best = max(variants, key=lambda v: variants[v]["top1"])
    assert variants[best]["preprocessing"] == DEFAULT_PREPROCESSING.describe()
    assert evaluation["images"] == 1300
    before = variants["square/bilinear/raw (before #17)"]["top1"]
    assert variants[best]["top1"] >= before + 0.04


def test_quantized_input_encodes_the_float_graphs_normalisation(
        model: EfficientNetLite0) -> None:
    """(p - 127) / 128 in the input tensor's uint8 encoding (scale 0.012566, zero point 131):
    127 -> the zero point, 0 -> 52, 255 -> 211."""
    scale, zero_point = model._input_quantization
    assert (round(scale, 6), zero_point) == (0.012566, 131)
    pixels = np.array([[[0, 127, 255]]], np.uint8)
    assert quantize_input(pixels, scale, zero_point).tolist() == [[[52, 131, 211]]]


def test_prepare_is_reference_crop_bicubic_then_quantized(model: EfficientNetLite0) -> None:
    pixels = fixture_image("pytorch_hub_dog_640.jpg").pixels
    expected = quantize_input(preprocess(pixels, crop=REFERENCE_CROP, resample="bicubic"),
                              *model._input_quantization)
    prepared = model.prepare(pixels)
    assert prepared.shape == (224, 224, 3) and prepared.dtype == np.uint8
    assert np.array_equal(prepared, expected)
    raw = model.prepare(pixels, Preprocessing(crop=1.0, resample="bilinear", input="raw"))
    assert np.array_equal(raw, preprocess(pixels, crop=1.0, resample="bilinear"))


@pytest.mark.parametrize(("width", "height", "max_side"), [
    (1920, 1080, 456), (1080, 1920, 456), (4000, 3000, 342), (227, 227, 256), (100, 50, 512)])
def test_decode_keeps_the_shorter_side_for_the_crop(width: int, height: int,
                                                    max_side: int) -> None:
    """The reduced JPEG decode keeps >= 256 px on the shorter side (224 / 0.875), so a 16:9
    photo is not cropped from a 135 px strip."""
    info = ImageInfo(format="JPEG", width=width, height=height, orientation=1)
    assert EfficientNetLite0().max_side_for(info) == max_side
