"""Custom model manifests and the folder (``visionq.custom_models``): what is accepted, what
is refused and how a bad manifest is reported instead of raised."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from visionq.custom_models import (
    CUSTOM_QUEUE,
    ManifestError,
    custom_queue_if_models,
    find,
    install,
    parse_manifest,
    queue_of_task,
    remove,
    scan,
)

GOOD: dict[str, Any] = {"name": "pets", "kind": "detect", "format": "onnx",
                        "layout": "yolov5", "labels": ["dog", "cat"], "input_size": 640}


def test_a_minimal_manifest_gets_the_documented_defaults() -> None:
    manifest = parse_manifest(GOOD)
    assert manifest.size == (640, 640)
    assert manifest.fit == "letterbox"
    assert (manifest.score_threshold, manifest.nms_iou, manifest.max_detections) == (
        0.25, 0.45, 100)
    assert manifest.task == "custom/pets"
    assert parse_manifest({**GOOD, "input_size": [320, 256], "layout": "ssd"}).size == (
        320, 256)
    assert parse_manifest({**GOOD, "layout": "ssd"}).fit == "stretch"


@pytest.mark.parametrize(("change", "message"), [
    ({"kind": "segment"}, "kind"),
    ({"format": "pt"}, "format"),
    ({"layout": None}, "needs a layout"),
    ({"kind": "classify"}, "layout is for kind detect only"),
    ({"name": "../etc"}, "name"),
    ({"name": "list"}, "reserved"),
    ({"name": "n" * 26}, "name"),
    ({"labels": []}, "labels"),
    ({"labels": "../labels.txt"}, "labels"),
    ({"input_size": 0}, "input_size"),
    ({"input_size": [1, 2, 3]}, "input_size"),
    ({"score_threshold": 2}, "score_threshold"),
    ({"std": [0, 1, 1]}, "std"),
    ({"colour": "blue"}, "colour"),
    ({"file": "/etc/passwd"}, "file"),
])
def test_bad_manifests_name_the_problem(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_manifest({**GOOD, **change})


def write(folder: Path, manifest: object, **files: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(manifest if isinstance(manifest, str)
                                          else json.dumps(manifest))
    for name, data in files.items():
        (folder / name).write_bytes(data)


def test_scan_lists_good_models_and_reports_bad_ones(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    write(tmp_path / "pets", {k: v for k, v in GOOD.items() if k != "name"},
          **{"pets.onnx": b"x"})
    write(tmp_path / "broken", "{not json")
    write(tmp_path / "nofile", {**GOOD, "name": "nofile"})
    write(tmp_path / "renamed", GOOD, **{"m.onnx": b"x"})
    write(tmp_path / "labelled", {**GOOD, "name": "labelled", "labels": "labels.txt"},
          **{"m.onnx": b"x", "labels.txt": b"dog\n\ncat\n"})
    (tmp_path / "flat.json").write_text(json.dumps({**GOOD, "name": "flat",
                                                    "file": "flat-v2.onnx"}))
    (tmp_path / "flat-v2.onnx").write_bytes(b"x")
    (tmp_path / ".tmp-upload").mkdir()
    catalog = scan(tmp_path)
    assert sorted(catalog.models) == ["flat", "labelled", "pets"]
    assert catalog.models["labelled"].labels == ["dog", "cat"]
    assert catalog.models["flat"].model_path == tmp_path / "flat-v2.onnx"
    assert sorted(catalog.errors) == ["broken", "nofile", "renamed"]
    assert "not valid JSON" in catalog.errors["broken"]
    assert "found 0 onnx files" in catalog.errors["nofile"]
    assert "does not match" in catalog.errors["renamed"]
    assert "custom model broken" in caplog.text
    assert custom_queue_if_models(tmp_path.parent) == []  # <models>/custom, not tmp_path
    with pytest.raises(ManifestError, match="no custom model"):
        find(tmp_path, "absent")
    with pytest.raises(ManifestError, match="no custom model"):
        find(tmp_path, "../pets")


def test_the_custom_queue_exists_only_with_models(tmp_path: Path) -> None:
    assert custom_queue_if_models(tmp_path) == []
    write(tmp_path / "custom" / "bad", "{")
    assert custom_queue_if_models(tmp_path) == []
    write(tmp_path / "custom" / "pets", GOOD, **{"pets.onnx": b"x"})
    assert custom_queue_if_models(tmp_path) == [CUSTOM_QUEUE]
    assert queue_of_task("custom/pets") == CUSTOM_QUEUE
    assert queue_of_task("detect") == "detect"


def test_install_replaces_and_remove_deletes(tmp_path: Path) -> None:
    from tests.workers.custom_builders import yolo_onnx

    manifest = parse_manifest(GOOD)
    one, two = yolo_onnx("yolov5"), yolo_onnx("yolov8")  # install checks the model
    first = install(tmp_path, manifest, "yolo.onnx", one)
    assert first.model_path == tmp_path / "pets" / "pets.onnx"
    install(tmp_path, manifest.model_copy(update={"version": "2"}), "yolo.onnx", two)
    again = find(tmp_path, "pets")
    assert again.model_path.read_bytes() == two and again.manifest.version == "2"
    assert [p.name for p in tmp_path.iterdir()] == ["pets"]  # no staging left behind
    assert remove(tmp_path, "pets") and not remove(tmp_path, "pets")
    assert list(tmp_path.iterdir()) == []


def test_a_savedmodel_upload_is_a_zip_of_its_folder(tmp_path: Path) -> None:
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr("export/saved_model.pb", b"pb")
        archive.writestr("export/variables/variables.index", b"idx")
    manifest = parse_manifest({**GOOD, "format": "savedmodel"})
    model = install(tmp_path, manifest, "export.zip", data.getvalue())
    assert model.model_path == tmp_path / "pets"
    assert (tmp_path / "pets" / "variables" / "variables.index").read_bytes() == b"idx"
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("saved_model.pb", b"pb")
        archive.writestr("../../escape", b"x")
    with pytest.raises(ManifestError, match="unsafe path"):
        install(tmp_path, manifest, "evil.zip", evil.getvalue())
    with pytest.raises(ManifestError, match=".zip"):
        install(tmp_path, manifest, "x.pb", b"not a zip")
    assert find(tmp_path, "pets").model_path == tmp_path / "pets"  # the good one stays


def test_visionq_up_starts_a_custom_worker_only_with_models(tmp_path: Path) -> None:
    from launcher.up import Stack
    from visionq.settings import Settings

    def workers() -> list[str]:
        settings = Settings(models_dir=tmp_path / "models", state_dir=tmp_path / "state")
        stack = Stack(settings=settings, queues=["face"], flower=False, prometheus=False)
        return [s.name for s in stack.plan() if s.name.startswith("worker-")]

    assert workers() == ["worker-face"]
    write(tmp_path / "models" / "custom" / "bad", "{")
    assert workers() == ["worker-face"]
    write(tmp_path / "models" / "custom" / "pets", GOOD, **{"pets.onnx": b"x"})
    assert workers() == ["worker-face", "worker-custom"]
