"""Custom models (``visionq.custom_models``): DeepStack's ``/v1/vision/custom/<name>``,
CodeProject.AI's ``/v1/vision/custom/list``, and ``addmodel`` / ``listmodels`` /
``deletemodel`` (admin) to manage the folder over HTTP.

``custom/<name>`` is a synchronous job of task ``custom/<name>`` on the ``custom`` queue
(``api.deepstack.run``: same validation, limits and queue as ``/v1/jobs``), answered in
DeepStack's custom-model shape: ``{"success", "predictions": [{"label", "confidence",
"x_min", "y_min", "x_max", "y_max"}], "duration"}`` for detectors; classifiers answer like
``/v1/vision/classify`` (``label``, ``confidence``, ``predictions`` without boxes).
"""

from __future__ import annotations

import json
import time
import zipfile
from io import BytesIO
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, request

# The DeepStack endpoints' own request parsing and answer, so custom models behave alike.
from api.deepstack import DETECTION_MIN_CONFIDENCE, _image, _min_confidence, _ok, run
from api.errors import ApiError
from api.services import services
from visionq.custom_models import (
    Catalog,
    CustomModel,
    ManifestError,
    custom_root,
    find,
    install,
    parse_manifest,
    remove,
    scan,
)
from visionq.model_scan import ModelTooLargeError, UnsafeModelError

bp = Blueprint("custom", __name__, url_prefix="/v1/vision")

MANIFEST_FIELDS = ("name", "kind", "format", "file", "labels", "input_size", "layout",
                   "resize", "channels", "mean", "std", "softmax", "score_threshold", "nms_iou",
                   "max_detections", "version")
LIST_FIELDS = ("input_size", "mean", "std")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _root() -> Path:
    return custom_root(services().settings.models_dir)


def _errors(catalog: Catalog) -> list[dict[str, str]]:
    return [{"name": name, "error": reason} for name, reason in catalog.errors.items()]


def _model(name: str) -> CustomModel:
    try:
        return find(_root(), name)
    except ManifestError as exc:
        raise ApiError(404, "model_not_found", str(exc)) from exc


@bp.route("/custom/<name>", methods=["POST"], strict_slashes=False)
def custom_model(name: str) -> Response:
    started = time.perf_counter()
    model = _model(name)
    image = _image()
    classify = model.manifest.kind == "classify"
    min_confidence = _min_confidence(0.0 if classify else DETECTION_MIN_CONFIDENCE)
    result = run(model.manifest.task, [image], {"min_confidence": min_confidence})[0]
    predictions = sorted(result.get("predictions", []), key=lambda p: -p["confidence"])
    if classify:
        best = predictions[0] if predictions else {"label": None, "confidence": 0.0}
        return _ok(started, label=best["label"], confidence=best["confidence"],
                   predictions=predictions)
    return _ok(started, predictions=predictions)


@bp.route("/custom/list", methods=["POST", "GET"], strict_slashes=False)
def custom_list() -> Response:
    """CodeProject.AI's list: the names of the models that can be served; manifests that
    cannot be are listed under ``errors`` with the reason."""
    started = time.perf_counter()
    catalog = scan(_root())
    return _ok(started, models=sorted(catalog.models), errors=_errors(catalog))


@bp.route("/listmodels", methods=["POST", "GET"], strict_slashes=False)
def list_models() -> Response:
    started = time.perf_counter()
    catalog = scan(_root())
    return _ok(started, models=[m.describe() for _, m in sorted(catalog.models.items())],
               errors=_errors(catalog))


@bp.route("/addmodel", methods=["POST"], strict_slashes=False)
def add_model() -> Response:
    """(Admin: ``api.security.ADMIN_ENDPOINTS``.)  Multipart: the model file under ``model`` (a
    .zip of the folder for a SavedModel),
    the manifest as a JSON field ``manifest`` or as one form field per manifest key, and
    optionally a labels file under ``labels``.  Replaces a model of the same name.  The
    model is checked before it lands (``visionq.model_scan``): 400 ``unsafe_model`` when it
    would run more than inference, 413 ``model_too_large`` past
    ``VISIONQ_MODEL_MAX_BYTES`` (a zip: its entries and uncompressed size)."""
    started = time.perf_counter()
    upload = request.files.get("model") or request.files.get("file")
    if upload is None:
        raise ApiError(400, "missing_model", 'missing file field "model" (multipart/form-data)')
    data = upload.read()
    try:
        manifest = parse_manifest(_manifest_fields(), "addmodel")
        _check_model_bytes(manifest.format, data)
        model = install(_root(), manifest, upload.filename or "", data,
                        services().settings.model_max_bytes)
    except ModelTooLargeError as exc:
        raise ApiError(413, "model_too_large", str(exc)) from exc
    except UnsafeModelError as exc:
        raise ApiError(400, "unsafe_model", f"{exc}; custom models may only compute "
                       f"(docs/custom-models.md)") from exc
    except (ManifestError, ValueError) as exc:
        raise ApiError(400, "invalid_model", str(exc)) from exc
    return _ok(started, message="model added", model=model.describe())


@bp.route("/deletemodel", methods=["POST"], strict_slashes=False)
def delete_model() -> Response:
    started = time.perf_counter()
    name = (request.form.get("name") or request.form.get("model") or "").strip()
    if not name:
        raise ApiError(400, "missing_name", 'missing form field "name"')
    if not remove(_root(), name):
        raise ApiError(404, "model_not_found", f"no custom model {name!r}")
    return _ok(started, message="model deleted", name=name)


def _manifest_fields() -> dict[str, Any]:
    raw = request.form.get("manifest")
    if raw:
        try:
            fields = json.loads(raw)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ManifestError(f"manifest is not valid JSON: {exc}") from exc
        if not isinstance(fields, dict):
            raise ManifestError("manifest must be a JSON object")
    else:
        fields = {key: _form_value(key, request.form[key])
                  for key in MANIFEST_FIELDS if request.form.get(key) not in (None, "")}
    labels_file = request.files.get("labels")
    if labels_file is not None:
        text = labels_file.read().decode("utf-8", errors="replace")
        fields["labels"] = [line.strip() for line in text.splitlines() if line.strip()]
    fields.pop("file", None)  # the upload is the file
    return fields


def _form_value(key: str, value: str) -> Any:
    """Form fields are strings: JSON where it parses (numbers, lists, booleans), labels and
    sizes also as comma-separated text."""
    try:
        parsed = json.loads(value)
    except (json.JSONDecodeError, RecursionError):
        parsed = value
    if key == "labels" and isinstance(parsed, str):
        return [part.strip() for part in parsed.split(",") if part.strip()]
    if key in LIST_FIELDS and isinstance(parsed, str) and "," in parsed:
        try:
            return [float(part) if key != "input_size" else int(part)
                    for part in parsed.split(",")]
        except ValueError:
            return parsed
    return parsed


def _check_model_bytes(fmt: str, data: bytes) -> None:
    """Refuse what is clearly not a model of ``fmt`` before it lands in the folder (the
    worker is the judge of the rest, and fails such a model's jobs with the reason)."""
    if not data:
        raise ManifestError("the model file is empty")
    if fmt == "tflite" and data[4:8] != b"TFL3":
        raise ManifestError("not a TFLite flatbuffer (no TFL3 identifier)")
    if fmt == "keras" and not (data.startswith(HDF5_SIGNATURE) or zipfile.is_zipfile(
            BytesIO(data))):
        raise ManifestError("not a Keras model (.keras zip or .h5)")
    if fmt == "onnx":
        _check_onnx(data)


def _check_onnx(data: bytes) -> None:
    try:
        # Lazy on purpose: ONNX (optional, visionq[detect]) loads only when an ONNX model is
        # uploaded, not in every API process.
        import onnx  # noqa: PLC0415
    except ImportError:  # the API host may lack visionq[detect]; the worker will judge
        return
    try:
        graph = onnx.load_model_from_string(data).graph
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ManifestError(f"not an ONNX model: {exc}") from exc
    if not graph.node or not graph.input or not graph.output:
        raise ManifestError("not an ONNX model: the graph has no nodes, inputs or outputs")
