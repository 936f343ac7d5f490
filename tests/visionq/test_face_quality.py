"""Face quality figures (visionq.face_quality): size in original pixels, sharpness that
drops with blur and does not grow with the face's size."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from tests.conftest import FIXTURES
from visionq.face_quality import quality, sharpness

OBAMA_BOX = (142, 617, 409, 349)  # face_recognition's box on obama.jpg (expected.json)


def obama() -> np.ndarray:
    return np.asarray(Image.open(FIXTURES / "faces" / "obama.jpg").convert("RGB"))


def test_blur_lowers_sharpness() -> None:
    pixels = obama()
    blurred = np.asarray(Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(6)))
    sharp, soft = sharpness(pixels, OBAMA_BOX), sharpness(blurred, OBAMA_BOX)
    assert sharp > 100 and soft < sharp / 5, (sharp, soft)


def test_sharpness_does_not_grow_with_the_face_size() -> None:
    pixels = obama()
    half = np.asarray(Image.fromarray(pixels).resize((pixels.shape[1] // 2,
                                                      pixels.shape[0] // 2)))
    big = sharpness(pixels, OBAMA_BOX)
    small = sharpness(half, tuple(v // 2 for v in OBAMA_BOX))  # type: ignore[arg-type]
    assert 0.5 < small / big < 2.0, (big, small)


def test_size_is_in_original_pixels_and_empty_crops_are_zero() -> None:
    pixels = obama()
    assert quality(pixels, OBAMA_BOX)["size_px"] == 409 - 142
    assert quality(pixels, OBAMA_BOX, scale=2.0)["size_px"] == 2 * (409 - 142)
    assert sharpness(pixels, (10, 10, 10, 10)) == 0.0
    assert sharpness(np.zeros((50, 50, 3), np.uint8), (0, 50, 50, 0)) == 0.0
