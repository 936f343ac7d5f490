"""Per-task job options, validated by the API before a job is accepted (400 on anything
else), and the source of the option schemas in ``/openapi.json``.

The models themselves live in the core (``visionq.options``): the model plugins declare and
parse with the same ones, so the API, the OpenAPI document, the README and the workers
agree on every option and default.  Workers validate again (a job can be created by other
clients of the queue), but a bad option must be a 400 at submit time, not a failed job a
minute later.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from api.errors import ApiError
from visionq.options import TASK_OPTIONS, TaskOptions

OPTION_MODELS: dict[str, type[TaskOptions]] = TASK_OPTIONS


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
