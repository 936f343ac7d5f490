"""Faces with ``face_recognition`` (dlib): boxes, 68-point landmarks, 128-d encodings.

Weights ship in the PyPI package ``face_recognition_models`` 0.3.0 (dlib's HOG frontal
face detector is built into dlib; the CNN detector, 68/5-point shape predictors and the
ResNet encoder are files in that package).  Boxes are exactly ``face_recognition``'s for
the same pixels.  Large JPEGs (longest side above ``fast_above``) are decoded at reduced
size (1/2, 1/4, 1/8) down to about ``fast_side`` and detected with one upsample; boxes
are mapped back to original-image pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from visionq.imaging import DecodedImage, ImageInfo
from visionq.options import FaceOptions
from visionq.settings import Settings
from workers.model import ModelBase, ModelLoadError, PluginSettings

KEY = "face_recognition"
DEFAULT_FAST_ABOVE = 2560
"""Photos whose longest side exceeds this (4K, 12 MP phone shots) take the fast path."""
DEFAULT_FAST_SIDE = 960
"""Reduced decode size for the fast path: with one upsample HOG sees 1920 px, which finds
faces of >= ~160 px in a 4K photo at ~1/20 of the full-resolution cost."""


class FaceSettings(PluginSettings):
    model_config = SettingsConfigDict(env_prefix="VISIONQ_FACE_")

    fast_above: int = Field(DEFAULT_FAST_ABOVE, ge=0, description="Photos larger than this "
                            "(longest side, px) take the reduced-size decode path; 0: never.")
    fast_side: int = Field(DEFAULT_FAST_SIDE, ge=1,
                           description="Target longest side for that path.")


class FaceRecognitionModel(ModelBase):
    name = KEY
    task = "face"
    extra = "face"
    options = FaceOptions
    settings_class = FaceSettings
    config: FaceSettings

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        super().__init__(settings, **overrides)
        self.version = "unloaded"
        self._fr: Any = None

    def load(self) -> None:
        try:
            import face_recognition
            import face_recognition_models
        except ImportError as exc:
            raise ModelLoadError(
                f"face_recognition is not installed ({exc}); pip install 'visionq[face]'"
            ) from exc
        self._fr = face_recognition
        models_version = getattr(face_recognition_models, "__version__", "0.3.0")
        self.version = f"face_recognition {face_recognition.__version__}/models {models_version}"

    def max_side_for(self, info: ImageInfo) -> int | None:
        fast_above = self.config.fast_above
        if fast_above and max(info.width, info.height) > fast_above:
            return self.config.fast_side
        return None

    def predict(self, images: list[DecodedImage], options: dict[str, Any]) -> list[dict[str, Any]]:
        opts: FaceOptions = self.parse_options(options)
        if self._fr is None:
            self.load()
        return [self._one(image, opts) for image in images]

    def _one(self, image: DecodedImage, opts: FaceOptions) -> dict[str, Any]:
        fr = self._fr
        pixels = image.pixels
        locations = fr.face_locations(pixels, number_of_times_to_upsample=opts.upsample,
                                      model=opts.model)
        scale = image.scale
        landmarks: list[dict[str, list[tuple[int, int]]]] = []
        if opts.landmarks != "none" and locations:
            model = "large" if opts.landmarks == "68" else "small"
            landmarks = fr.face_landmarks(pixels, locations, model=model)
        encodings: list[np.ndarray] = []
        if opts.encodings and locations:
            encodings = fr.face_encodings(pixels, known_face_locations=locations)
        faces = []
        for index, (top, right, bottom, left) in enumerate(locations):
            face: dict[str, Any] = {
                "x_min": _scaled(left, scale, image.width),
                "y_min": _scaled(top, scale, image.height),
                "x_max": _scaled(right, scale, image.width),
                "y_max": _scaled(bottom, scale, image.height),
            }
            if landmarks:
                face["landmarks"] = {part: [[_scaled(x, scale, image.width),
                                             _scaled(y, scale, image.height)] for x, y in points]
                                     for part, points in landmarks[index].items()}
            if encodings:
                face["encoding"] = [round(float(v), 6) for v in encodings[index]]
            faces.append(face)
        return {"model": self.name, "model_version": self.version, "width": image.width,
                "height": image.height, "faces": faces}


def _scaled(value: int, scale: float, limit: int) -> int:
    return int(min(max(round(value * scale), 0), limit))
