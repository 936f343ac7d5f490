"""Raw model outputs -> detections or class scores: pure numpy, no runtime.

Boxes here are ``(x1, y1, x2, y2)`` in model-input pixels; ``workers.custom.preprocess``
maps them back to the image.  Layouts:

- ``yolov5``: one output ``[1, N, 5 + C]``: ``cx, cy, w, h, objectness, C class scores``
  (score = objectness x class score).
- ``yolov8``: one output ``[1, 4 + C, N]``: ``cx, cy, w, h, C class scores`` (no
  objectness); ``[1, N, 4 + C]`` is accepted too (the transposed export).
- ``yolox``: YOLOX's default ONNX export (``tools/export_onnx.py`` without
  ``--decode_in_inference``): one output ``[1, N, 5 + C]`` of raw grid outputs, ``x, y``
  offsets in grid cells, ``log w, log h``, objectness and C class scores (sigmoid already
  applied), rows ordered stride 8, 16, 32, each row-major over its grid; decoded here as
  YOLOX does (``(xy + cell) x stride``, ``exp(wh) x stride``).  An export with
  ``--decode_in_inference`` is the ``yolov5`` layout.
- ``detr``: DETR-style set prediction, no NMS (RT-DETR, D-FINE, RF-DETR): either boxes
  ``[1, N, 4]`` as normalised ``cx, cy, w, h`` plus class outputs ``[1, N, C]`` (logits,
  sigmoid applied here; probabilities are taken as they are), as a single ``[1, N, 4 + C]``
  too; or the post-processed form RT-DETR's and D-FINE's ``tools/export_onnx.py`` give:
  labels ``[1, N]``, boxes ``[1, N, 4]`` as ``x1, y1, x2, y2`` pixels of the
  ``orig_target_sizes`` input (fed the model input size, ``workers.custom.runtimes``) and
  scores ``[1, N]``.  The best ``max_detections`` (query, class) pairs are kept, as the
  exporters' own post-processors do.
- ``ssd``: TFLite detection post-processing / TF Object Detection API outputs: boxes
  ``[1, N, 4]`` as normalised ``ymin, xmin, ymax, xmax``, classes ``[1, N]``, scores
  ``[1, N]`` (and an optional count), told apart by shape.

YOLO coordinates are pixels of the model input unless all are <= 1 (normalised exports),
then they are scaled by the input size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]
    score: float
    class_id: int


def iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one ``(x1, y1, x2, y2)`` box with each row of ``others``."""
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float,
        limit: int) -> list[int]:
    """Greedy per-class non-maximum suppression; indices kept, best score first."""
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    suppressed = np.zeros(len(scores), dtype=bool)
    for rank, index in enumerate(order):
        if suppressed[index]:
            continue
        kept.append(int(index))
        if len(kept) >= limit:
            break
        rest = order[rank + 1:]
        rest = rest[(~suppressed[rest]) & (classes[rest] == classes[index])]
        if len(rest):
            suppressed[rest[iou(boxes[index], boxes[rest]) > iou_threshold]] = True
    return kept


def _centre_to_corners(cxcywh: np.ndarray) -> np.ndarray:
    cx, cy, w, h = cxcywh.T
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def _finish(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, threshold: float,
            iou_threshold: float, limit: int, size: tuple[int, int],
            maybe_normalised: bool = True) -> list[Detection]:
    keep = scores >= threshold
    boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
    if maybe_normalised and len(boxes) and float(np.abs(boxes).max()) <= 1.0:
        boxes = boxes * np.array([size[0], size[1], size[0], size[1]], dtype=boxes.dtype)
    return [Detection(tuple(float(v) for v in boxes[i]), float(scores[i]), int(classes[i]))
            for i in nms(boxes, scores, classes, iou_threshold, limit)]


def yolov5(output: np.ndarray, classes: int, threshold: float, iou_threshold: float,
           limit: int, size: tuple[int, int]) -> list[Detection]:
    rows = np.asarray(output, dtype=np.float32).reshape(-1, output.shape[-1])
    if rows.shape[1] != 5 + classes:
        raise ValueError(f"yolov5 output has {rows.shape[1]} values per row; "
                         f"5 + {classes} labels = {5 + classes} expected")
    class_scores = rows[:, 5:] * rows[:, 4:5]
    best = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(rows)), best]
    return _finish(_centre_to_corners(rows[:, :4]), scores, best, threshold, iou_threshold,
                   limit, size)


def yolov8(output: np.ndarray, classes: int, threshold: float, iou_threshold: float,
           limit: int, size: tuple[int, int]) -> list[Detection]:
    grid = np.asarray(output, dtype=np.float32)
    grid = grid.reshape(grid.shape[-2], grid.shape[-1])
    if grid.shape[0] == 4 + classes:
        rows = grid.T
    elif grid.shape[1] == 4 + classes:
        rows = grid
    else:
        raise ValueError(f"yolov8 output {list(output.shape)} does not fit "
                         f"4 + {classes} labels = {4 + classes} values per candidate")
    best = rows[:, 4:].argmax(axis=1)
    scores = rows[np.arange(len(rows)), 4 + best]
    return _finish(_centre_to_corners(rows[:, :4]), scores, best, threshold, iou_threshold,
                   limit, size)


YOLOX_STRIDES = (8, 16, 32)


def yolox_grid(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(cells [N, 2] as x, y; strides [N, 1])`` in YOLOX's output order."""
    cells, strides = [], []
    for stride in YOLOX_STRIDES:
        rows, cols = size[1] // stride, size[0] // stride
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        cells.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        strides.append(np.full((rows * cols, 1), stride))
    return (np.concatenate(cells).astype(np.float32),
            np.concatenate(strides).astype(np.float32))


def yolox(output: np.ndarray, classes: int, threshold: float, iou_threshold: float,
          limit: int, size: tuple[int, int]) -> list[Detection]:
    rows = np.asarray(output, dtype=np.float32).reshape(-1, output.shape[-1])
    cells, strides = yolox_grid(size)
    if rows.shape != (len(cells), 5 + classes):
        raise ValueError(f"yolox output {list(output.shape)} does not fit a {size[0]}x{size[1]} "
                         f"input ({len(cells)} cells at strides 8, 16, 32) and 5 + {classes} "
                         f"labels; an export with --decode_in_inference is layout yolov5")
    centres = (rows[:, :2] + cells) * strides
    sides = np.exp(np.clip(rows[:, 2:4], None, 20.0)) * strides
    class_scores = rows[:, 5:] * rows[:, 4:5]
    best = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(rows)), best]
    boxes = _centre_to_corners(np.concatenate([centres, sides], axis=1))
    return _finish(boxes, scores, best, threshold, iou_threshold, limit, size,
                   maybe_normalised=False)


def sigmoid(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(values, -50.0, 50.0)))


def detr(outputs: list[np.ndarray], classes: int, threshold: float, limit: int,
         size: tuple[int, int]) -> list[Detection]:
    arrays = [np.asarray(o) for o in outputs]
    flat = [o.reshape(-1) for o in arrays if o.ndim == 2]
    if len(arrays) >= 3 and len(flat) >= 2:
        return _detr_postprocessed(arrays, flat, threshold, limit)
    boxes, logits = _detr_boxes_and_classes(arrays, classes)
    probabilities = (sigmoid(logits) if float(logits.min()) < 0 or float(logits.max()) > 1
                     else logits)
    flat_scores = probabilities.reshape(-1)
    top = np.argsort(-flat_scores, kind="stable")[:limit]
    top = top[flat_scores[top] >= threshold]
    queries, ids = np.divmod(top, probabilities.shape[1])
    corners = _centre_to_corners(boxes[queries]) * np.array(
        [size[0], size[1], size[0], size[1]], dtype=np.float32)
    return [Detection(tuple(float(v) for v in corners[k]), float(flat_scores[i]), int(ids[k]))
            for k, i in enumerate(top)]


def _detr_boxes_and_classes(arrays: list[np.ndarray],
                            classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(boxes [N, 4] normalised cxcywh, class outputs [N, C])`` from two outputs (boxes
    told apart by their 4 values, or first when C is 4 too) or one ``[1, N, 4 + C]``."""
    shapes = [list(a.shape) for a in arrays]
    grids = [a.reshape(-1, a.shape[-1]).astype(np.float32) for a in arrays if a.ndim >= 2]
    if len(grids) == 1 and grids[0].shape[1] == 4 + classes:
        return grids[0][:, :4], grids[0][:, 4:]
    if len(grids) == 2:
        first, second = grids
        if first.shape[1] != 4 or (second.shape[1] == 4 and classes != 4):
            first, second = second, first
        if first.shape[1] == 4 and second.shape[1] == classes and len(first) == len(second):
            return first, second
    raise ValueError(f"detr layout needs boxes [1, N, 4] and class outputs [1, N, {classes}] "
                     f"(or one [1, N, {4 + classes}], or labels, boxes and scores); got {shapes}")


def _detr_postprocessed(arrays: list[np.ndarray], flat: list[np.ndarray], threshold: float,
                        limit: int) -> list[Detection]:
    boxes = next((a for a in arrays if a.ndim == 3 and a.shape[-1] == 4), None)
    if boxes is None:
        raise ValueError("detr layout (post-processed export) needs boxes [1, N, 4]; got "
                         f"{[list(a.shape) for a in arrays]}")
    ids, scores = _classes_and_scores(flat[0], flat[1])
    corners = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    order = np.argsort(-scores, kind="stable")[:limit]
    order = order[scores[order] >= threshold]
    return [Detection(tuple(float(v) for v in corners[i]), float(scores[i]), int(ids[i]))
            for i in order]


def ssd(outputs: list[np.ndarray], threshold: float, iou_threshold: float, limit: int,
        size: tuple[int, int]) -> list[Detection]:
    boxes = next((o for o in outputs if o.ndim == 3 and o.shape[-1] == 4), None)
    flat = [o.reshape(-1) for o in outputs if o.ndim == 2]
    if boxes is None or len(flat) < 2:
        raise ValueError("ssd layout needs boxes [1, N, 4], classes [1, N] and scores [1, N]; "
                         f"got {[list(o.shape) for o in outputs]}")
    classes_out, scores_out = _classes_and_scores(flat[0], flat[1])
    ymin, xmin, ymax, xmax = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).T
    corners = np.stack([xmin * size[0], ymin * size[1], xmax * size[0], ymax * size[1]], axis=1)
    keep = scores_out >= threshold
    corners, scores_out = corners[keep], scores_out[keep]
    ids = classes_out[keep].astype(np.int64)
    return [Detection(tuple(float(v) for v in corners[i]), float(scores_out[i]), int(ids[i]))
            for i in nms(corners, scores_out, ids, iou_threshold, limit)]


def _classes_and_scores(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores are in 0..1 and rarely whole numbers; class ids are whole numbers."""
    def whole(values: np.ndarray) -> bool:
        return bool(np.all(np.equal(np.mod(values, 1), 0)))
    if whole(first) and not whole(second):
        return first, second.astype(np.float32)
    if whole(second) and not whole(first):
        return second, first.astype(np.float32)
    return first, second.astype(np.float32)  # TFLite's order: boxes, classes, scores


def softmax(values: np.ndarray) -> np.ndarray:
    shifted = np.exp(values - values.max())
    return shifted / shifted.sum()


def class_scores(output: np.ndarray, classes: int, apply_softmax: bool) -> np.ndarray:
    """One score per label from a classifier output ``[1, C]`` (uint8 outputs of quantised
    models are scaled to 0..1)."""
    scores = np.asarray(output).reshape(-1)
    if scores.dtype == np.uint8:
        scores = scores.astype(np.float32) / 255.0
    scores = scores.astype(np.float32)
    if scores.shape[0] != classes:
        raise ValueError(f"classifier output has {scores.shape[0]} scores for {classes} labels")
    return softmax(scores) if apply_softmax else scores
