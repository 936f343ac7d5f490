"""Published payloads: bounded, no face encodings, people matched as the recognize
endpoint matches them."""

from __future__ import annotations

import json
from dataclasses import dataclass

from visionq.mqtt.payloads import job_message, sightings

ENCODING = [0.1] * 128


@dataclass
class Match:
    userid: str
    confidence: float


def face_fields(**extra: str) -> dict[str, str]:
    result = {"faces": [
        {"x_min": 1, "y_min": 2, "x_max": 30, "y_max": 40, "encoding": ENCODING},
        {"x_min": 50, "y_min": 2, "x_max": 90, "y_max": 40, "encoding": ENCODING},
        {"x_min": 99, "y_min": 2, "x_max": 120, "y_max": 40, "encoding": ENCODING}]}
    return {"id": "j1", "task": "face", "status": "succeeded", "queued_at": "100.0",
            "finished_at": "101.5", "attempts": "1", "submitter": "key:abc",
            "blob_owned": "0", "blob": "cams/door/1.jpg", "result": json.dumps(result),
            **extra}


def test_job_message_has_no_encodings_and_iso_time() -> None:
    body = json.loads(job_message(face_fields(), 65_536))
    assert body["id"] == "j1" and body["time"] == "1970-01-01T00:01:41.500+00:00"
    assert body["source"] == "key:abc" and body["image"] == "cams/door/1.jpg"
    assert len(body["result"]["faces"]) == 3
    assert all("encoding" not in face for face in body["result"]["faces"])


def test_owned_blob_is_not_published() -> None:
    body = json.loads(job_message(face_fields(blob_owned="1"), 65_536))
    assert body["image"] is None


def test_large_result_is_truncated_within_the_bound() -> None:
    fields = face_fields(task="classify", result=json.dumps({"labels": ["x" * 100] * 2000}))
    raw = job_message(fields, 4096)
    assert len(raw) <= 4096
    assert json.loads(raw)["result"]["truncated"] is True


def test_error_is_bounded() -> None:
    raw = job_message(face_fields(status="failed", error="e" * 100_000, result=""), 65_536)
    assert len(json.loads(raw)["error"]) == 1000


def test_sightings_keep_the_surest_face_per_person_above_the_threshold() -> None:
    matches = [Match("alice", 0.7), Match("alice", 0.9), Match("bob", 0.5)]
    seen = sightings(face_fields(), lambda encodings, qualities: matches[:len(encodings)], 0.67)
    assert list(seen) == ["alice"]
    alice = seen["alice"]
    assert alice["confidence"] == 0.9 and alice["box"]["x_min"] == 50
    assert alice["time"] == "1970-01-01T00:01:41.500+00:00" and alice["job_id"] == "j1"
    assert alice["source"] == "key:abc" and alice["image"] == "cams/door/1.jpg"


def test_no_sightings_without_encodings_or_success() -> None:
    def identify(encodings: list, qualities: list) -> list:
        return [Match("alice", 1.0)] * len(encodings)

    assert sightings(face_fields(status="failed"), identify, 0.5) == {}
    assert sightings(face_fields(task="detect"), identify, 0.5) == {}
    plain = json.dumps({"faces": [{"x_min": 1, "y_min": 1, "x_max": 2, "y_max": 2}]})
    assert sightings(face_fields(result=plain), identify, 0.5) == {}


def test_sightings_pass_each_faces_quality_to_the_registry() -> None:
    """The registry's size/sharpness gate (VISIONQ_FACE_MIN_SIZE_PX) needs the quality."""
    given: list = []

    def identify(encodings: list, qualities: list) -> list:
        given.extend(qualities)
        return [None] * len(encodings)

    faces = [{"encoding": [0.0] * 128, "quality": {"size_px": 40, "sharpness": 80.0}},
             {"encoding": [0.0] * 128}]
    assert sightings(face_fields(result=json.dumps({"faces": faces})), identify, 0.5) == {}
    assert given == [{"size_px": 40, "sharpness": 80.0}, None]
