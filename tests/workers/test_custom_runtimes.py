"""Each custom model format on its real runtime (``workers.custom.model``): models built in
the test (``tests.workers.custom_builders``), known input -> known label and box."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.workers.custom_builders import (
    EXPECTED_CAT,
    colour_keras_model,
    colour_manifest,
    png,
    write_model,
    yolo_manifest,
    yolo_onnx,
)
from visionq.custom_models import find
from visionq.imaging import DecodedImage
from workers.custom.model import CustomModelPlugin
from workers.model import ModelLoadError


def image(colour: tuple[int, int, int], size: tuple[int, int] = (128, 128)) -> DecodedImage:
    return DecodedImage.from_array(np.asarray(Image.open(io.BytesIO(png(colour, size)))))


def plugin(root: Path, name: str) -> CustomModelPlugin:
    model = CustomModelPlugin(find(root, name))
    model.load()
    return model


@pytest.mark.parametrize("layout", ["yolov5", "yolov8"])
def test_yolo_onnx_finds_the_known_box(tmp_path: Path, layout: str) -> None:
    write_model(tmp_path, yolo_manifest("pets", layout), {"pets.onnx": yolo_onnx(layout)})
    model = plugin(tmp_path, "pets")
    white = model.predict([image((255, 255, 255))], {})[0]
    assert white["predictions"] == [EXPECTED_CAT]
    assert white["model"] == "pets" and white["model_version"] == "pets:1"
    assert model.predict([image((0, 0, 0))], {})[0]["predictions"] == []
    # a job's min_confidence above the score leaves the box out
    assert model.predict([image((255, 255, 255))], {"min_confidence": 0.95})[0][
        "predictions"] == []
    with pytest.raises(ValueError):
        model.predict([image((255, 255, 255))], {"min_confidence": "high"})


def test_a_bad_onnx_file_is_a_load_error(tmp_path: Path) -> None:
    write_model(tmp_path, yolo_manifest("junk", "yolov5"), {"junk.onnx": b"not onnx"})
    with pytest.raises(ModelLoadError, match="not a loadable ONNX model"):
        plugin(tmp_path, "junk")


@pytest.fixture(scope="module")
def keras_model():  # type: ignore[no-untyped-def]
    pytest.importorskip("tensorflow", reason="visionq[tensorflow] is not installed")
    return colour_keras_model()


def assert_colours(model: CustomModelPlugin) -> None:
    red = model.predict([image((255, 0, 0))], {"top_k": 2})[0]["predictions"]
    assert [p["label"] for p in red] == ["red", "green"]
    assert red[0]["confidence"] > 0.99
    blue = model.predict([image((0, 0, 255), (40, 30))], {})[0]["predictions"]
    assert blue[0]["label"] == "blue" and len(blue) == 3


def test_keras_file(tmp_path: Path, keras_model) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "colours"
    folder.mkdir()
    keras_model.save(folder / "colours.keras")
    write_model(tmp_path, colour_manifest("colours", "keras"), {})
    assert_colours(plugin(tmp_path, "colours"))


def test_savedmodel(tmp_path: Path, keras_model) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "colours"
    keras_model.export(str(folder), format="tf_saved_model", verbose=False)
    write_model(tmp_path, colour_manifest("colours", "savedmodel"), {})
    assert_colours(plugin(tmp_path, "colours"))


def test_tflite(tmp_path: Path, keras_model) -> None:  # type: ignore[no-untyped-def]
    import tensorflow as tf

    flatbuffer = tf.lite.TFLiteConverter.from_keras_model(keras_model).convert()
    write_model(tmp_path, colour_manifest("colours", "tflite"), {"colours.tflite": flatbuffer})
    assert_colours(plugin(tmp_path, "colours"))
