"""Objects and ImageNet labels: the DeepStack-style calls and the job API, with the
photos of visionq's fixtures (bus.jpg: a bus and people; coffee.png: an espresso)."""

from __future__ import annotations

from pathlib import Path

import pytest
from visionq_client import Client, Label, ObjectPrediction, VisionqError


def test_detect(client: Client, detect_task: str, fixtures: Path) -> None:
    bus = fixtures / "detect" / "images" / "bus.jpg"
    found = client.detect(bus)
    assert all(isinstance(p, ObjectPrediction) and p.confidence >= 0.4 for p in found)
    assert {"bus", "person"} <= {p.label for p in found}
    assert [p.confidence for p in found] == sorted((p.confidence for p in found), reverse=True)
    assert all(p.confidence >= 0.8 for p in client.detect(bus, min_confidence=0.8))
    job = client.run(bus, detect_task, {"min_confidence": 0.5}, timeout_s=120)
    assert job.succeeded and "bus" in {p["label"] for p in job.result["predictions"]}


def test_classify(client: Client, classify_task: str, fixtures: Path) -> None:
    coffee = fixtures / "classify" / "coffee.png"
    labels = client.classify(coffee, top_k=3)
    assert len(labels) == 3 and isinstance(labels[0], Label)
    assert labels[0].label == "espresso" and labels[0].confidence >= labels[1].confidence
    job = client.run(coffee, classify_task, {"top_k": 2}, timeout_s=120)
    assert job.succeeded and job.result["predictions"][0]["label"] == "espresso"
    with pytest.raises(VisionqError) as caught:
        client.classify(coffee, top_k="many")  # type: ignore[arg-type]
    assert caught.value.status == 400 and caught.value.code == "invalid_options"
