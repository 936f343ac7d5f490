"""Tiny ONNX detectors in today's export layouts, built in the tests (no downloads), each
with the same known answer on a 64x64 input whose scores scale with the input's mean
brightness (after the manifest's /255): a white image finds one object, a black one none.

The answer, in model-input pixels: centre (32, 32), 20 x 10, class 1 (``motorbike``, which
the detect queue reports as Frigate's ``motorcycle``), score 0.9; a class-0 candidate
scored 0.2 stays under the threshold.  Layouts:

- ``yolox``: YOLOX's default export (``tools/export_onnx.py``): ``[1, 84, 7]`` raw grid
  outputs for strides 8, 16, 32 (8x8 + 4x4 + 2x2 cells); a second, weaker candidate for the
  same object on the stride-16 grid is removed by NMS.
- ``detr``: RF-DETR / Hugging Face style: ``dets [1, 3, 4]`` normalised cxcywh and class
  logits ``[1, 3, 2]`` (sigmoid 0.9 when white, ~0 when black).
- ``rtdetr``: RT-DETR's / D-FINE's ``tools/export_onnx.py`` (post-processor included):
  inputs ``images`` and ``orig_target_sizes [1, 2]``, outputs ``labels [1, 3]``, ``boxes
  [1, 3, 4]`` as xyxy pixels of the target size, ``scores [1, 3]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SIZE = 64
LABELS = ["dog", "motorbike"]
ANSWER_CXCYWH = (32.0, 32.0, 20.0, 10.0)
FRIGATE_ANSWER = {"label": "motorcycle", "confidence": 0.9, "x_min": 44, "y_min": 54,
                  "x_max": 84, "y_max": 74}
"""The answer on a white 128x128 image (scale 2, no padding), as /v1/vision/detection
gives it."""
LAYOUTS = ("yolox", "detr", "rtdetr")


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def _mean_node(nodes: list[Any], helper: Any) -> None:
    """``mean``: the input's mean as a ``[1, 1, 1]`` tensor."""
    nodes += [helper.make_node("ReduceMean", ["images"], ["mean4"], axes=[1, 2, 3], keepdims=1),
              helper.make_node("Reshape", ["mean4", "shape3"], ["mean"])]


def yolox_rows() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, y, log w, log h [84, 4], objectness [84, 1], class scores [84, 2])``."""
    rows = 8 * 8 + 4 * 4 + 2 * 2
    boxes = np.zeros((rows, 4), np.float32)
    objectness = np.zeros((rows, 1), np.float32)
    classes = np.zeros((rows, 2), np.float32)
    answer = 4 * 8 + 4  # stride 8, cell (4, 4): centre (32, 32)
    boxes[answer] = [0, 0, np.log(20 / 8), np.log(10 / 8)]
    objectness[answer], classes[answer] = 0.9, [0.05, 1.0]
    twin = 64 + 2 * 4 + 2  # stride 16, cell (2, 2) offset 1/16: centre (33, 33)
    boxes[twin] = [1 / 16, 1 / 16, np.log(20 / 16), np.log(10 / 16)]
    objectness[twin], classes[twin] = 0.8, [0.05, 1.0]
    weak = 1 * 8 + 1  # stride 8, cell (1, 1): a dog at (10, 10) scored 0.2
    boxes[weak] = [0.25, 0.25, np.log(0.5), np.log(0.5)]
    objectness[weak], classes[weak] = 0.2, [1.0, 0.0]
    return boxes, objectness, classes


def detr_queries() -> tuple[np.ndarray, np.ndarray]:
    """``(normalised cxcywh [3, 4], probabilities [3, 2])`` on a white image."""
    cx, cy, w, h = ANSWER_CXCYWH
    boxes = np.array([[cx / SIZE, cy / SIZE, w / SIZE, h / SIZE],
                      [10 / SIZE, 10 / SIZE, 4 / SIZE, 4 / SIZE],
                      [0.8, 0.8, 0.1, 0.1]], np.float32)
    probabilities = np.array([[0.001, 0.9], [0.2, 0.001], [0.001, 0.001]], np.float32)
    return boxes, probabilities


def detector_onnx(layout: str) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    def const(name: str, value: np.ndarray) -> Any:
        return numpy_helper.from_array(np.asarray(value), name)

    initializers = [const("shape3", np.array([1, 1, 1], np.int64))]
    nodes: list[Any] = []
    _mean_node(nodes, helper)
    inputs = [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, SIZE, SIZE])]
    if layout == "yolox":
        boxes, objectness, classes = yolox_rows()
        initializers += [const("boxes", boxes[None]), const("objectness", objectness[None]),
                         const("classes", classes[None]), const("full", np.float32(255))]
        nodes += [helper.make_node("Div", ["mean", "full"], ["brightness"]),  # 0..255 input
                  helper.make_node("Mul", ["objectness", "brightness"], ["scaled"]),
                  helper.make_node("Concat", ["boxes", "scaled", "classes"], ["output"],
                                   axis=2)]
        outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT,
                                                 [1, len(boxes), 7])]
    elif layout == "detr":
        boxes, probabilities = detr_queries()
        logits = np.vectorize(_logit)(probabilities).astype(np.float32)
        # white (mean 1): these logits; black (mean 0): 12 lower, sigmoid ~0
        initializers += [const("dets", boxes[None]), const("base", logits[None]),
                         const("one", np.float32(1)), const("slope", np.float32(12))]
        nodes += [helper.make_node("Sub", ["mean", "one"], ["dark"]),
                  helper.make_node("Mul", ["dark", "slope"], ["shift"]),
                  helper.make_node("Add", ["base", "shift"], ["labels"]),
                  helper.make_node("Identity", ["dets"], ["boxes"])]
        outputs = [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 3, 4]),
                   helper.make_tensor_value_info("labels", TensorProto.FLOAT, [1, 3, 2])]
    elif layout == "rtdetr":
        boxes, probabilities = detr_queries()
        cx, cy, w, h = boxes.T
        xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        inputs.append(helper.make_tensor_value_info("orig_target_sizes", TensorProto.INT64,
                                                    [1, 2]))
        initializers += [const("xyxy", xyxy[None]), const("best", probabilities.max(1)[None]),
                         const("ids", probabilities.argmax(1).astype(np.int64)[None]),
                         const("tile", np.array([1, 2], np.int64)),
                         const("shape113", np.array([1, 1, 4], np.int64))]
        nodes += [helper.make_node("Cast", ["orig_target_sizes"], ["sizes"],
                                   to=TensorProto.FLOAT),
                  helper.make_node("Tile", ["sizes", "tile"], ["sizes4"]),
                  helper.make_node("Reshape", ["sizes4", "shape113"], ["scale"]),
                  helper.make_node("Mul", ["xyxy", "scale"], ["boxes"]),
                  helper.make_node("Reshape", ["mean", "tile_shape"], ["mean2"]),
                  helper.make_node("Mul", ["best", "mean2"], ["scores"]),
                  helper.make_node("Identity", ["ids"], ["labels"])]
        initializers.append(const("tile_shape", np.array([1, 1], np.int64)))
        outputs = [helper.make_tensor_value_info("labels", TensorProto.INT64, [1, 3]),
                   helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 3, 4]),
                   helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 3])]
    else:
        raise ValueError(layout)
    graph = helper.make_graph(nodes, f"tiny_{layout}", inputs, outputs,
                              initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def detector_manifest(name: str, layout: str) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "name": name, "kind": "detect", "format": "onnx", "labels": LABELS,
        "input_size": SIZE, "score_threshold": 0.3,
        "layout": "detr" if layout == "rtdetr" else layout}
    if layout == "yolox":
        manifest.update(channels="bgr", std=[1, 1, 1])  # YOLOX takes 0..255 BGR
    return manifest
