"""The detect job option ``input_size`` (issue 26 item 1) is bounded at submit: a 400 with
nothing queued outside multiples of 32 in 32..1024, and in the OpenAPI document."""

from __future__ import annotations

import io
import json

import pytest
import redis
from PIL import Image

from api.openapi import build_spec
from tests.api.conftest import AppFactory


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("value", [0, 31, 33, 500, 1056, 4096, "512", 512.5, True])
def test_out_of_range_input_size_is_refused(idle_redis_url: str, make_client: AppFactory,
                                            value: object) -> None:
    client = make_client(idle_redis_url)
    queued = redis.Redis.from_url(idle_redis_url).llen("detect")
    response = client.post("/v1/jobs?task=detect", data={
        "image": (io.BytesIO(_png()), "x.png"), "options": json.dumps({"input_size": value})})
    body = response.get_json()
    assert response.status_code == 400, body
    assert body["code"] == "invalid_options" and "input_size" in body["error"]
    assert redis.Redis.from_url(idle_redis_url).llen("detect") == queued


@pytest.mark.parametrize("value", [32, 320, 1024])
def test_in_range_input_size_is_accepted(idle_redis_url: str, make_client: AppFactory,
                                         value: int) -> None:
    client = make_client(idle_redis_url)
    response = client.post("/v1/jobs?task=detect", data={
        "image": (io.BytesIO(_png()), "x.png"), "options": json.dumps({"input_size": value})})
    assert response.status_code == 202, response.get_json()


def test_input_size_range_in_the_openapi_document() -> None:
    field = build_spec()["components"]["schemas"]["DetectOptions"]["properties"]["input_size"]
    [number] = [s for s in field["anyOf"] if s.get("type") == "integer"]
    assert (number["minimum"], number["maximum"], number["multipleOf"]) == (32, 1024, 32)
