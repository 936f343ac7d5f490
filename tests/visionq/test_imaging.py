"""The decode module against every file in ../shared/fixtures/bad/ and synthetic cases."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.conftest import FIXTURES
from visionq.imaging import (
    ImageError,
    ImageLimits,
    PayloadTooLargeError,
    UnsupportedFormatError,
    decode,
    probe,
)

BAD = FIXTURES / "bad"
CASES = json.loads((BAD / "cases.json").read_text())["cases"]


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if c["expect_status"] >= 400))
def test_rejected_files_raise_typed_errors(name: str) -> None:
    case = CASES[name]
    data = (BAD / name).read_bytes()
    with pytest.raises(ImageError) as caught:
        probe(data)
        decode(data)
    assert caught.value.status == case["expect_status"]
    message = caught.value.message.lower()
    assert any(word in message for word in case["expect_error_contains"]), message


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if c["expect_status"] == 200))
def test_accepted_files_decode_to_upright_rgb(name: str) -> None:
    case = CASES[name]
    data = (BAD / name).read_bytes()
    info = probe(data)
    image = decode(data)
    assert image.pixels.dtype == np.uint8 and image.pixels.shape[2] == 3
    if "display_size_wh" in case:
        assert (image.width, image.height) == tuple(case["display_size_wh"])
        assert (info.width, info.height) == tuple(case["display_size_wh"])
    assert image.pixels.shape[:2] == (image.height, image.width)


def test_gray16_is_scaled_not_clipped() -> None:
    image = decode((BAD / "gray16.png").read_bytes())
    assert 20 < image.pixels.mean() < 235  # naive convert('RGB') gives all white


def test_truncated_rejected_even_when_pillow_is_told_to_load_truncated() -> None:
    from PIL import ImageFile

    ImageFile.LOAD_TRUNCATED_IMAGES = True  # what `import face_recognition` does
    try:
        with pytest.raises(ImageError, match="truncated"):
            decode((BAD / "truncated.jpg").read_bytes())
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False


def _jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (120, 30, 200)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_reduced_size_decode_keeps_original_size_and_scale() -> None:
    image = decode(_jpeg(3840, 2160), max_side=960)
    assert (image.width, image.height) == (3840, 2160)
    assert image.pixels.shape[:2] == (540, 960)
    assert image.scale == 4.0


def test_limits_are_enforced() -> None:
    with pytest.raises(PayloadTooLargeError):
        probe(_jpeg(64, 64), ImageLimits(max_bytes=100))
    with pytest.raises(ImageError, match="too many pixels") as caught:
        probe(_jpeg(200, 200), ImageLimits(max_pixels=100 * 100))
    assert caught.value.status == 413


def test_unsupported_format_is_415() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "ICO")
    with pytest.raises(UnsupportedFormatError) as caught:
        probe(buffer.getvalue())
    assert caught.value.status == 415
