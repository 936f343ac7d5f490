"""YOLOv5 / YOLOv8 / SSD decoding and NMS of custom models (``workers.custom.decode``) and
the image <-> model-input mapping (``workers.custom.preprocess``), on hand-made tensors."""

from __future__ import annotations

import numpy as np
import pytest

from visionq.custom_models import Manifest
from visionq.imaging import DecodedImage
from workers.custom import decode, preprocess

SIZE = (64, 64)


def v5_rows(*rows: tuple[float, ...]) -> np.ndarray:
    return np.array([rows], dtype=np.float32)


def test_nms_keeps_the_best_of_overlapping_boxes_per_class() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [50, 50, 60, 60]],
                     dtype=np.float32)
    scores = np.array([0.8, 0.9, 0.7, 0.5], dtype=np.float32)
    classes = np.array([0, 0, 1, 0])
    # 1 beats 0 (same class, IoU 0.82); 2 is another class; 3 does not overlap.
    assert decode.nms(boxes, scores, classes, 0.5, 100) == [1, 2, 3]
    assert decode.nms(boxes, scores, classes, 0.9, 100) == [1, 0, 2, 3]
    assert decode.nms(boxes, scores, classes, 0.5, 2) == [1, 2]


def test_yolov5_scores_are_objectness_times_class_score() -> None:
    output = v5_rows((32, 32, 20, 10, 0.5, 0.2, 0.8), (10, 10, 4, 4, 0.9, 0.1, 0.1))
    found = decode.yolov5(output, 2, 0.3, 0.45, 100, SIZE)
    assert len(found) == 1
    assert found[0].class_id == 1
    assert found[0].score == pytest.approx(0.4)
    assert found[0].box == pytest.approx((22, 27, 42, 37))


def test_yolov5_wrong_width_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="5 \\+ 3 labels"):
        decode.yolov5(v5_rows((1, 1, 1, 1, 1, 1, 1)), 3, 0.3, 0.45, 100, SIZE)


@pytest.mark.parametrize("transposed", [False, True])
def test_yolov8_reads_both_export_orientations(transposed: bool) -> None:
    rows = np.array([[32, 32, 20, 10, 0.1, 0.9], [33, 32, 20, 10, 0.1, 0.8],
                     [10, 10, 4, 4, 0.2, 0.05]], dtype=np.float32)
    output = rows[np.newaxis] if transposed else rows.T[np.newaxis]
    found = decode.yolov8(output, 2, 0.3, 0.45, 100, SIZE)
    assert [(d.class_id, round(d.score, 3)) for d in found] == [(1, 0.9)]
    assert found[0].box == pytest.approx((22, 27, 42, 37))


def test_normalised_yolo_coordinates_are_scaled_to_the_input() -> None:
    output = v5_rows((0.5, 0.5, 0.25, 0.5, 1.0, 1.0))
    found = decode.yolov5(output, 1, 0.3, 0.45, 100, (64, 32))
    assert found[0].box == pytest.approx((24, 8, 40, 24))


def test_ssd_outputs_are_found_by_shape_in_any_order() -> None:
    boxes = np.array([[[0.25, 0.5, 0.75, 1.0], [0, 0, 0.1, 0.1]]], dtype=np.float32)
    classes = np.array([[2, 0]], dtype=np.float32)
    scores = np.array([[0.75, 0.1]], dtype=np.float32)
    for outputs in ([boxes, classes, scores, np.array([2.0])], [scores, boxes, classes]):
        found = decode.ssd(outputs, 0.3, 0.45, 100, (64, 64))
        assert [(d.class_id, d.score) for d in found] == [(2, 0.75)]
        assert found[0].box == pytest.approx((32, 16, 64, 48))


def test_class_scores_softmax_and_quantised_outputs() -> None:
    assert decode.class_scores(np.array([[0.0, 0.0]]), 2, True) == pytest.approx([0.5, 0.5])
    assert decode.class_scores(np.array([[255, 0]], np.uint8), 2, False) == pytest.approx(
        [1.0, 0.0])
    with pytest.raises(ValueError, match="3 scores for 2 labels"):
        decode.class_scores(np.zeros((1, 3)), 2, False)


def manifest(**fields: object) -> Manifest:
    return Manifest.model_validate({"name": "m", "kind": "detect", "format": "onnx",
                                    "layout": "yolov5", "labels": ["a"], "input_size": 64,
                                    **fields})


@pytest.mark.parametrize(("fit", "box"), [
    # 128x64 image: letterbox ratio 0.5, 16 px of padding above -> y shifts by 16
    ("letterbox", (44.0, 22.0, 84.0, 42.0)),
    # stretch: x by 0.5, y by 1
    ("stretch", (44.0, 27.0, 84.0, 37.0)),
])
def test_boxes_map_back_to_original_pixels(fit: str, box: tuple[float, ...]) -> None:
    image = DecodedImage.from_array(np.full((64, 128, 3), 255, np.uint8))
    canvas, placement = preprocess.fit(image, manifest(resize=fit))
    assert canvas.shape == (64, 64, 3)
    assert placement.to_image((22, 27, 42, 37), image.width, image.height) == pytest.approx(box)
    if fit == "letterbox":
        assert (canvas[:16] == preprocess.LETTERBOX_FILL).all()
        assert (canvas[16:48] == 255).all()


def test_reduced_decodes_still_map_to_original_pixels() -> None:
    """A 256x128 original decoded at 128x64: boxes are still in the original's pixels."""
    image = DecodedImage(pixels=np.full((64, 128, 3), 255, np.uint8), width=256, height=128)
    _, placement = preprocess.fit(image, manifest(resize="letterbox"))
    assert placement.to_image((22, 27, 42, 37), 256, 128) == pytest.approx((88, 44, 168, 84))


def test_tensor_layout_and_normalisation() -> None:
    canvas = np.full((64, 64, 3), 255, np.uint8)
    chw = preprocess.to_tensor(canvas, manifest(), np.dtype(np.float32), True)
    assert chw.shape == (1, 3, 64, 64) and chw.dtype == np.float32 and chw.max() == 1.0
    hwc = preprocess.to_tensor(canvas, manifest(mean=[127.5] * 3, std=[127.5] * 3),
                               np.dtype(np.float32), False)
    assert hwc.shape == (1, 64, 64, 3) and hwc.min() == 1.0
    raw = preprocess.to_tensor(canvas, manifest(), np.dtype(np.uint8), False)
    assert raw.dtype == np.uint8 and raw.max() == 255
