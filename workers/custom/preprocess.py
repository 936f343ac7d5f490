"""Fit an image to a custom model's input (stretch or letterbox), normalise it, and map the
model's boxes back to original-image pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from visionq.custom_models import Manifest
from visionq.imaging import DecodedImage

LETTERBOX_FILL = 114
"""Grey padding, as the YOLO exporters train with."""


@dataclass(frozen=True)
class Placement:
    """Where the image sits in the model input: input pixel = image pixel x scale + offset
    (per axis), in pixels of the original image."""

    scale_x: float
    scale_y: float
    offset_x: float
    offset_y: float

    def to_image(self, box: tuple[float, float, float, float], width: int,
                 height: int) -> tuple[float, float, float, float]:
        x1, y1, x2, y2 = box
        def fx(v: float) -> float:
            return min(max((v - self.offset_x) / self.scale_x, 0.0), float(width))
        def fy(v: float) -> float:
            return min(max((v - self.offset_y) / self.scale_y, 0.0), float(height))
        return fx(x1), fy(y1), fx(x2), fy(y2)


def fit(image: DecodedImage, manifest: Manifest) -> tuple[np.ndarray, Placement]:
    """``(H x W x 3 uint8 canvas of the input size, placement in original pixels)``."""
    width, height = manifest.size
    pixels = Image.fromarray(image.pixels)
    if manifest.fit == "stretch":
        canvas = np.asarray(pixels.resize((width, height), Image.BILINEAR))
        return canvas, Placement(width / image.width, height / image.height, 0.0, 0.0)
    ratio = min(width / pixels.width, height / pixels.height)
    new_w, new_h = max(1, round(pixels.width * ratio)), max(1, round(pixels.height * ratio))
    canvas = np.full((height, width, 3), LETTERBOX_FILL, dtype=np.uint8)
    left, top = (width - new_w) // 2, (height - new_h) // 2
    canvas[top:top + new_h, left:left + new_w] = np.asarray(
        pixels.resize((new_w, new_h), Image.BILINEAR))
    return canvas, Placement(new_w / image.width, new_h / image.height, float(left), float(top))


def to_tensor(canvas: np.ndarray, manifest: Manifest, dtype: np.dtype,
              channels_first: bool) -> np.ndarray:
    """A batch of one in the model's dtype and layout; float inputs are normalised with the
    manifest's mean/std, integer inputs (quantised models) get the raw pixels; ``channels:
    bgr`` reverses the channel order first (mean/std are given in the model's order)."""
    if manifest.channels == "bgr":
        canvas = canvas[..., ::-1]
    if np.issubdtype(dtype, np.floating):
        data = (canvas.astype(np.float32) - np.array(manifest.mean, np.float32)) / np.array(
            manifest.std, np.float32)
        data = data.astype(dtype)
    else:
        data = canvas.astype(dtype)
    if channels_first:
        data = data.transpose(2, 0, 1)
    return data[np.newaxis]
