"""Run a custom model's graph: ONNX Runtime, LiteRT (TFLite) or TensorFlow (SavedModel,
Keras).  Each runtime is imported only when a model of its format loads, so a worker
without ``visionq[tensorflow]`` serves ONNX and TFLite models and fails only the jobs of
TensorFlow ones, with the reason."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol

import numpy as np

from visionq.custom_models import CustomModel
from visionq.model_scan import ModelTooLargeError, UnsafeModelError, check_model
from visionq.settings import get_settings
from workers.model import ModelLoadError, process_cpu_count


class Runtime(Protocol):
    input_dtype: np.dtype
    channels_first: bool
    """The input is ``[1, 3, H, W]`` (PyTorch exports) rather than ``[1, H, W, 3]``."""

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """The model's outputs for one input batch, in the model's output order."""


def _channels_first(shape: list[object]) -> bool:
    return len(shape) == 4 and shape[1] == 3 and shape[3] != 3


class OnnxRuntime:
    """The first input takes the image; a second one of shape ``[1, 2]`` (RT-DETR's and
    D-FINE's ``orig_target_sizes``) is fed the input's ``(width, height)``, so their boxes
    come out in model-input pixels like every other layout's."""

    def __init__(self, path: Path, size: tuple[int, int] = (0, 0)) -> None:
        try:
            import onnxruntime as ort  # noqa: PLC0415 - optional extra, only for an ONNX model
        except ImportError as exc:
            raise ModelLoadError("onnx models need onnxruntime: pip install "
                                 "'visionq[detect]'") from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = process_cpu_count()
        try:
            self.session = ort.InferenceSession(str(path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelLoadError(f"{path} is not a loadable ONNX model: {exc}") from exc
        source = self.session.get_inputs()[0]
        self.input_name = source.name
        self.input_dtype = np.dtype(np.uint8 if "uint8" in source.type else np.float32)
        self.channels_first = _channels_first(list(source.shape))
        self.extra_inputs = {extra.name: _size_input(extra, size, path)
                             for extra in self.session.get_inputs()[1:]}
        self.lock = threading.Lock()

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        with self.lock:
            return [np.asarray(o) for o in self.session.run(
                None, {self.input_name: batch, **self.extra_inputs})]


def _size_input(spec: object, size: tuple[int, int], path: Path) -> np.ndarray:
    """``[[width, height]]`` for an extra ``[1, 2]`` input (the target size of a detector's
    built-in post-processing); any other extra input cannot be fed."""
    shape, kind = list(getattr(spec, "shape", [])), str(getattr(spec, "type", ""))
    if len(shape) != 2 or shape[-1] != 2:
        raise ModelLoadError(f"{path} has an input {getattr(spec, 'name', '?')!r} {shape} "
                             "besides the image; only a [1, 2] target size can be fed")
    dtype = np.int64 if "int64" in kind else np.int32 if "int32" in kind else np.float32
    return np.array([size], dtype=dtype)


class TfliteRuntime:
    def __init__(self, path: Path) -> None:
        try:
            # Optional extra (visionq[classify]): only when a TFLite custom model loads.
            from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415
        except ImportError as exc:
            raise ModelLoadError("tflite models need ai-edge-litert: pip install "
                                 "'visionq[classify]'") from exc
        try:
            self.interpreter = Interpreter(model_path=str(path),
                                           num_threads=process_cpu_count())
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"{path} is not a loadable TFLite model: {exc}") from exc
        source = self.interpreter.get_input_details()[0]
        self.input_index = source["index"]
        self.input_dtype = np.dtype(source["dtype"])
        self.channels_first = _channels_first(list(source["shape"]))
        self.outputs = [d["index"] for d in self.interpreter.get_output_details()]
        self.lock = threading.Lock()

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        with self.lock:
            self.interpreter.set_tensor(self.input_index, batch)
            self.interpreter.invoke()
            return [np.array(self.interpreter.get_tensor(i)) for i in self.outputs]


def _tensorflow():  # type: ignore[no-untyped-def]
    try:
        import tensorflow as tf  # noqa: PLC0415 - ~1.3 GB, optional: only for its models
    except ImportError as exc:
        raise ModelLoadError("savedmodel and keras models need TensorFlow: pip install "
                             "'visionq[tensorflow]'") from exc
    return tf


class SavedModelRuntime:
    """The ``serving_default`` signature of a SavedModel; outputs in their key order."""

    def __init__(self, path: Path) -> None:
        tf = _tensorflow()
        try:
            loaded = tf.saved_model.load(str(path))
            self.function = loaded.signatures["serving_default"]
        except Exception as exc:  # TensorFlow raises many types for a bad model
            raise ModelLoadError(f"{path} is not a loadable SavedModel with a "
                                 f"serving_default signature: {exc}") from exc
        self._loaded = loaded  # keeps the variables alive
        args, kwargs = self.function.structured_input_signature
        specs = list(kwargs.values()) or list(args)
        self.input_name = next(iter(kwargs)) if kwargs else None
        spec = specs[0]
        self.input_dtype = np.dtype(spec.dtype.as_numpy_dtype)
        self.channels_first = _channels_first(spec.shape.as_list())
        self.tf = tf

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        tensor = self.tf.constant(batch)
        out = self.function(**{self.input_name: tensor}) if self.input_name else self.function(
            tensor)
        return [np.asarray(out[key]) for key in sorted(out)]


class KerasRuntime:
    def __init__(self, path: Path) -> None:
        tf = _tensorflow()
        try:
            # Safe mode (also Keras 3's default, stated so it cannot drift): no Lambda
            # layer's Python, no TFSMLayer, no class outside Keras.
            self.model = tf.keras.models.load_model(str(path), compile=False, safe_mode=True)
        except Exception as exc:  # Keras raises many types for a bad file
            raise ModelLoadError(f"{path} is not a loadable Keras model: {exc}") from exc
        shape = list(self.model.inputs[0].shape)
        self.input_dtype = np.dtype(np.float32)
        self.channels_first = _channels_first(shape)

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        out = self.model(batch, training=False)
        outputs = out if isinstance(out, list | tuple) else [out]
        return [np.asarray(o) for o in outputs]


FORMAT_NAMES = {"onnx": "ONNX", "tflite": "TFLite", "savedmodel": "SavedModel",
                "keras": "Keras"}
RUNTIMES = {"onnx": OnnxRuntime, "tflite": TfliteRuntime, "savedmodel": SavedModelRuntime,
            "keras": KerasRuntime}


def open_runtime(model: CustomModel) -> Runtime:
    """The model's runtime, once ``visionq.model_scan`` found it runs nothing but inference
    (checked on every load: the folder may have been written by other means than
    ``addmodel``)."""
    fmt, path = model.manifest.format, model.model_path
    try:
        check_model(fmt, path, max_bytes=get_settings().model_max_bytes, required=True)
    except UnsafeModelError as exc:
        raise ModelLoadError(f"custom model {model.name} refused: {exc}",
                             code="unsafe_model") from exc
    except ModelTooLargeError as exc:
        raise ModelLoadError(f"custom model {model.name} refused: {exc}",
                             code="model_too_large") from exc
    except ValueError as exc:  # the file does not parse
        raise ModelLoadError(f"{path} is not a loadable {FORMAT_NAMES[fmt]} model: "
                             f"{exc}") from exc
    if fmt == "onnx":
        return OnnxRuntime(path, model.manifest.size)
    return RUNTIMES[fmt](path)
