"""The face decode-scale policy (``workers/plugins/face_scale.py``): pure functions, tables."""

from __future__ import annotations

import math

import pytest

from workers.plugins.face_scale import (
    DEFAULT_PIXEL_BUDGET,
    DETECTION_FACE_PX,
    FLOOR_MIN_FACE_PX,
    DetectionPlan,
    decode_divisor,
    default_min_face_px,
    default_scan_budget,
    plan,
)


@pytest.mark.parametrize(("width", "height", "expected"), [
    (320, 240, 40), (640, 480, 40), (632, 632, 40),  # <= budget / 4: face_recognition's own
    (1137, 910, 65), (1632, 1224, 90), (1920, 1080, 92), (3264, 2448, 179),
    (3840, 2160, 183), (4000, 3000, 220), (8000, 6000, 439)])
def test_default_min_face_px_grows_with_the_square_root_of_the_pixels(
        width: int, height: int, expected: int) -> None:
    assert default_min_face_px(width * height) == expected


def test_default_scans_the_same_pixels_at_every_size_above_the_floor() -> None:
    for megapixels in (0.5, 1, 2, 5, 8, 12, 24, 48):
        pixels = int(megapixels * 1e6)
        scanned = pixels * (DETECTION_FACE_PX / default_min_face_px(pixels)) ** 2
        assert 0.94 * DEFAULT_PIXEL_BUDGET <= scanned <= DEFAULT_PIXEL_BUDGET
    assert FLOOR_MIN_FACE_PX * 2 == DETECTION_FACE_PX  # the floor is full size + one upsample


@pytest.mark.parametrize(("min_face_px", "divisor"), [
    (20, 1), (40, 1), (100, 1), (159, 1), (160, 2), (220, 2), (319, 2), (320, 4), (639, 4),
    (640, 8), (5000, 8)])
def test_decode_divisor_is_the_largest_dct_scale_keeping_the_detection_scale(
        min_face_px: int, divisor: int) -> None:
    assert decode_divisor(min_face_px) == divisor


@pytest.mark.parametrize(("decoded_scale", "min_face_px", "expected"), [
    (1, 40, DetectionPlan(1.0, 1)),        # face_recognition's default
    (1, 80, DetectionPlan(1.0, 0)),        # full size, no upsample
    (1, 83, DetectionPlan(1.0, 0)),        # within 5%: keep the pixels
    (1, 90, DetectionPlan(80 / 90, 0)),    # 2 MP default: shrink to 0.89
    (1, 65, DetectionPlan(80 / 65 / 2, 1)),  # 1 MP default: shrink to 0.62, then x2
    (2, 220, DetectionPlan(2 * 80 / 220, 0)),  # 12 MP at half size: 0.73
    (2, 160, DetectionPlan(1.0, 0)),
    (2, 80, DetectionPlan(1.0, 1)),
    (4, 40, DetectionPlan(1.0, 3)),        # upsampling is capped at 3
    (8, 20, DetectionPlan(1.0, 3)),
])
def test_plan(decoded_scale: float, min_face_px: int, expected: DetectionPlan) -> None:
    found = plan(decoded_scale, min_face_px)
    assert found.upsample == expected.upsample
    assert found.resize == pytest.approx(expected.resize, abs=1e-9)
    assert found.resize <= 1


@pytest.mark.parametrize("min_face_px", [20, 36, 50, 81, 120, 198, 400, 1000])
@pytest.mark.parametrize("decoded_scale", [1, 2, 4, 8])
def test_plan_reaches_the_detection_scale(decoded_scale: float, min_face_px: int) -> None:
    """A face of min_face_px original pixels is scanned at 80 px (within 5%) unless upsampling
    is capped."""
    found = plan(decoded_scale, min_face_px)
    scanned_face = min_face_px / decoded_scale * found.resize * 2 ** found.upsample
    if found.upsample < 3:
        assert DETECTION_FACE_PX <= scanned_face * 1.0001 <= DETECTION_FACE_PX * 1.06
    assert math.isclose(found.pixel_factor, (found.resize * 2 ** found.upsample) ** 2)


@pytest.mark.parametrize(("model", "pixel_budget", "max_scan", "expected"), [
    ("hog", DEFAULT_PIXEL_BUDGET, 40_000_000, DEFAULT_PIXEL_BUDGET),  # HOG: the operator's
    ("hog", DEFAULT_PIXEL_BUDGET, 1_000_000, DEFAULT_PIXEL_BUDGET),
    ("cnn", DEFAULT_PIXEL_BUDGET, 40_000_000, 564_062),  # 625,000 x 0.95^2
    ("cnn", 300_000, 40_000_000, 300_000),               # a smaller pixel budget stays
    ("cnn", DEFAULT_PIXEL_BUDGET, 400_000_000, DEFAULT_PIXEL_BUDGET),
])
def test_default_scan_budget(model: str, pixel_budget: int, max_scan: int,
                             expected: int) -> None:
    assert default_scan_budget(model, pixel_budget, max_scan) == expected


@pytest.mark.parametrize("divisor", [1, 2, 4, 8])
def test_the_cnn_default_never_scans_more_than_the_budget_allows(divisor: int) -> None:
    """Whatever the photo and its JPEG decode, the CNN's default plan (after the plan keeps
    pixels within 5% of the exact scale) scans <= 40 MP / 64 pixels."""
    budget = default_scan_budget("cnn", DEFAULT_PIXEL_BUDGET, 40_000_000)
    for width in range(100, 12_001, 37):
        height = width * 3 // 4
        min_face_px = default_min_face_px(width * height, budget)
        decoded = math.ceil(width / divisor) * math.ceil(height / divisor)
        scale = width / math.ceil(width / divisor)
        found = plan(scale, min_face_px)
        assert decoded * found.pixel_factor <= 625_000, (width, divisor, found)
