"""The face detector's cost budget: how many pixels a face job's options make it scan.

Checked twice with the same function: by the API at submit, from the probed (upright) size,
where a refusal is a cheap 400 and nothing is queued; and by the face plugin before it
detects (a job queued by an older API or by another client of the queue), where it fails
the job with the same code without running the detector.

Pixels scanned (``workers/plugins/face_scale.py`` is the policy):

- ``upsample`` n: the decoded pixels x 4^n (dlib doubles each side n times).  The API
  counts the photo's pixels (the decode never enlarges; the worker may have decoded a JPEG
  at reduced size, so it counts fewer and never refuses what the API accepted).
- ``min_face_px`` m: pixels x (80 / m)^2 (a face of m px is brought to 80 px, whatever
  the decode; the plan's 5 % rounding of the scale can add up to 10 %).
- neither: the plugin's default scale, ~``VISIONQ_FACE_PIXEL_BUDGET`` at most (the
  operator's choice): not a caller's, so not checked.

HOG on this project's 2-core machine (one process, black photos: the table's attack) costs
~0.11 CPU-s and ~11 MB of peak RSS per million pixels scanned: 12 MP 1.4 s / 0.31 GB,
24 MP 2.7 s / 0.44 GB, 40 MP 3.9 s / 0.50 GB, 48 MP 5.6 s / 0.70 GB (process peak, ~0.17 GB
of it the loaded models), and 384 MP (6000x4000, ``upsample: 2``) 48 s / 4.3 GB.
"""

from __future__ import annotations

import math

from visionq.imaging import ImageError

DETECTION_FACE_PX = 80
"""Box height (px at detection scale) a promised face is scanned at: HOG finds frontal faces
from ~64 px and misses them below ~56; 80 keeps recall >= 0.97 at the promised size on
``python -m bench faces``."""

DEFAULT_FACE_MAX_SCAN_PIXELS = 40_000_000
"""40 MP scanned: ~4 CPU-s and ~0.5 GB peak RSS of HOG (measured above), so a face job
stays within a few CPU-seconds and ~1 GB with decoding; it admits any photo up to 40 MP
at full size (``upsample: 0``), a 10 MP one with ``upsample: 1``, a 2.5 MP one with 2."""


class FaceCostTooHighError(ImageError):
    """The options would make the detector scan more pixels than the budget allows (an
    ``ImageError``: the API answers its status and code, the worker fails the job with it)."""

    code = "face_cost_too_high"
    status = 400


def scan_pixels(pixels: int, upsample: int | None, min_face_px: int | None,
                decoded_pixels: int | None = None) -> int | None:
    """Pixels the detector scans on a photo of ``pixels`` pixels (``decoded_pixels`` of
    them decoded, default all) with these options, or ``None`` when neither is set (the
    plugin's default scale)."""
    if upsample is not None:
        return (pixels if decoded_pixels is None else decoded_pixels) * 4 ** upsample
    if min_face_px is not None:
        return math.ceil(pixels * (DETECTION_FACE_PX / min_face_px) ** 2)
    return None


def check_face_cost(pixels: int, upsample: int | None, min_face_px: int | None,
                    limit: int, decoded_pixels: int | None = None) -> None:
    """Raise ``FaceCostTooHighError`` naming the value and the limit when the options
    would scan more than ``limit`` pixels (``VISIONQ_FACE_MAX_SCAN_PIXELS``)."""
    scanned = scan_pixels(pixels, upsample, min_face_px, decoded_pixels)
    if scanned is None or scanned <= limit:
        return
    chosen = f"upsample {upsample}" if upsample is not None else f"min_face_px {min_face_px}"
    counted = pixels if decoded_pixels is None or upsample is None else decoded_pixels
    raise FaceCostTooHighError(
        f"face options too costly: {chosen} on {counted:,} pixels would scan {scanned:,} "
        f"pixels > limit of {limit:,} (VISIONQ_FACE_MAX_SCAN_PIXELS); use a smaller "
        "upsample, a larger min_face_px, a smaller photo, or the default scale")
