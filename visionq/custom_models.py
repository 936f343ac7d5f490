"""Custom models from a folder: the manifest, the folder layout and the task names.

A custom model is a model file plus a manifest under ``<VISIONQ_MODELS_DIR>/custom/``,
either as a folder ``custom/<name>/manifest.json`` (beside the model file, or the
SavedModel directory) or flat, ``custom/<name>.json`` beside the file it names.  It is
served at ``/v1/vision/custom/<name>`` and as job task ``custom/<name>`` on the one
``custom`` queue, whose workers load each model on first use (``workers.custom``).

Only pydantic and the standard library here: the API, ``visionq up`` and the workers all
read the folder, and none of them should pay for a runtime to do so.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from visionq.labels import COCO91_LABELS, COCO_LABELS
from visionq.model_scan import (
    DEFAULT_MODEL_MAX_BYTES,
    ModelTooLargeError,
    check_model,
    check_zip_directory,
)

log = logging.getLogger(f"visionq.{__name__}")

CUSTOM_QUEUE = "custom"
"""The one queue every custom model's jobs go through."""
TASK_PREFIX = f"{CUSTOM_QUEUE}/"
"""A custom model's job task is ``custom/<name>``."""
MANIFEST_FILE = "manifest.json"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,24}$"
"""Up to 25 characters: ``custom/<name>`` must fit the job history's 32-character task
column (``visionq.history``)."""
RESERVED_NAMES = frozenset({"list"})
"""``/v1/vision/custom/list`` is CodeProject.AI's model list, not a model."""
MODEL_SUFFIXES = {"onnx": (".onnx",), "tflite": (".tflite",), "keras": (".keras", ".h5")}
MAX_LABELS = 100_000
UNZIP_CHUNK_BYTES = 1 << 20

Kind = Literal["detect", "classify"]
Format = Literal["onnx", "tflite", "savedmodel", "keras"]
Layout = Literal["yolov5", "yolov8", "ssd", "yolox", "detr"]
LETTERBOX_LAYOUTS = ("yolov5", "yolov8", "yolox")
BUILTIN_LABELS = {"coco80": COCO_LABELS, "coco91": COCO91_LABELS}
"""``"labels": "coco80"`` (class ids 0..79) or ``"coco91"`` (COCO category ids, as RT-DETR,
D-FINE and RF-DETR exports give) instead of a list, when no file of that name is beside
the manifest."""


class ManifestError(ValueError):
    """A manifest or model folder that cannot be served, with the reason."""


class Manifest(BaseModel):
    """What a user writes in ``manifest.json`` (docs/custom-models.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN, description="The model's name in URLs and tasks.")
    kind: Kind
    format: Format
    file: str | None = Field(None, description="The model file (or SavedModel folder) beside "
                             "the manifest; default: the only file of the format's suffix, "
                             "or the folder itself for a SavedModel.")
    labels: list[str] | str = Field(description="Class names in output order, or the name of "
                                    "a text file beside the manifest with one per line, or "
                                    "coco80 / coco91 (COCO class or category ids).")
    input_size: int | tuple[int, int] = Field(description="Side, or [width, height], the model "
                                              "takes (pixels).")
    layout: Layout | None = Field(None, description="Detector output layout; required for "
                                  "kind detect.")
    resize: Literal["stretch", "letterbox"] | None = Field(
        None, description="How an image is fitted to input_size; default letterbox for YOLO "
        "layouts (yolov5, yolov8, yolox), stretch otherwise.")
    channels: Literal["rgb", "bgr"] = Field("rgb", description="Channel order of the input "
                                            "(YOLOX's own exports take bgr).")
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (255.0, 255.0, 255.0)
    softmax: bool = Field(False, description="classify: apply softmax to the outputs "
                          "(logits); leave off for probabilities.")
    score_threshold: float = Field(0.25, ge=0, le=1, description="Drop detections scored below "
                                   "(a job's min_confidence can only raise it).")
    nms_iou: float = Field(0.45, gt=0, le=1, description="Per-class NMS IoU threshold.")
    max_detections: int = Field(100, ge=1, le=10_000)
    version: str = "1"

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED_NAMES:
            raise ValueError(f"{value!r} is reserved ({', '.join(sorted(RESERVED_NAMES))})")
        return value

    @field_validator("labels")
    @classmethod
    def _labels_shape(cls, value: list[str] | str) -> list[str] | str:
        if isinstance(value, list) and not 1 <= len(value) <= MAX_LABELS:
            raise ValueError(f"labels must list 1 to {MAX_LABELS} names")
        if isinstance(value, str) and (not value or "/" in value or value.startswith(".")):
            raise ValueError("labels must be a list or the name of a file beside the manifest")
        return value

    @field_validator("input_size")
    @classmethod
    def _positive_size(cls, value: int | tuple[int, int]) -> int | tuple[int, int]:
        sides = (value,) if isinstance(value, int) else value
        if not all(1 <= side <= 4096 for side in sides):
            raise ValueError("input_size sides must be between 1 and 4096 pixels")
        return value

    @field_validator("file")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        if value is not None and (not value or "/" in value or value.startswith(".")):
            raise ValueError("file must be a plain name beside the manifest")
        return value

    @model_validator(mode="after")
    def _layout_fits_kind(self) -> Manifest:
        if self.kind == "detect" and self.layout is None:
            raise ValueError("kind detect needs a layout: yolov5, yolov8, yolox, detr or ssd")
        if self.kind == "classify" and self.layout is not None:
            raise ValueError("layout is for kind detect only")
        if any(value <= 0 for value in self.std):
            raise ValueError("std values must be positive")
        return self

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the model input."""
        if isinstance(self.input_size, int):
            return self.input_size, self.input_size
        return self.input_size

    @property
    def fit(self) -> Literal["stretch", "letterbox"]:
        if self.resize is not None:
            return self.resize
        return "letterbox" if self.layout in LETTERBOX_LAYOUTS else "stretch"

    @property
    def task(self) -> str:
        return f"{TASK_PREFIX}{self.name}"


@dataclass(frozen=True)
class CustomModel:
    """A valid custom model: its manifest, resolved labels and where its files are."""

    manifest: Manifest
    labels: list[str]
    manifest_path: Path
    model_path: Path

    @property
    def name(self) -> str:
        return self.manifest.name

    def stamp(self) -> tuple[float, float]:
        """Changes when the manifest or the model file is replaced (cache key)."""
        return (self.manifest_path.stat().st_mtime, self.model_path.stat().st_mtime)

    def describe(self) -> dict[str, object]:
        m = self.manifest
        return {"name": m.name, "kind": m.kind, "format": m.format, "layout": m.layout,
                "input_size": list(m.size), "labels": len(self.labels), "version": m.version,
                "task": m.task}


@dataclass
class Catalog:
    """The folder as read: valid models by name, and what could not be read (name or file ->
    reason)."""

    models: dict[str, CustomModel] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def custom_root(models_dir: Path | str) -> Path:
    return Path(models_dir) / CUSTOM_QUEUE


def is_custom_task(task: str | None) -> bool:
    return bool(task) and task.startswith(TASK_PREFIX)  # type: ignore[union-attr]


def model_name(task: str) -> str:
    """``custom/<name>`` -> ``<name>``."""
    return task.removeprefix(TASK_PREFIX)


def queue_of_task(task: str) -> str:
    """The queue a job task goes to: its own for built-in tasks, ``custom`` for custom ones."""
    return CUSTOM_QUEUE if is_custom_task(task) else task


def custom_queue_if_models(models_dir: Path | str) -> list[str]:
    """``["custom"]`` when the folder holds at least one servable model (``visionq up``
    starts a worker for that queue then), else ``[]``."""
    return [CUSTOM_QUEUE] if scan(custom_root(models_dir)).models else []


def scan(root: Path) -> Catalog:
    """Read every manifest under ``root``; a bad one is logged and listed, never raised."""
    catalog = Catalog()
    if not root.is_dir():
        return catalog
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue  # in-progress uploads (``.tmp-*``) and hidden files
        if entry.is_dir():
            manifest_path = entry / MANIFEST_FILE
            expected = entry.name
        elif entry.suffix == ".json":
            manifest_path, expected = entry, entry.stem
        else:
            continue  # a model file of a flat manifest
        try:
            model = read(manifest_path, expected)
        except ManifestError as exc:
            log.error("custom model %s: %s", expected, exc)
            catalog.errors[expected] = str(exc)
            continue
        if model.name in catalog.models:
            catalog.errors[expected] = f"a second model named {model.name!r}"
            continue
        catalog.models[model.name] = model
    return catalog


def find(root: Path, name: str) -> CustomModel:
    """The model named ``name`` (``ManifestError`` if absent or invalid), without reading
    the rest of the folder."""
    if not re.match(NAME_PATTERN, name):
        raise ManifestError(f"no custom model {name!r}")
    folder = root / name / MANIFEST_FILE
    flat = root / f"{name}.json"
    for path in (folder, flat):
        if path.is_file():
            return read(path, name)
    raise ManifestError(f"no custom model {name!r} in {root}")


def read(manifest_path: Path, expected_name: str) -> CustomModel:
    """Parse and check one manifest and the files it names."""
    if not manifest_path.is_file():
        raise ManifestError(f"{manifest_path} is missing")
    try:
        raw = json.loads(manifest_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{manifest_path} is not valid JSON: {exc}") from exc
    if isinstance(raw, dict):
        raw.setdefault("name", expected_name)
    manifest = parse_manifest(raw, manifest_path)
    if manifest.name != expected_name:
        raise ManifestError(f"{manifest_path}: name {manifest.name!r} does not match "
                            f"{expected_name!r} (the folder or file name)")
    base = manifest_path.parent
    labels = _labels(manifest, base)
    return CustomModel(manifest, labels, manifest_path, _model_path(manifest, base,
                                                                    manifest_path))


def parse_manifest(raw: object, where: object = "manifest") -> Manifest:
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'manifest'}: {e['msg']}"
                             for e in exc.errors(include_url=False))
        raise ManifestError(f"{where}: {problems}") from exc


def _labels(manifest: Manifest, base: Path) -> list[str]:
    if isinstance(manifest.labels, list):
        return list(manifest.labels)
    path = base / manifest.labels
    if manifest.labels in BUILTIN_LABELS and not path.exists():
        return list(BUILTIN_LABELS[manifest.labels])
    try:
        labels = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"labels file {path} cannot be read: {exc}") from exc
    if not 1 <= len(labels) <= MAX_LABELS:
        raise ManifestError(f"labels file {path} must have 1 to {MAX_LABELS} names")
    return labels


def _model_path(manifest: Manifest, base: Path, manifest_path: Path) -> Path:
    if manifest.file is not None:
        path = base / manifest.file
    elif manifest.format == "savedmodel":
        path = base
    else:
        suffixes = MODEL_SUFFIXES[manifest.format]
        stem_match = [base / f"{manifest.name}{s}" for s in suffixes]
        candidates = [p for p in stem_match if p.is_file()]
        if not candidates and manifest_path.name == MANIFEST_FILE:
            candidates = sorted(p for p in base.iterdir() if p.suffix in suffixes)
        if len(candidates) != 1:
            raise ManifestError(f"{manifest_path}: found {len(candidates)} {manifest.format} "
                                f"files ({', '.join(suffixes)}); name one with \"file\"")
        path = candidates[0]
    if manifest.format == "savedmodel":
        if not (path / "saved_model.pb").is_file():
            raise ManifestError(f"{path} is not a SavedModel folder (no saved_model.pb)")
    elif not path.is_file():
        raise ManifestError(f"model file {path} is missing")
    return path


def install(root: Path, manifest: Manifest, filename: str, data: bytes,
            max_bytes: int = DEFAULT_MODEL_MAX_BYTES) -> CustomModel:
    """Write ``custom/<name>/`` (manifest + model; a SavedModel comes as a .zip of its
    folder) atomically, replacing a model of that name; the result is read back.  The model
    is checked before it is moved in (``visionq.model_scan``: ``ModelTooLargeError`` past
    ``max_bytes``, ``UnsafeModelError`` when it would run more than inference)."""
    if len(data) > max_bytes:
        raise ModelTooLargeError(f"the model is {len(data)} bytes; at most {max_bytes} "
                                 f"(VISIONQ_MODEL_MAX_BYTES)")
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        if manifest.format == "savedmodel":
            _unzip(data, staging, max_bytes)
            body = manifest.model_copy(update={"file": None})
        else:
            suffix = Path(filename).suffix.lower()
            if suffix not in MODEL_SUFFIXES[manifest.format]:
                suffix = MODEL_SUFFIXES[manifest.format][0]
            target = f"{manifest.name}{suffix}"
            (staging / target).write_bytes(data)
            body = manifest.model_copy(update={"file": target})
        (staging / MANIFEST_FILE).write_text(
            json.dumps(body.model_dump(mode="json", exclude_none=True), indent=2) + "\n")
        staged = read(staging / MANIFEST_FILE, manifest.name)  # refuse what cannot be served
        check_model(manifest.format, staged.model_path, max_bytes=max_bytes, required=False)
        final = root / manifest.name
        old = root / f".old-{manifest.name}-{os.getpid()}"
        if final.exists():
            final.rename(old)
        staging.rename(final)
        shutil.rmtree(old, ignore_errors=True)
        (root / f"{manifest.name}.json").unlink(missing_ok=True)  # a flat one it replaces
        return read(final / MANIFEST_FILE, manifest.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove(root: Path, name: str) -> bool:
    """Delete the model ``name`` (folder or flat manifest + its file); False if absent."""
    if not re.match(NAME_PATTERN, name):
        return False
    folder, flat = root / name, root / f"{name}.json"
    if folder.is_dir():
        doomed = root / f".del-{name}-{os.getpid()}"
        folder.rename(doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        return True
    if flat.is_file():
        try:
            model = read(flat, name)
            if model.model_path.parent == root and model.model_path.is_file():
                model.model_path.unlink()
        except ManifestError:
            pass
        flat.unlink()
        return True
    return False


def _unzip(data: bytes, target: Path, max_bytes: int) -> None:
    """Extract the SavedModel folder of the .zip ``data`` into ``target``: limits checked
    on the zip's directory first, then on the bytes actually written."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise ManifestError("a savedmodel upload must be a .zip of the SavedModel "
                            "folder") from exc
    check_zip_directory(archive, max_bytes)
    names = archive.namelist()
    pb = [n for n in names if n.endswith("saved_model.pb")]
    if len(pb) != 1:
        raise ManifestError("the .zip must hold exactly one saved_model.pb")
    prefix = pb[0].removesuffix("saved_model.pb")
    written = 0
    for info in archive.infolist():
        if info.is_dir() or not info.filename.startswith(prefix):
            continue
        relative = Path(info.filename[len(prefix):])
        if relative.is_absolute() or ".." in relative.parts:
            raise ManifestError(f"unsafe path in the .zip: {info.filename}")
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            written = _extract(archive, info, destination, written, max_bytes)
        except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
            raise ManifestError(f"the .zip is damaged at {info.filename}: {exc}") from exc


def _extract(archive: zipfile.ZipFile, info: zipfile.ZipInfo, destination: Path,
             written: int, max_bytes: int) -> int:
    """Copy one entry in chunks; the running total of bytes written so far comes back."""
    with archive.open(info) as source, destination.open("wb") as sink:
        while chunk := source.read(UNZIP_CHUNK_BYTES):
            written += len(chunk)
            if written > max_bytes:
                raise ModelTooLargeError(f"the .zip unpacks to more than {max_bytes} bytes "
                                         f"(VISIONQ_MODEL_MAX_BYTES)")
            sink.write(chunk)
    return written
