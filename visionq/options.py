"""Per-task job options: the API contract of each task, in one place.

The API validates a job's options with these models before accepting it (400 on anything
else; ``api/options.py``), ``/openapi.json`` publishes their JSON schemas, and every model
plugin declares the model of its task (``options = DetectOptions``) and parses a job's
options with it, so the defaults below are the ones a job runs with.  The README's option
table is tested against them (``tests/visionq/test_settings_docs.py``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from visionq.labels import COCO_LABELS

CocoLabel = Literal[COCO_LABELS]  # type: ignore[valid-type]

DEFAULT_MIN_CONFIDENCE = 0.3
"""Where the detector balances recall and false positives on the coco8 fixtures
(``bench/models_detect.py``; README "Models")."""
DEFAULT_TOP_K = 5


class TaskOptions(BaseModel):
    """Base of the per-task option models: strict types (``"0.5"`` is not a number, ``1``
    is not ``true``) and no unknown keys."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class FaceOptions(TaskOptions):
    model: Literal["hog", "cnn"] = Field("hog", description="dlib detector: HOG (fast, CPU) "
                                         "or CNN (more accurate, ~50x slower on CPU).")
    upsample: int = Field(1, ge=0, le=3, description="Times to upsample before detecting "
                          "(finds smaller faces, ~4x cost each).")
    landmarks: Literal["68", "5", "none"] = Field("68", description="Landmark model.")
    encodings: bool = Field(False, description="Add each face's 128-d encoding.")


class DetectOptions(TaskOptions):
    min_confidence: float = Field(DEFAULT_MIN_CONFIDENCE, ge=0, le=1,
                                  description="Drop boxes scored below.")
    classes: list[CocoLabel] | None = Field(  # type: ignore[valid-type]
        None, min_length=1, description="Keep only these COCO labels (default: all 80).")


class ClassifyOptions(TaskOptions):
    top_k: int = Field(DEFAULT_TOP_K, ge=1, le=1000, description="How many labels to return.")


TASK_OPTIONS: dict[str, type[TaskOptions]] = {
    "face": FaceOptions, "detect": DetectOptions, "classify": ClassifyOptions}
"""Task (queue) -> its option model; a plugin's ``options`` is this model or a subclass."""
