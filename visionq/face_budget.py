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
  operator's choice): not a caller's, so not checked.  For the CNN the default scale is
  made to fit this budget instead (``face_scale.default_scan_budget``).

``model: "cnn"`` counts each pixel the CNN scans as ``CNN_PIXEL_WEIGHT`` (64) HOG pixels,
``face_detector: "yunet"`` each YuNet pixel as ``YUNET_PIXEL_WEIGHT`` (4).  YuNet brings a
promised face to ``YUNET_FACE_PX`` (32) instead of 80 (``min_face_px`` m: pixels x
(32 / m)^2 x 4), and ``upsample`` n enlarges its input 2^n times per side, as dlib does.

HOG on this project's 2-core machine (one process, black photos: the table's attack) costs
~0.11 CPU-s and ~11 MB of peak RSS per million pixels scanned: 12 MP 1.4 s / 0.31 GB,
24 MP 2.7 s / 0.44 GB, 40 MP 3.9 s / 0.50 GB, 48 MP 5.6 s / 0.70 GB (process peak, ~0.17 GB
of it the loaded models), and 384 MP (6000x4000, ``upsample: 2``) 48 s / 4.3 GB.

dlib's CNN (MMOD) detector, same process, upsample 0 on a photo resized to each size:
~5.5 CPU-s per million pixels at every size, peak RSS 0.32 GB at 0.12 MP, 0.41 GB at
0.24 MP, 0.65 GB at 0.48 MP, 0.96 GB at 0.81 MP (~0.95 GB more per million): ~50x HOG's CPU
and ~85x its memory per pixel.  Weighted 64, the 40 MP budget admits 0.625 MP of CNN:
~3.5 CPU-s and ~0.8 GB.

YuNet (ONNX Runtime, one thread, same process, black photos): 0.055 CPU-s per million pixels
at 0.25-1 MP, 0.085 at 4 MP, 0.15 at 10 MP; peak RSS ~45-60 MB more per million (0.48 GB
at 10 MP): about HOG's CPU and ~4.5x its memory per pixel.  Weighted 4, the 40 MP budget
admits 10 MP of YuNet: ~1.5 CPU-s and ~0.5 GB, as HOG's 40 MP.
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


CNN_PIXEL_WEIGHT = 64
"""HOG pixels one CNN pixel counts as (memory, the binding cost, is ~85x; CPU ~50x): a
power of 4, so the CNN at full size counts like HOG with ``upsample: 3``."""
YUNET_PIXEL_WEIGHT = 4
"""HOG pixels one YuNet pixel counts as (memory ~4.5x, CPU ~1x): a power of 4, so YuNet at
full size counts like HOG with ``upsample: 1``."""
PIXEL_WEIGHTS = {"hog": 1, "cnn": CNN_PIXEL_WEIGHT, "yunet": YUNET_PIXEL_WEIGHT}

YUNET_FACE_PX = 32
"""Box height (px at detection scale) YuNet scans a promised face at: it finds faces from
~10 px (its finest head has stride 8); 32 keeps recall 1.0 at the promised size on
``python -m bench faces``."""
FACE_PX = {"hog": DETECTION_FACE_PX, "cnn": DETECTION_FACE_PX, "yunet": YUNET_FACE_PX}


def pixel_weight(model: str) -> int:
    """HOG-equivalent pixels per pixel the ``model`` detector scans."""
    return PIXEL_WEIGHTS[model]


def detection_face_px(model: str) -> int:
    """Box height (px at detection scale) the ``model`` detector scans a promised face at."""
    return FACE_PX[model]


class FaceCostTooHighError(ImageError):
    """The options would make the detector scan more pixels than the budget allows (an
    ``ImageError``: the API answers its status and code, the worker fails the job with it)."""

    code = "face_cost_too_high"
    status = 400


def scan_pixels(pixels: int, upsample: int | None, min_face_px: int | None,
                decoded_pixels: int | None = None, model: str = "hog") -> int | None:
    """HOG-equivalent pixels the ``model`` detector scans on a photo of ``pixels`` pixels
    (``decoded_pixels`` of them decoded, default all) with these options, or ``None`` when
    neither is set (the plugin's default scale)."""
    if upsample is not None:
        scanned = (pixels if decoded_pixels is None else decoded_pixels) * 4 ** upsample
    elif min_face_px is not None:
        scanned = math.ceil(pixels * (detection_face_px(model) / min_face_px) ** 2)
    else:
        return None
    return scanned * pixel_weight(model)


def check_face_cost(pixels: int, upsample: int | None, min_face_px: int | None,
                    limit: int, decoded_pixels: int | None = None, model: str = "hog") -> None:
    """Raise ``FaceCostTooHighError`` naming the value and the limit when the options
    would scan more than ``limit`` HOG-equivalent pixels (``VISIONQ_FACE_MAX_SCAN_PIXELS``)."""
    scanned = scan_pixels(pixels, upsample, min_face_px, decoded_pixels, model)
    if scanned is None or scanned <= limit:
        return
    chosen = f"upsample {upsample}" if upsample is not None else f"min_face_px {min_face_px}"
    counted = pixels if decoded_pixels is None or upsample is None else decoded_pixels
    weight = pixel_weight(model)
    if weight == 1:
        would = f"would scan {scanned:,} pixels"
    else:
        would = (f"would scan {scanned // weight:,} pixels with the {model} detector, which "
                 f"count {weight}x: {scanned:,}")
    raise FaceCostTooHighError(
        f"face options too costly: face_detector {model}, {chosen} on {counted:,} pixels {would} "
        f"> limit of {limit:,} (VISIONQ_FACE_MAX_SCAN_PIXELS); use a smaller upsample, a "
        "larger min_face_px, a smaller photo, or neither option (the default scale, "
        "which fits the limit)")
