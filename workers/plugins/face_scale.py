"""The face detector's decode-scale policy: how many pixels HOG looks at, from the photo's
size and the smallest face the caller asks for (``min_face_px``, original pixels).

dlib's HOG detector scans an 80x80 window: it finds faces whose box is >= ~64 px at the
scale it runs at and misses them below ~56 px.  ``DETECTION_FACE_PX`` (80) is the size a
promised face is brought to, with margin (72 px lost 2 of 24 faces at exactly the promised
size on the 2 MP bench photos).  A photo of ``N`` pixels searched for faces of ``m`` px is
therefore looked at with ``N * (80 / m)**2`` pixels, and HOG's cost is proportional to that
(~0.085 CPU-s per million on this machine's cores).

The default ``min_face_px`` spends a fixed budget (``pixel_budget``, 1.6 MP) on every
photo: ``m = 80 * sqrt(N / budget)``, never below ``FLOOR_MIN_FACE_PX`` (40 px, which is
``face_recognition``'s own default: full size, one upsample).  So every photo costs about
the same, small photos (<= budget / 4, ~0.4 MP) get exactly ``face_recognition``'s
detection, and bigger ones promise faces proportionally larger (about 6.3% of
sqrt(width x height)).

The scale is reached in three steps, cheapest first: the JPEG's DCT scaling at decode
(1/2, 1/4, 1/8: ``decode_divisor``), then a resize of the decoded pixels to the exact
scale, and dlib's own upsampling (x2 each) when the decoded pixels are too few.

The CNN detector (``model: "cnn"``) costs ``CNN_PIXEL_WEIGHT`` (64) times HOG per pixel, so
its default spends ``default_scan_budget``: what fits ``VISIONQ_FACE_MAX_SCAN_PIXELS`` at
that weight (625,000 pixels of 40 MP, less the plan's rounding), if below ``pixel_budget``:
a 12 MP photo promises faces of ~370 px instead of 220.

YuNet (``face_detector: "yunet"``) keeps HOG's default ``min_face_px`` (the same promise)
but brings such a face to ``YUNET_FACE_PX`` (32) px, so it looks at (32 / 80)^2 = 16 % of
HOG's pixels; an ``upsample`` it cannot do itself is a resize (enlarging) of its input.

What a caller's ``upsample`` or ``min_face_px`` may cost is bounded by
``VISIONQ_FACE_MAX_SCAN_PIXELS`` (``visionq/face_budget.py``, checked at submit and here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from visionq.face_budget import (  # the scale and weights the face budget counts with
    DETECTION_FACE_PX,
    pixel_weight,
)

FLOOR_MIN_FACE_PX = DETECTION_FACE_PX // 2
"""Smallest default ``min_face_px``: full size with one upsample, face_recognition's default."""
DEFAULT_PIXEL_BUDGET = 1_600_000
"""Pixels HOG scans per photo by default: ~0.14 CPU-s of HOG, leaving room for decode and
landmarks within 0.25 CPU-s per image (docs/models.md, "Face detection cost")."""
MAX_UPSAMPLE = 3
RESIZE_TOLERANCE = 0.05
"""Scale factors within 5% of 1 keep the pixels as they are (no resize)."""
DCT_DIVISORS = (8, 4, 2, 1)


def default_scan_budget(model: str, pixel_budget: int, max_scan_pixels: int) -> int:
    """Pixels the ``model`` detector scans by default: ``pixel_budget``, or fewer so that
    they count at most ``max_scan_pixels`` at the model's weight, even after ``plan`` keeps
    pixels within ``RESIZE_TOLERANCE`` of the exact scale (up to 1 / 0.95^2 more)."""
    weight = pixel_weight(model)
    if weight == 1 or model == "yunet":  # YuNet: HOG's promise, 16 % of its pixels
        return pixel_budget
    fitting = math.floor(max_scan_pixels / weight * (1 - RESIZE_TOLERANCE) ** 2)
    return min(pixel_budget, fitting)


def default_min_face_px(pixels: int, budget: int = DEFAULT_PIXEL_BUDGET) -> int:
    """The smallest face (px, original image) found at the default cost."""
    return max(FLOOR_MIN_FACE_PX, math.ceil(DETECTION_FACE_PX * math.sqrt(pixels / budget)))


def detection_scale(min_face_px: int, face_px: int = DETECTION_FACE_PX) -> float:
    """Original pixels per detection pixel that brings a ``min_face_px`` face to
    ``face_px`` (80 px: HOG's and the CNN's; ``face_budget.detection_face_px``)."""
    return min_face_px / face_px


def decode_divisor(min_face_px: int, face_px: int = DETECTION_FACE_PX) -> int:
    """The largest JPEG DCT divisor (1, 2, 4, 8) that keeps at least the detection scale's
    pixels: everything smaller comes from a cheap resize of the decoded image."""
    scale = detection_scale(min_face_px, face_px)
    return next(d for d in DCT_DIVISORS if d <= scale or d == 1)


@dataclass(frozen=True)
class DetectionPlan:
    """How to detect in an image decoded ``decoded_scale`` times smaller than the original:
    resize it by ``resize`` (<= 1: never enlarges; 1: keep as is), then let dlib upsample
    ``upsample`` times."""

    resize: float
    upsample: int

    @property
    def pixel_factor(self) -> float:
        """Pixels scanned per decoded pixel."""
        return (self.resize * 2 ** self.upsample) ** 2


def plan(decoded_scale: float, min_face_px: int,
         face_px: int = DETECTION_FACE_PX) -> DetectionPlan:
    """Resize and upsample that bring the decoded image to the detection scale of
    ``min_face_px`` at ``face_px`` (upsample capped at ``MAX_UPSAMPLE``)."""
    wanted = decoded_scale / detection_scale(min_face_px, face_px)  # detection px per decoded
    upsample = 0 if wanted <= 1 + RESIZE_TOLERANCE else min(
        MAX_UPSAMPLE, math.ceil(math.log2(wanted / (1 + RESIZE_TOLERANCE))))
    resize = wanted / 2 ** upsample
    if abs(resize - 1) <= RESIZE_TOLERANCE or resize > 1:
        resize = 1.0
    return DetectionPlan(resize=resize, upsample=upsample)
