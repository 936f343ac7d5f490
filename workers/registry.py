"""Model registry keyed by name, filled from the ``visionq.models`` entry points.

A third-party package adds a model with one entry point line in its own pyproject::

    [project.entry-points."visionq.models"]
    my_detector = "my_package.detector:MyDetector"

``create(name, settings)`` instantiates it with the service's settings and checks that it
keeps the contract (``workers.model.Model``), so a plugin missing a part fails at worker
start with its name, not at the first job.

``custom/<name>`` names a detector from the custom models folder
(``workers.custom.detector``): ``VISIONQ_MODEL_DETECT=custom/<name>``.
"""

from __future__ import annotations

import importlib
import logging
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from visionq.custom_models import is_custom_task
from visionq.options import TASK_OPTIONS
from visionq.settings import Settings, get_settings
from workers.custom.detector import CustomDetector  # its runtimes load on demand
from workers.model import Model, ModelLoadError

log = logging.getLogger(f"visionq.{__name__}")

ENTRY_POINT_GROUP = "visionq.models"
PROTOCOL = ("name", "task", "version", "extra", "input_size", "fork_safe", "options",
            "settings_class", "config", "load", "max_side_for", "predict")
"""The members of ``workers.model.Model``, checked on every model ``create`` returns."""


@cache
def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available() -> list[str]:
    """Names of every registered model, installed extras or not."""
    return sorted(_entry_points())


def model_class(name: str) -> type[Model]:
    """The class registered under ``name`` (or given as ``package.module:Class``, handy for
    a model that is not packaged yet); a clear error for unknown names or missing extras."""
    points = _entry_points()
    if name not in points and ":" in name:
        return _import_path(name)
    if name not in points:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(available())}")
    try:
        return points[name].load()
    except ImportError as exc:
        raise ModelLoadError(
            f"model {name!r} cannot be imported ({exc}); install its extra, "
            f"e.g. pip install 'visionq[<extra>]'"
        ) from exc


def create(name: str, settings: Settings | None = None, **overrides: Any) -> Model:
    """Instantiate (not load) the model registered under ``name`` with the service's
    ``settings`` (default: the environment's) and plugin-settings ``overrides``."""
    if is_custom_task(name):
        model: Model = CustomDetector(settings if settings is not None else get_settings(),
                                      task=name)
        check(model, name)
        return model
    cls = model_class(name)
    model = cls(settings if settings is not None else get_settings(), **overrides)
    check(model, name)
    return model


def check(model: object, name: str) -> None:
    """Raise ``ModelLoadError`` naming what ``model`` lacks of the contract."""
    missing = [member for member in PROTOCOL if not hasattr(model, member)]
    if missing:
        raise ModelLoadError(
            f"model {name!r} does not implement the model protocol (workers/model.py): "
            f"missing {', '.join(missing)}; subclassing workers.model.ModelBase provides "
            "the defaults")
    task = model.task  # type: ignore[attr-defined]
    if task not in TASK_OPTIONS:
        raise ModelLoadError(f"model {name!r} serves unknown task {task!r}; "
                             f"tasks: {', '.join(TASK_OPTIONS)}")
    options = model.options  # type: ignore[attr-defined]
    if not (isinstance(options, type) and issubclass(options, TASK_OPTIONS[task])):
        raise ModelLoadError(
            f"model {name!r}: options must be visionq.options."
            f"{TASK_OPTIONS[task].__name__} (or a subclass), the {task} jobs' contract; "
            f"got {options!r}")


def _import_path(path: str) -> type[Model]:
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attribute)
    except (ImportError, AttributeError) as exc:
        raise ModelLoadError(f"cannot import model {path!r}: {exc}") from exc
