"""Model registry keyed by name, filled from the ``visionq.models`` entry points.

A third-party package adds a model with one entry point line in its own pyproject::

    [project.entry-points."visionq.models"]
    my_detector = "my_package.detector:MyDetector"
"""

from __future__ import annotations

import importlib
import logging
from functools import cache
from importlib.metadata import EntryPoint, entry_points

from workers.model import Model, ModelLoadError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "visionq.models"


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


def create(name: str, **config: object) -> Model:
    """Instantiate (not load) the model registered under ``name``."""
    return model_class(name)(**config)


def _import_path(path: str) -> type[Model]:
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attribute)
    except (ImportError, AttributeError) as exc:
        raise ModelLoadError(f"cannot import model {path!r}: {exc}") from exc
