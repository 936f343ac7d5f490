"""Today's detector export layouts (YOLOX, DETR-style raw and post-processed) on ONNX
Runtime, and a custom detector as the ``detect`` queue's model (``workers.custom.detector``,
``VISIONQ_MODEL_DETECT=custom/<name>``): COCO / Frigate label names, detect's options, a
clear refusal of a name the folder lacks or of a classifier, a replaced model loaded again.
Models are built in the test (``tests.workers.detector_builders``)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.workers.custom_builders import colour_manifest, png, write_model
from tests.workers.detector_builders import (
    LAYOUTS,
    detector_manifest,
    detector_onnx,
    yolox_rows,
)
from visionq.custom_models import custom_root, find
from visionq.imaging import DecodedImage
from visionq.settings import Settings
from workers import registry
from workers.custom import decode
from workers.custom.model import CustomModelPlugin
from workers.model import ModelLoadError

WHITE_ANSWER = {"label": "motorbike", "confidence": 0.9, "x_min": 44, "y_min": 54,
                "x_max": 84, "y_max": 74}


def image(colour: tuple[int, int, int], size: tuple[int, int] = (128, 128)) -> DecodedImage:
    return DecodedImage.from_array(np.asarray(Image.open(io.BytesIO(png(colour, size)))))


WHITE, BLACK = image((255, 255, 255)), image((0, 0, 0))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_finds_the_known_box(tmp_path: Path, layout: str) -> None:
    write_model(tmp_path, detector_manifest("thing", layout),
                {"thing.onnx": detector_onnx(layout)})
    model = CustomModelPlugin(find(tmp_path, "thing"))
    model.load()
    assert model.predict([WHITE], {})[0]["predictions"] == [WHITE_ANSWER]
    assert model.predict([BLACK], {})[0]["predictions"] == []
    # a wide image: letterboxed (yolox) or stretched (detr), boxes still in its pixels
    wide = model.predict([image((255, 255, 255), (256, 128))], {})[0]["predictions"]
    assert len(wide) == 1 and wide[0]["label"] == "motorbike"
    assert 0 <= wide[0]["x_min"] < wide[0]["x_max"] <= 256


def test_yolox_decodes_grid_offsets_and_log_sizes() -> None:
    boxes, objectness, classes = yolox_rows()
    output = np.concatenate([boxes, objectness, classes], axis=1)[np.newaxis]
    found = decode.yolox(output, 2, 0.1, 0.45, 100, (64, 64))
    # the stride-16 twin of the answer is suppressed; the 0.2 dog is kept at threshold 0.1
    assert [(d.class_id, round(d.score, 3)) for d in found] == [(1, 0.9), (0, 0.2)]
    assert found[0].box == pytest.approx((22, 27, 42, 37), abs=1e-4)
    assert found[1].box == pytest.approx((8, 8, 12, 12), abs=1e-4)
    with pytest.raises(ValueError, match="decode_in_inference"):
        decode.yolox(output[:, :80], 2, 0.1, 0.45, 100, (64, 64))


def test_detr_takes_logits_or_probabilities_one_or_two_outputs_and_keeps_top_k() -> None:
    boxes = np.array([[[0.5, 0.5, 0.25, 0.5], [0.2, 0.2, 0.1, 0.1]]], np.float32)
    logits = np.array([[[-6.0, 2.0], [1.0, 1.5]]], np.float32)
    found = decode.detr([logits, boxes], 2, 0.5, 100, (64, 32))  # order does not matter
    # no NMS: query 1 scores for both classes; sigmoid(2) > sigmoid(1.5) > sigmoid(1)
    assert [(d.class_id, round(d.score, 3)) for d in found] == [
        (1, 0.881), (1, 0.818), (0, 0.731)]
    assert found[0].box == pytest.approx((24, 8, 40, 24))
    assert len(decode.detr([boxes, logits], 2, 0.5, 2, (64, 32))) == 2  # max_detections
    probabilities = 1 / (1 + np.exp(-logits))
    joined = np.concatenate([boxes, probabilities], axis=2)  # Ultralytics' RT-DETR export
    assert decode.detr([joined], 2, 0.5, 100, (64, 32)) == found
    with pytest.raises(ValueError, match="detr layout"):
        decode.detr([boxes, logits], 3, 0.5, 100, (64, 32))


def test_bgr_reverses_the_channels() -> None:
    from visionq.custom_models import Manifest
    from workers.custom.preprocess import to_tensor

    manifest = Manifest(name="m", kind="detect", format="onnx", labels=["a"], input_size=2,
                        layout="yolox", channels="bgr", std=(1, 1, 1))
    canvas = np.array([[[10, 20, 30]]], np.uint8)
    assert to_tensor(canvas, manifest, np.dtype(np.float32), True)[0, :, 0, 0].tolist() == [
        30, 20, 10]


def test_coco_label_files_by_name(tmp_path: Path) -> None:
    write_model(tmp_path, {**detector_manifest("rf", "detr"), "labels": "coco91"},
                {"rf.onnx": b"x"})
    labels = find(tmp_path, "rf").labels
    assert len(labels) == 91 and labels[1] == "person" and labels[3] == "car"
    assert labels[72] == "tv" and labels[90] == "toothbrush"


# -- the detect queue's model ---------------------------------------------------------------

def settings(models_dir: Path) -> Settings:
    return Settings(models_dir=models_dir)


@pytest.mark.parametrize("layout", ["yolov8", *LAYOUTS])
def test_a_custom_detector_serves_the_detect_queue_with_coco_names(tmp_path: Path,
                                                                   layout: str) -> None:
    from tests.workers.custom_builders import yolo_onnx

    root = custom_root(tmp_path)
    onnx = yolo_onnx("yolov8") if layout == "yolov8" else detector_onnx(layout)
    manifest = detector_manifest("cams", layout if layout != "yolov8" else "yolox")
    if layout == "yolov8":  # the YOLOv8 graph of the custom-model tests: dog, cat
        manifest = {**manifest, "layout": "yolov8", "labels": ["dog", "motorbike"],
                    "channels": "rgb", "std": [255, 255, 255]}
    write_model(root, manifest, {"cams.onnx": onnx})
    model = registry.create("custom/cams", settings(tmp_path))
    assert (model.task, model.name) == ("detect", "custom/cams")
    model.load()
    result = model.predict([WHITE], {})[0]
    assert result["model"] == "custom/cams" and result["model_version"] == "cams:1"
    assert [(p["label"], p["x_min"], p["y_max"]) for p in result["predictions"]] == [
        ("motorcycle", 44, 74)]
    assert model.predict([WHITE], {"classes": ["person"]})[0]["predictions"] == []
    assert model.predict([WHITE], {"classes": ["motorcycle"]})[0]["predictions"] != []
    assert model.predict([WHITE], {"min_confidence": 0.95})[0]["predictions"] == []
    with pytest.raises(ValueError):
        model.predict([WHITE], {"classes": ["motorbike"]})  # detect's options: COCO names


def test_a_missing_or_non_detector_model_is_refused_by_name(tmp_path: Path) -> None:
    root = custom_root(tmp_path)
    with pytest.raises(ModelLoadError, match="custom/nothing cannot serve the detect queue"):
        registry.create("custom/nothing", settings(tmp_path))
    write_model(root, colour_manifest("colours", "onnx"), {"colours.onnx": b"x"})
    with pytest.raises(ModelLoadError, match="is a classify model"):
        registry.create("custom/colours", settings(tmp_path))


def test_a_replaced_model_is_loaded_again(tmp_path: Path) -> None:
    root = custom_root(tmp_path)
    write_model(root, detector_manifest("cams", "yolox"), {"cams.onnx": detector_onnx("yolox")})
    model = registry.create("custom/cams", settings(tmp_path))
    model.load()
    assert model.predict([WHITE], {})[0]["predictions"][0]["label"] == "motorcycle"
    folder = write_model(root, {**detector_manifest("cams", "detr"), "version": "2",
                                "labels": ["dog", "aeroplane"]},
                         {"cams.onnx": detector_onnx("detr")})
    later = os.stat(folder / "manifest.json").st_mtime + 5  # a coarse clock cannot hide it
    os.utime(folder / "manifest.json", (later, later))
    result = model.predict([WHITE], {})[0]
    assert result["model_version"] == "cams:2"
    assert [p["label"] for p in result["predictions"]] == ["airplane"]


@pytest.mark.parametrize(("resize", "size", "expected"), [
    ("letterbox", (3840, 2160), 64),      # 4K into 64x64: the longer side to 64
    ("stretch", (3840, 2160), 114),       # stretched: the shorter side must keep 64
    ("letterbox", (2160, 3840), 64),
    ("letterbox", (64, 48), None),        # not larger than the input: full size
])
def test_jpegs_decode_no_larger_than_the_input_needs(tmp_path: Path, resize: str,
                                                     size: tuple[int, int],
                                                     expected: int | None) -> None:
    from visionq.imaging import ImageInfo

    write_model(tmp_path, {**detector_manifest("cams", "yolox"), "resize": resize},
                {"cams.onnx": detector_onnx("yolox")})
    model = CustomModelPlugin(find(tmp_path, "cams"))
    assert model.max_side_for(ImageInfo("JPEG", *size, 1)) == expected


def test_a_reduced_decode_finds_the_same_box_in_original_pixels(tmp_path: Path) -> None:
    from visionq.imaging import decode, probe

    root = custom_root(tmp_path)
    write_model(root, detector_manifest("cams", "detr"), {"cams.onnx": detector_onnx("detr")})
    model = registry.create("custom/cams", settings(tmp_path))
    model.load()
    out = io.BytesIO()
    Image.new("RGB", (1280, 1280), (255, 255, 255)).save(out, format="JPEG")
    data = out.getvalue()
    max_side = model.max_side_for(probe(data))
    reduced = decode(data, max_side=max_side)
    assert max_side == 64 and reduced.pixels.shape[0] < 1280  # decoded at 1/8 scale
    boxes = [{k: p[k] for k in ("x_min", "y_min", "x_max", "y_max")}
             for p in model.predict([reduced], {})[0]["predictions"]]
    assert boxes == [{"x_min": 440, "y_min": 540, "x_max": 840, "y_max": 740}]
