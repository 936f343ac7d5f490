"""Frigate's edge cases on ``/v1/vision/detection`` (issue 26 item 5), against a real detect
worker.

Frigate's ``deepstack`` detector (blakeblackshear/frigate,
``frigate/detectors/plugins/deepstack.py``) reads the predictions in the order given into a
20-row array: it stops at the first one below 0.4 or whose label is not in its labelmap
(after renaming ``truck`` to ``car``), and a 21st one it reads is written past the array's
end (``IndexError``).  So: predictions sorted by confidence, highest first; at most
``VISIONQ_DEEPSTACK_MAX_PREDICTIONS`` (DeepStack's own cap by default, 20 for Frigate); and
labels spelled as Frigate's labelmap spells them (``frigate_labelmap.txt``, copied from
Frigate with its source in its header).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import redis
from PIL import Image
from pydantic import ValidationError

from tests.api.conftest import AppFactory, files
from tests.conftest import FIXTURES, WorkerFactory
from visionq.keys import WORKER_KEY_PREFIX
from visionq.labels import COCO_LABELS
from visionq.settings import Settings

LABELMAP = Path(__file__).with_name("frigate_labelmap.txt")
BUS = FIXTURES / "detect" / "images" / "bus.jpg"
FRIGATE_ROWS = 20
FRIGATE_MIN_SCORE = 0.4


def frigate_labels() -> set[str]:
    """Label names of the labelmap file (lines ``<index>  <name>``; ``#`` lines are ours)."""
    lines = [line for line in LABELMAP.read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    return {line.split(maxsplit=1)[1].strip() for line in lines}


def frigate_reads(predictions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What Frigate's detector keeps, as its loop does: in order, until the first below 0.4
    or with a label missing from its labelmap (``truck`` is looked up as ``car``)."""
    known = frigate_labels()
    kept = []
    for prediction in predictions:
        label = prediction["label"].lower()
        label = "car" if label == "truck" else label
        if prediction["confidence"] < FRIGATE_MIN_SCORE or label not in known:
            break
        kept.append(prediction)
    return kept


def test_every_coco_label_is_in_frigates_labelmap() -> None:
    known = frigate_labels()
    assert len(known) == 90  # the file as copied: 90 names, indices 0-89
    assert {"motorcycle", "airplane", "tv", "couch", "potted plant", "dining table",
            "cell phone", "hair drier", "sports ball"} <= known
    missing = [label for label in COCO_LABELS if label not in known]
    assert missing == ["truck"]  # Frigate's detector renames truck to car before looking up
    assert "car" in known


@pytest.mark.parametrize("value", [0, -1, 1001])
def test_max_predictions_setting_is_bounded(value: int) -> None:
    with pytest.raises(ValidationError):
        Settings(deepstack_max_predictions=value)


def test_max_predictions_default_is_deepstacks(monkeypatch: pytest.MonkeyPatch) -> None:
    """DeepStack keeps at most 300 boxes per image (``max_det = 300`` in
    ``intelligencelayer/shared/utils/general.py`` ``non_max_suppression``) and returns every
    one above ``min_confidence`` (``detection.py`` ``run_task``)."""
    assert Settings().deepstack_max_predictions == 300
    monkeypatch.setenv("VISIONQ_DEEPSTACK_MAX_PREDICTIONS", "20")
    assert Settings().deepstack_max_predictions == 20


@pytest.fixture(scope="module")
def detect_worker(start_worker: WorkerFactory, redis_url: str) -> None:
    from tests.api.test_deepstack import _detect_model_ready

    reason = _detect_model_ready()
    if reason:
        pytest.skip(reason)
    if not redis.Redis.from_url(redis_url).exists(f"{WORKER_KEY_PREFIX}detect@testhost"):
        start_worker(redis_url, "detect", "detect")


def _frame(side: int = 320) -> bytes:
    """bus.jpg as a Frigate frame: resized to ``side`` square, JPEG at Pillow's default."""
    with Image.open(BUS) as image:
        frame = image.convert("RGB").resize((side, side))
    buffer = io.BytesIO()
    frame.save(buffer, format="JPEG")
    return buffer.getvalue()


def _detect(client: Any, image: bytes, **form: str) -> list[dict[str, Any]]:
    response = client.post("/v1/vision/detection", data=files(image=image, **form))
    assert response.status_code == 200, response.get_json()
    return response.get_json()["predictions"]


def test_sorted_highest_first_and_frigate_reads_them_all(
        detect_worker: None, redis_url: str, make_client: AppFactory) -> None:
    client = make_client(redis_url)
    for image in (_frame(), BUS.read_bytes()):
        low = _detect(client, image, min_confidence="0.1")
        confidences = [p["confidence"] for p in low]
        assert len(low) >= 5 and confidences == sorted(confidences, reverse=True), low
        default = _detect(client, image)  # Frigate sends no min_confidence: 0.4
        assert default and frigate_reads(default) == default
        assert frigate_reads(low) == [p for p in low if p["confidence"] >= FRIGATE_MIN_SCORE]


def test_max_predictions_keeps_the_most_confident(
        detect_worker: None, redis_url: str, make_client: AppFactory) -> None:
    everything = _detect(make_client(redis_url), BUS.read_bytes(), min_confidence="0.1")
    assert len(everything) > 3
    capped = _detect(make_client(redis_url, deepstack_max_predictions=3), BUS.read_bytes(),
                     min_confidence="0.1")
    assert capped == everything[:3]
    frigate = make_client(redis_url, deepstack_max_predictions=FRIGATE_ROWS)
    assert len(_detect(frigate, BUS.read_bytes(), min_confidence="0.1")) == min(
        FRIGATE_ROWS, len(everything))
