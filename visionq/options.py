"""Per-task job options: the API contract of each task, in one place.

The API validates a job's options with these models before accepting it (400 on anything
else; ``api/options.py``), ``/openapi.json`` publishes their JSON schemas, and every model
plugin declares the model of its task (``options = DetectOptions``) and parses a job's
options with it, so the defaults below are the ones a job runs with.  docs/api.md's option
table is tested against them (``tests/visionq/test_settings_docs.py``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from visionq.labels import COCO_LABELS

CocoLabel = Literal[COCO_LABELS]  # type: ignore[valid-type]
CocoLabels = Annotated[list[CocoLabel], Field(  # type: ignore[valid-type]
    min_length=1, max_length=len(COCO_LABELS), json_schema_extra={"uniqueItems": True})]
"""Some COCO labels, each at most once (checked by ``DetectOptions``)."""

DEFAULT_MIN_CONFIDENCE = 0.3
"""Where the detector balances recall and false positives on the coco8 fixtures
(the retired ``bench models-detect``: bench/results/HISTORY.md; docs/models.md)."""
DEFAULT_TOP_K = 5
DETECT_INPUT_SIDE_STEP, DETECT_INPUT_SIDE_HIGHEST = 32, 1024
"""``input_size`` of detect jobs: the detector's graph takes multiples of 32; 1024 costs 4x
the default 512."""
MIN_FACE_PX_LOWEST, MIN_FACE_PX_HIGHEST = 20, 10_000
"""Range of ``min_face_px``: below 20 px HOG would scan 13x the pixels of the default on a
2 MP photo; above 10,000 nothing is left to find."""
MAX_FACE_LIMIT = 1000
"""Largest ``limit`` (faces kept per photo): beyond it, ``0`` (all) says the same."""
MAX_PREDICTION_COUNT = 100
"""Most registered people listed per face (``prediction_count``)."""


class TaskOptions(BaseModel):
    """Base of the per-task option models: strict types (``"0.5"`` is not a number, ``1``
    is not ``true``) and no unknown keys."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


FaceDetector = Literal["yunet", "hog", "cnn"]
FACE_DETECTORS: tuple[str, ...] = ("yunet", "hog", "cnn")


class FaceOptions(TaskOptions):
    face_detector: FaceDetector | None = Field(
        None, description="Face detector: yunet (OpenCV Zoo's YuNet on ONNX Runtime: finds "
        "tilted and profile faces HOG misses, ~1/4 of HOG's CPU at the default scale; its "
        "pixels count 4x against VISIONQ_FACE_MAX_SCAN_PIXELS), hog (dlib's HOG) or cnn "
        "(dlib's CNN, ~50x HOG's CPU and ~85x its memory per pixel: counts 64x). Default: "
        "VISIONQ_FACE_DETECTOR.")
    model: Literal["hog", "cnn"] | None = Field(
        None, description="Older name of face_detector (hog or cnn only); if both are given "
        "they must agree.")
    min_face_px: int | None = Field(
        None, ge=MIN_FACE_PX_LOWEST, le=MIN_FACE_PX_HIGHEST,
        description="Smallest face to find (box height, original pixels): sets how many "
        "pixels the detector scans (cost ~ 1/min_face_px^2). Default: max(40, "
        "80 * sqrt(width * height / 1.6e6)) for HOG and YuNet; for CNN the same with the pixels "
        "VISIONQ_FACE_MAX_SCAN_PIXELS allows at 64x (564,062 by default) for 1.6e6: about "
        "the same cost at every photo size.")
    upsample: int | None = Field(None, ge=0, le=3, description="Times to upsample before "
                                 "detecting, on the photo at full size (finds smaller faces, "
                                 "~4x cost each); overrides min_face_px. Default: chosen "
                                 "from min_face_px.")
    landmarks: Literal["68", "5", "yunet", "none"] = Field(
        "68", description="Landmark model: dlib's 68 or 5 points (on any detector's boxes), "
        "or yunet: YuNet's own 5 points (right_eye, left_eye, nose_tip, mouth_right, "
        "mouth_left; no extra model run, face_detector yunet only).")

    @model_validator(mode="after")
    def _one_detector(self) -> FaceOptions:
        """``model`` (the older name) and ``face_detector`` agree; YuNet's landmarks need it."""
        if self.model is not None and self.face_detector not in (None, self.model):
            raise ValueError(f"model {self.model!r} and face_detector "
                             f"{self.face_detector!r} disagree (model is the older name)")
        explicit = self.face_detector or self.model
        if self.landmarks == "yunet" and explicit not in (None, "yunet"):
            raise ValueError(f"landmarks 'yunet' needs face_detector 'yunet', not {explicit!r}")
        return self

    def detector(self, default: str) -> str:
        """The face detector this job runs: ``face_detector``, else ``model``, else
        ``default`` (``VISIONQ_FACE_DETECTOR``)."""
        return self.face_detector or self.model or default
    encodings: bool = Field(False, description="Add each face's 128-d encoding.")
    limit: int = Field(0, ge=0, le=MAX_FACE_LIMIT, description="CompreFace's `limit`: keep "
                       "only the N largest faces (by box area), before landmarks, encodings "
                       "and recognition; 0 = all.")
    det_prob_threshold: float | None = Field(
        None, ge=0, le=1, description="CompreFace's `det_prob_threshold`: drop faces whose "
        "detection `confidence` is below it (default: keep every face found).")
    recognize: bool = Field(False, description="Match each face against the registered faces "
                            "(`/v1/vision/face/register`): adds `userid` (or \"unknown\"), "
                            "`distance` to the nearest registered person and `subjects`.")
    prediction_count: int = Field(
        1, ge=1, le=MAX_PREDICTION_COUNT, description="CompreFace's `prediction_count`: with "
        "`recognize`, the N most similar registered people per face in `subjects` "
        "(`subject`, `similarity`, `distance`), accepted or not.")


class DetectOptions(TaskOptions):
    min_confidence: float = Field(DEFAULT_MIN_CONFIDENCE, ge=0, le=1,
                                  description="Drop boxes scored below.")
    classes: CocoLabels | None = Field(
        None, description="Keep only these COCO labels, each once (default: all 80).")
    input_size: int | None = Field(
        None, ge=DETECT_INPUT_SIDE_STEP, le=DETECT_INPUT_SIDE_HIGHEST,
        multiple_of=DETECT_INPUT_SIDE_STEP,
        description="Detector input side in pixels (a multiple of 32, at most 1024; cost "
        "~ its square): the image's longer side is scaled to it. Default: the image's own "
        "longer side rounded up to 32, at least 320 and at most VISIONQ_DETECT_MAX_SIDE "
        "(512).")

    @field_validator("classes")
    @classmethod
    def _each_label_once(cls, classes: list[str] | None) -> list[str] | None:
        """Every job record, history row and export carries the list: no repeats."""
        repeated = sorted({label for label in classes or () if classes.count(label) > 1})
        if repeated:
            raise ValueError(f"duplicate labels: {', '.join(repeated)}")
        return classes


class ClassifyOptions(TaskOptions):
    top_k: int = Field(DEFAULT_TOP_K, ge=1, le=1000, description="How many labels to return.")


class CustomOptions(TaskOptions):
    """Options of a custom model's jobs (task ``custom/<name>``; ``visionq.custom_models``)."""

    min_confidence: float | None = Field(None, ge=0, le=1, description="Drop predictions "
                                         "scored below (detectors: never below the "
                                         "manifest's score_threshold).")
    top_k: int = Field(DEFAULT_TOP_K, ge=1, le=1000, description="Classifiers: how many "
                       "labels to return.")


TASK_OPTIONS: dict[str, type[TaskOptions]] = {
    "face": FaceOptions, "detect": DetectOptions, "classify": ClassifyOptions,
    "custom": CustomOptions}
"""Task (queue) -> its option model; a plugin's ``options`` is this model or a subclass.
``custom`` is every custom model's (job task ``custom/<name>``)."""
