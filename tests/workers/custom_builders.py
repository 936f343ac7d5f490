"""Tiny custom models built inside the tests (no downloads), each with a known answer.

ONNX (``onnx.helper``): a YOLO-layout detector on a 64x64 input whose objectness is the
input's mean brightness (after the manifest's /255), so a white image finds the boxes below
and a black one nothing.  Keras / SavedModel / TFLite: a colour classifier (mean colour ->
dense -> softmax) that says ``red`` for a red image and ``blue`` for a blue one.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

SIZE = 64
YOLO_LABELS = ["dog", "cat"]
YOLO_BOXES = np.array([  # cx, cy, w, h in model-input pixels
    [32, 32, 20, 10],   # the answer: cat, score 0.9
    [33, 32, 20, 10],   # the same object, lower score: removed by NMS
    [10, 10, 4, 4],     # a dog scored 0.2: under the threshold
], dtype=np.float32)
YOLO_CLASS_SCORES = np.array([[0.1, 0.9], [0.1, 0.8], [0.2, 0.05]], dtype=np.float32)
EXPECTED_CAT = {"label": "cat", "confidence": 0.9, "x_min": 44, "y_min": 54, "x_max": 84,
                "y_max": 74}
"""The first box on a white 128x128 image: letterbox ratio 0.5, no padding."""
COLOUR_LABELS = ["red", "green", "blue"]


def png(colour: tuple[int, int, int], size: tuple[int, int] = (128, 128)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


def yolo_onnx(layout: str) -> bytes:
    """``yolov5``: output ``[1, 3, 7]``; ``yolov8``: ``[1, 6, 3]``; input ``[1, 3, 64, 64]``."""
    from onnx import TensorProto, helper, numpy_helper

    n, classes = len(YOLO_BOXES), len(YOLO_LABELS)
    boxes = numpy_helper.from_array(YOLO_BOXES[np.newaxis], "boxes")
    class_scores = numpy_helper.from_array(YOLO_CLASS_SCORES[np.newaxis], "class_scores")
    ones = numpy_helper.from_array(np.ones((1, n, 1), np.float32), "ones")
    shape = numpy_helper.from_array(np.array([1, 1, 1], np.int64), "shape3")
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean4"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Reshape", ["mean4", "shape3"], ["mean"]),
    ]
    if layout == "yolov5":
        nodes += [helper.make_node("Mul", ["ones", "mean"], ["objectness"]),
                  helper.make_node("Concat", ["boxes", "objectness", "class_scores"],
                                   ["output0"], axis=2)]
        out_shape = [1, n, 5 + classes]
    else:
        nodes += [helper.make_node("Mul", ["class_scores", "mean"], ["scores"]),
                  helper.make_node("Concat", ["boxes", "scores"], ["rows"], axis=2),
                  helper.make_node("Transpose", ["rows"], ["output0"], perm=[0, 2, 1])]
        out_shape = [1, 4 + classes, n]
    graph = helper.make_graph(
        nodes, f"tiny_{layout}",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, out_shape)],
        initializer=[boxes, class_scores, shape, *([ones] if layout == "yolov5" else [])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def yolo_manifest(name: str, layout: str) -> dict[str, Any]:
    return {"name": name, "kind": "detect", "format": "onnx", "layout": layout,
            "labels": YOLO_LABELS, "input_size": SIZE, "score_threshold": 0.3}


def colour_keras_model() -> Any:
    """mean RGB (0..1) -> 3 logits, softmax: the brightest channel wins."""
    import keras

    inputs = keras.Input((16, 16, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    dense = keras.layers.Dense(3, activation="softmax")
    model = keras.Model(inputs, dense(pooled))
    dense.set_weights([np.eye(3, dtype=np.float32) * 10, np.zeros(3, np.float32)])
    return model


def colour_manifest(name: str, fmt: str) -> dict[str, Any]:
    return {"name": name, "kind": "classify", "format": fmt, "labels": COLOUR_LABELS,
            "input_size": 16}


def write_model(root: Path, manifest: dict[str, Any], files: dict[str, bytes]) -> Path:
    """``root/<name>/manifest.json`` plus ``files``."""
    folder = root / manifest["name"]
    folder.mkdir(parents=True, exist_ok=True)
    for filename, data in files.items():
        (folder / filename).write_bytes(data)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder
