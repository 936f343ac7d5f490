"""How usable a face is for recognition: its size and its sharpness, numpy only.

- ``size_px``: the face box's height in original-image pixels (as ``min_face_px``).
- ``sharpness``: variance of the 4-neighbour Laplacian of the face crop in grey, resized
  to ``SHARPNESS_SIDE`` x ``SHARPNESS_SIDE`` first, so that the figure does not grow with
  the face's size: a face seen with few pixels (small, or blurred by motion or focus) is
  smooth once brought to that size and scores low.  Sharp photo faces score in the
  hundreds; heavily blurred or upscaled ones below ~30 (``python -m bench face-openset``).

Every face result carries ``quality: {"size_px": ..., "sharpness": ...}`` so that clients
can apply their own policy; the recognizer's own gate (``VISIONQ_FACE_MIN_QUALITY_PX``,
``VISIONQ_FACE_MIN_SHARPNESS``) uses the same figures.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

SHARPNESS_SIDE = 64
"""Side of the square the crop is resized to before the Laplacian."""


def sharpness(pixels: np.ndarray, box_trbl: tuple[int, int, int, int]) -> float:
    """Variance of the Laplacian of ``pixels[top:bottom, left:right]`` (RGB or grey uint8)
    in grey at ``SHARPNESS_SIDE`` px; 0.0 for an empty crop."""
    top, right, bottom, left = box_trbl
    height, width = pixels.shape[:2]
    top, bottom = max(0, top), min(height, bottom)
    left, right = max(0, left), min(width, right)
    if bottom - top < 2 or right - left < 2:
        return 0.0
    crop = Image.fromarray(np.ascontiguousarray(pixels[top:bottom, left:right]))
    grey = crop.convert("L").resize((SHARPNESS_SIDE, SHARPNESS_SIDE),
                                    Image.Resampling.BILINEAR)
    g = np.asarray(grey, dtype=np.float64)
    laplacian = (g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:]
                 - 4.0 * g[1:-1, 1:-1])
    return float(laplacian.var())


def quality(pixels: np.ndarray, box_trbl: tuple[int, int, int, int],
            scale: float = 1.0) -> dict[str, float | int]:
    """``{"size_px": box height in original pixels, "sharpness": ...}`` for a box in
    ``pixels``' coordinates (``scale``: original pixels per decoded pixel)."""
    top, _, bottom, _ = box_trbl
    return {"size_px": int(round((bottom - top) * scale)),
            "sharpness": round(sharpness(pixels, box_trbl), 1)}
