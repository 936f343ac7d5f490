"""Per-process model cache: each model is loaded once per worker process and warmed up.

Who loads when (the worker's main process at start-up, each prefork child for models that
are not fork-safe) is ``workers.hooks.ModelLoading``; a job whose model is not loaded yet
loads it here on first use (``model_for``).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from visionq.custom_models import is_custom_task, model_name
from visionq.imaging import DecodedImage
from visionq.settings import QUEUES, get_settings
from workers import registry
from workers.custom import cache as custom_cache
from workers.model import LoadListener, Model

log = logging.getLogger(f"visionq.{__name__}")

_models: dict[str, Model] = {}
WARMUP_SIZE = 64


def load_model(task: str, on_loaded: LoadListener | None = None) -> Model:
    """Create, load and warm up the configured model for ``task`` (raises on failure);
    ``on_loaded`` hears how long it took."""
    name = get_settings().model_for(task)
    started = time.perf_counter()
    model = registry.create(name, get_settings())
    if model.task != task:
        raise ValueError(f"model {name!r} serves {model.task!r}, not the {task!r} queue")
    model.load()
    blank = DecodedImage.from_array(np.zeros((WARMUP_SIZE, WARMUP_SIZE, 3), dtype=np.uint8))
    model.predict([blank], {})
    seconds = time.perf_counter() - started
    log.info("model %s (%s) loaded for queue %s in %.2f s", name, model.version, task, seconds)
    _models[task] = model
    if on_loaded is not None:
        on_loaded(task, name, seconds)
    return model


def model_for(task: str, on_loaded: LoadListener | None = None) -> Model:
    """The loaded model for ``task``, loading it first if this process has none; a custom
    model's task (``custom/<name>``) is served from ``workers.custom.cache``."""
    if is_custom_task(task):
        return custom_cache.model_for(model_name(task), on_loaded)
    if task not in QUEUES:
        raise ValueError(f"unknown task {task!r}")
    return _models.get(task) or load_model(task, on_loaded)


def loaded() -> dict[str, Model]:
    return dict(_models)


def forget(task: str) -> None:
    _models.pop(task, None)
