"""A custom model runs no code but inference: each format is read as data and refused when
it would do more, before anything loads it, by ``addmodel`` (``visionq.custom_models.
install``, on the upload) and again by the ``custom`` worker before each load (a model
copied into the folder by other means).  Nothing here executes the model.

- SavedModel: its graph's ops (``visionq.savedmodel_scan``: no file, Python, process or
  network op).
- Keras: no ``Lambda`` layer (Python code) and no ``TFSMLayer`` (a SavedModel from any
  path) in its config; the worker also loads in Keras's safe mode.
- ONNX: only the standard domains (``''``, ``ai.onnx``, ``ai.onnx.ml``) and the model's
  own local functions: a custom domain needs a custom-op library; external data only at a
  relative path inside the model's folder.
- TFLite: no ``Flex`` op (a TensorFlow op such as ``FlexWriteFile``, run by the Flex
  delegate); other custom ops run only if the interpreter has them built in (such as
  ``TFLite_Detection_PostProcess``), so they are left to it.
- Zips (a SavedModel upload, a ``.keras`` file): at most ``MAX_ZIP_ENTRIES`` entries and
  ``VISIONQ_MODEL_MAX_BYTES`` uncompressed, read from the zip's directory before anything is
  extracted, and counted again while extracting (a header may lie).

The parsers are optional dependencies: where one is missing, ``addmodel`` leaves the check
to the worker (which has them, or cannot load the format either), while the worker refuses
to load what it cannot check.
"""

from __future__ import annotations

import json
import logging
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from visionq.model_errors import CheckerMissing, ModelTooLargeError, UnsafeModelError
from visionq.savedmodel_scan import ProtosMissing, check_saved_model

log = logging.getLogger(f"visionq.{__name__}")

DEFAULT_MODEL_MAX_BYTES = 256 * 1024 * 1024
"""``VISIONQ_MODEL_MAX_BYTES``: a YOLOv8-x ONNX export is ~270 MB in float32 and ~135 MB in
float16, the usual detectors and classifiers 5-100 MB."""
MAX_ZIP_ENTRIES = 1000
"""A SavedModel folder holds a handful of files (``saved_model.pb``, ``variables/``, a few
assets); a ``.keras`` file three."""
ONNX_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
UNSAFE_KERAS_LAYERS = frozenset({"Lambda", "TFSMLayer"})
KERAS_CONFIG_MAX_BYTES = 64 * 1024 * 1024


def check_model(fmt: str, path: Path, *, max_bytes: int, required: bool) -> None:
    """Raise ``UnsafeModelError`` / ``ModelTooLargeError`` / ``ValueError`` (does not
    parse) for the model at ``path`` (a file, or a SavedModel folder).  ``required``: a
    missing parser is a refusal (the worker) rather than a logged skip (the API)."""
    try:
        CHECKS[fmt](path, max_bytes)
    except CheckerMissing as exc:
        if required:
            raise UnsafeModelError(f"cannot check this {fmt} model before loading it: "
                                   f"{exc}") from exc
        log.warning("%s: not checked here (%s); the worker checks it before loading", path,
                    exc)


def check_zip_directory(archive: zipfile.ZipFile, max_bytes: int) -> None:
    """Entry count and declared uncompressed total, from the directory alone."""
    entries = archive.infolist()
    if len(entries) > MAX_ZIP_ENTRIES:
        raise ModelTooLargeError(f"the .zip has {len(entries)} entries; at most "
                                 f"{MAX_ZIP_ENTRIES}")
    declared = sum(info.file_size for info in entries)
    if declared > max_bytes:
        raise ModelTooLargeError(f"the .zip unpacks to {declared} bytes; at most {max_bytes} "
                                 f"(VISIONQ_MODEL_MAX_BYTES)")


def _check_saved_model(folder: Path, max_bytes: int) -> None:
    try:
        check_saved_model(folder)
    except ProtosMissing as exc:
        raise CheckerMissing(str(exc)) from exc


def _check_keras(path: Path, max_bytes: int) -> None:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            check_zip_directory(archive, max_bytes)
            try:
                info = archive.getinfo("config.json")
            except KeyError as exc:
                raise ValueError("the .keras file has no config.json") from exc
            if info.file_size > KERAS_CONFIG_MAX_BYTES:
                raise ModelTooLargeError(f"the .keras config.json is {info.file_size} bytes")
            raw = archive.read(info)
    else:
        try:
            import h5py  # noqa: PLC0415 - optional (TensorFlow's), only for an .h5 upload
        except ImportError as exc:
            raise CheckerMissing("an .h5 Keras model needs h5py to be read") from exc
        try:
            with h5py.File(path, "r") as h5:
                raw = h5.attrs.get("model_config")
        except OSError as exc:
            raise ValueError(f"not an HDF5 Keras model: {exc}") from exc
        if raw is None:
            raise ValueError("the .h5 file holds weights only (no model_config)")
    try:
        config = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"the Keras model config is not JSON: {exc}") from exc
    for layer in _keras_classes(config):
        if layer in UNSAFE_KERAS_LAYERS:
            raise UnsafeModelError(f"the Keras model has a {layer} layer, which runs code "
                                   f"or loads files beyond inference")


def _keras_classes(config: Any) -> Iterator[str]:
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("class_name"), str):
                yield item["class_name"]
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _check_onnx(path: Path, max_bytes: int) -> None:
    try:
        import onnx  # noqa: PLC0415 - optional (visionq[detect]), heavy: only for ONNX
    except ImportError as exc:
        raise CheckerMissing("onnx models need the onnx package: pip install "
                             "'visionq[detect]'") from exc
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ValueError(f"not an ONNX model: {exc}") from exc
    check_onnx_model(model, path.parent)


def check_onnx_model(model: Any, folder: Path) -> None:
    """Standard domains (or the model's local functions) and external data in ``folder``."""
    local = {(f.domain, f.name) for f in model.functions}
    graphs = [model.graph]
    bodies = [list(f.node) for f in model.functions]
    tensors: list[Any] = []
    while graphs or bodies:
        if graphs:
            graph = graphs.pop()
            bodies.append(list(graph.node))
            tensors.extend(graph.initializer)
            for sparse in graph.sparse_initializer:
                tensors.extend((sparse.values, sparse.indices))
            continue
        for node in bodies.pop():
            if node.domain not in ONNX_DOMAINS and (node.domain, node.op_type) not in local:
                raise UnsafeModelError(f"the ONNX model uses the op {node.op_type} of the "
                                       f"custom domain {node.domain!r} (node "
                                       f"{node.name!r}); only standard ONNX ops are served")
            for attribute in node.attribute:
                graphs.extend([attribute.g] if attribute.HasField("g") else [])
                graphs.extend(attribute.graphs)
                tensors.extend([attribute.t] if attribute.HasField("t") else [])
                tensors.extend(attribute.tensors)
    for tensor in tensors:
        _check_external_data(tensor, folder)


def _check_external_data(tensor: Any, folder: Path) -> None:
    if tensor.data_location != 1:  # TensorProto.EXTERNAL
        return
    location = next((e.value for e in tensor.external_data if e.key == "location"), "")
    windows = PureWindowsPath(location)
    outside = (not location or PurePosixPath(location).is_absolute() or windows.is_absolute()
               or bool(windows.drive) or ".." in windows.parts)
    if not outside:
        base = folder.resolve()
        outside = not (base / location).resolve().is_relative_to(base)
    if outside:
        raise UnsafeModelError(f"the ONNX model reads tensor {tensor.name!r} from "
                               f"{location!r}, outside the model's folder")


def _check_tflite(path: Path, max_bytes: int) -> None:
    schema = _tflite_schema()
    data = path.read_bytes()
    try:
        model = schema.Model.GetRootAs(data, 0)
        codes = [model.OperatorCodes(i).CustomCode() for i in range(model.OperatorCodesLength())]
    except Exception as exc:  # flatbuffers raises IndexError, struct.error...
        raise ValueError(f"not a TFLite flatbuffer: {exc}") from exc
    for code in codes:
        if code is not None and code.startswith(b"Flex"):
            raise UnsafeModelError(f"the TFLite model uses the TensorFlow op "
                                   f"{code.decode(errors='replace')} (Flex delegate); only "
                                   f"TFLite ops are served")


def _tflite_schema() -> Any:
    try:
        # Optional (visionq[classify]): only when a TFLite model is checked.
        from ai_edge_litert import schema_py_generated  # noqa: PLC0415
    except ImportError as exc:
        raise CheckerMissing("tflite models need ai-edge-litert: pip install "
                             "'visionq[classify]'") from exc
    return schema_py_generated


CHECKS: dict[str, Callable[[Path, int], None]] = {
    "savedmodel": _check_saved_model, "keras": _check_keras, "onnx": _check_onnx,
    "tflite": _check_tflite}
