"""Per-task job options, validated by the API before a job is accepted (400 on anything
else), and the source of the option schemas in ``/openapi.json``.

Workers validate again (a job can be created by other clients of the queue), but a bad
option must be a 400 at submit time, not a failed job a minute later.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.errors import ApiError
from visionq.labels import COCO_LABELS

CocoLabel = Literal[COCO_LABELS]  # type: ignore[valid-type]


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class FaceOptions(_Options):
    model: Literal["hog", "cnn"] = Field("hog", description="dlib detector: HOG (fast, CPU) "
                                         "or CNN (more accurate, ~50x slower on CPU).")
    upsample: int = Field(1, ge=0, le=3, description="Times to upsample before detecting "
                          "(finds smaller faces, ~4x cost each).")
    landmarks: Literal["68", "5", "none"] = Field("68", description="Landmark model.")
    encodings: bool = Field(False, description="Add each face's 128-d encoding.")


class DetectOptions(_Options):
    min_confidence: float = Field(0.4, ge=0, le=1, description="Drop boxes scored below.")
    classes: list[CocoLabel] | None = Field(  # type: ignore[valid-type]
        None, min_length=1, description="Keep only these COCO labels.")


class ClassifyOptions(_Options):
    top_k: int = Field(5, ge=1, le=1000, description="How many labels to return.")


OPTION_MODELS: dict[str, type[_Options]] = {
    "face": FaceOptions, "detect": DetectOptions, "classify": ClassifyOptions}


def validate_options(task: str, raw: dict[str, Any]) -> dict[str, Any]:
    """The options as given (only the keys the caller set), or a 400 naming the problem."""
    model = OPTION_MODELS[task]
    try:
        parsed = model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'options'}: {error['msg']}"
            for error in exc.errors(include_url=False))
        raise ApiError(400, "invalid_options", f"invalid {task} options: {problems}") from exc
    return parsed.model_dump(mode="json", exclude_unset=True)
