"""Per-task job options, validated by the API before a job is accepted (400 on anything
else), and the source of the option schemas in ``/openapi.json``.

The models themselves live in the core (``visionq.options``): the model plugins declare and
parse with the same ones, so the API, the OpenAPI document, docs/api.md and the workers
agree on every option and default.  Workers validate again (a job can be created by other
clients of the queue), but a bad option must be a 400 at submit time, not a failed job a
minute later.  Options are small: at most ``MAX_OPTIONS_BYTES`` of JSON (checked on the
raw text before parsing when they come as a string), since every job record, history row
and export carries them.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from api.errors import ApiError
from visionq.options import TASK_OPTIONS, TaskOptions

OPTION_MODELS: dict[str, type[TaskOptions]] = TASK_OPTIONS

MAX_OPTIONS_BYTES = 4096
"""Largest options JSON accepted (4 KiB): the longest valid options, every COCO label once in
``classes``, are ~1 KB."""


def check_options_size(size: int) -> None:
    """A 400 ``options_too_large`` naming the limit when ``size`` bytes of options JSON are
    more than ``MAX_OPTIONS_BYTES``."""
    if size > MAX_OPTIONS_BYTES:
        raise ApiError(400, "options_too_large", f"options are {size:,} bytes of JSON > limit "
                       f"of {MAX_OPTIONS_BYTES:,} bytes")


def check_options_text(text: str) -> None:
    """The size check on options given as a string, before it is parsed."""
    check_options_size(len(text.encode("utf-8", "surrogatepass")))


def validate_options(task: str, raw: dict[str, Any]) -> dict[str, Any]:
    """The options as given (only the keys the caller set), or a 400 naming the problem."""
    try:
        size = len(json.dumps(raw, separators=(",", ":"), ensure_ascii=False)
                   .encode("utf-8", "surrogatepass"))
    except (RecursionError, TypeError, ValueError) as exc:
        raise ApiError(400, "invalid_options", f"invalid {task} options: not JSON-serialisable "
                       "or nested too deeply") from exc
    check_options_size(size)
    model = OPTION_MODELS[task]
    try:
        parsed = model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'options'}: {error['msg']}"
            for error in exc.errors(include_url=False))
        raise ApiError(400, "invalid_options", f"invalid {task} options: {problems}") from exc
    return parsed.model_dump(mode="json", exclude_unset=True)
