"""The stream protocol's parsing, its JSON schema and the per-process stream gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from api.stream import StreamGate
from visionq.stream_protocol import (
    CLOSE_REASONS,
    ImageHeader,
    ProtocolError,
    header_frame,
    parse_header,
    parse_json_frame,
)

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "api" / "stream.schema.json")
                    .read_text())


@pytest.mark.parametrize(("frame", "expected"), [
    ({"task": "detect"}, ImageHeader("detect")),
    ({"task": "classify", "options": {"top_k": 3}, "ref": "cam1/0001.jpg"},
     ImageHeader("classify", {"top_k": 3}, "cam1/0001.jpg")),
    ({"task": "face", "ref": "a", "idempotent": True}, ImageHeader("face", {}, "a", True)),
    ({"task": "face", "options": None}, ImageHeader("face")),
    ({"task": "detect", "callback_url": "https://hooks.example.com/x"},
     ImageHeader("detect", callback_url="https://hooks.example.com/x")),
])
def test_valid_headers(frame: dict[str, Any], expected: ImageHeader) -> None:
    assert parse_header(frame) == expected
    jsonschema.validate(frame if frame.get("options", {}) is not None else {"task": "face"},
                        SCHEMA)


@pytest.mark.parametrize("frame", [
    {}, {"task": ""}, {"task": 3}, {"task": "face", "options": []},
    {"task": "face", "ref": 7}, {"task": "face", "ref": "x" * 256},
    {"task": "face", "idempotent": True}, {"task": "face", "idempotent": "yes", "ref": "a"},
    {"task": "face", "image": "base64..."}, {"task": "face", "callback_url": 7},
])
def test_malformed_headers(frame: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError):
        parse_header(frame)


@pytest.mark.parametrize("text", ["", "not json", "[1, 2]", "3", '"x"', "[" * 100_000])
def test_text_frames_that_are_not_objects(text: str) -> None:
    with pytest.raises(ProtocolError):
        parse_json_frame(text)


def test_header_frame_round_trips() -> None:
    text = header_frame("detect", {"min_confidence": 0.5}, "r1", idempotent=True,
                        callback_url="https://hooks.example.com/x")
    assert parse_header(parse_json_frame(text)) == ImageHeader(
        "detect", {"min_confidence": 0.5}, "r1", True, "https://hooks.example.com/x")


@pytest.mark.parametrize("frame", [
    {"auth": "k"}, {"credit": 8},
    {"ref": None, "id": "abc", "status": "queued"},
    {"ref": "r", "id": "abc", "task": "detect", "status": "succeeded", "result": {"objects": []},
     "error": None, "code": None, "attempts": 1, "timings": {}},
    {"ref": "r", "id": None, "status": "rejected", "error": "not an image", "code": "bad_image",
     "http_status": 400},
])
def test_server_and_client_frames_match_the_schema(frame: dict[str, Any]) -> None:
    jsonschema.validate(frame, SCHEMA)


def test_every_close_code_is_in_the_schema_description() -> None:
    for code in CLOSE_REASONS:
        assert str(code) in SCHEMA["description"]


def test_gate_limits_in_total_and_per_key() -> None:
    gate = StreamGate(max_total=3, max_per_key=2)
    assert gate.acquire("a") and gate.acquire("a")
    assert not gate.acquire("a")  # per key
    assert gate.acquire("b")
    assert not gate.acquire("c")  # in total
    gate.release("a")
    assert gate.acquire("c") and gate.open == 3


def test_default_streams_leave_threads_for_rest() -> None:
    """Each open stream holds a gunicorn thread: under ``visionq up``'s threads per API
    process, the default stream limit leaves some for REST requests."""
    from launcher.up import Stack
    from visionq.settings import Settings

    threads = Stack.__dataclass_fields__["api_threads"].default
    assert 0 < Settings().max_streams <= threads - 4
