"""A custom model as a ``workers.model`` plugin: manifest in, DeepStack-shaped results out.

Results: ``{"model", "model_version", "width", "height", "predictions"}`` with, per
prediction, ``label`` and ``confidence`` (0..1), plus ``x_min, y_min, x_max, y_max`` in
original-image pixels for detectors; classifiers list the ``top_k`` labels, best first.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from visionq.custom_models import CustomModel
from visionq.imaging import DecodedImage, ImageInfo
from visionq.options import CustomOptions
from visionq.settings import Settings
from workers.custom import decode, preprocess
from workers.custom.runtimes import Runtime, open_runtime
from workers.model import ModelBase


class CustomModelPlugin(ModelBase):
    """Built from a folder entry, not an entry point: ``CustomModelPlugin(entry)``."""

    name = "custom"
    task = "custom"
    extra = "detect"
    options = CustomOptions
    input_size = None

    def __init__(self, entry: CustomModel, settings: Settings | None = None) -> None:
        super().__init__(settings)
        self.entry = entry
        self.manifest = entry.manifest
        self.name = entry.name  # type: ignore[misc]
        self.version = f"{entry.name}:{entry.manifest.version}"
        self.runtime: Runtime | None = None

    def load(self) -> None:
        self.runtime = open_runtime(self.entry)

    def max_side_for(self, info: ImageInfo) -> int | None:
        """The longest side a JPEG needs to be decoded at (DCT-scaled, never below it) so
        that fitting it to the input only shrinks: a 4K camera frame for a 640 input decodes
        at a quarter of the pixels.  ``None``: the image is not larger than the input."""
        width, height = self.manifest.size
        ratios = (width / max(1, info.width), height / max(1, info.height))
        scale = max(ratios) if self.manifest.fit == "stretch" else min(ratios)
        if scale >= 1:
            return None
        return math.ceil(scale * max(info.width, info.height))

    def predict(self, images: list[DecodedImage], options: dict[str, Any]) -> list[dict[str, Any]]:
        opts: CustomOptions = self.parse_options(options)
        if self.runtime is None:
            self.load()
        return [self._one(image, opts) for image in images]

    def _one(self, image: DecodedImage, opts: CustomOptions) -> dict[str, Any]:
        if self.runtime is None:  # predict loads it first
            raise RuntimeError(f"custom model {self.manifest.name} used before load()")
        canvas, placement = preprocess.fit(image, self.manifest)
        batch = preprocess.to_tensor(canvas, self.manifest, self.runtime.input_dtype,
                                     self.runtime.channels_first)
        outputs = self.runtime.run(batch)
        if self.manifest.kind == "classify":
            predictions = self._classify(outputs, opts)
        else:
            predictions = self._detect(outputs, opts, image, placement)
        return {"model": self.name, "model_version": self.version, "width": image.width,
                "height": image.height, "predictions": predictions}

    def _threshold(self, opts: CustomOptions) -> float:
        return max(self.manifest.score_threshold, opts.min_confidence or 0.0)

    def _classify(self, outputs: list[np.ndarray], opts: CustomOptions) -> list[dict[str, Any]]:
        labels = self.entry.labels
        scores = decode.class_scores(outputs[0], len(labels), self.manifest.softmax)
        best = np.argsort(-scores, kind="stable")[:opts.top_k]
        floor = opts.min_confidence or 0.0
        return [{"label": labels[i], "confidence": round(float(scores[i]), 4)}
                for i in best if scores[i] >= floor]

    def _detect(self, outputs: list[np.ndarray], opts: CustomOptions, image: DecodedImage,
                placement: preprocess.Placement) -> list[dict[str, Any]]:
        m, labels = self.manifest, self.entry.labels
        threshold = self._threshold(opts)
        if m.layout == "yolov5":
            found = decode.yolov5(outputs[0], len(labels), threshold, m.nms_iou,
                                  m.max_detections, m.size)
        elif m.layout == "yolov8":
            found = decode.yolov8(outputs[0], len(labels), threshold, m.nms_iou,
                                  m.max_detections, m.size)
        elif m.layout == "yolox":
            found = decode.yolox(outputs[0], len(labels), threshold, m.nms_iou,
                                 m.max_detections, m.size)
        elif m.layout == "detr":
            found = decode.detr(outputs, len(labels), threshold, m.max_detections, m.size)
        else:
            found = decode.ssd(outputs, threshold, m.nms_iou, m.max_detections, m.size)
        predictions = []
        for det in found:
            x1, y1, x2, y2 = placement.to_image(det.box, image.width, image.height)
            label = labels[det.class_id] if 0 <= det.class_id < len(labels) else str(
                det.class_id)
            predictions.append({"label": label, "confidence": round(det.score, 4),
                                "x_min": round(x1), "y_min": round(y1),
                                "x_max": round(x2), "y_max": round(y2)})
        return predictions
