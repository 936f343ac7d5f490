"""Per-process model cache: each model is loaded once per worker process and warmed up."""

from __future__ import annotations

import logging
import time

import numpy as np

from visionq.imaging import DecodedImage
from visionq.settings import QUEUES, get_settings
from workers import registry
from workers.model import Model

log = logging.getLogger(__name__)

_models: dict[str, Model] = {}
WARMUP_SIZE = 64


def load_model(task: str) -> Model:
    """Create, load and warm up the configured model for ``task`` (raises on failure)."""
    name = get_settings().model_for(task)
    started = time.perf_counter()
    model = registry.create(name)
    if model.task != task:
        raise ValueError(f"model {name!r} serves {model.task!r}, not the {task!r} queue")
    model.load()
    blank = DecodedImage.from_array(np.zeros((WARMUP_SIZE, WARMUP_SIZE, 3), dtype=np.uint8))
    model.predict([blank], {})
    log.info("model %s (%s) loaded for queue %s in %.2f s",
             name, model.version, task, time.perf_counter() - started)
    _models[task] = model
    return model


def model_for(task: str) -> Model:
    if task not in QUEUES:
        raise ValueError(f"unknown task {task!r}")
    return _models.get(task) or load_model(task)


def loaded() -> dict[str, Model]:
    return dict(_models)


def forget(task: str) -> None:
    _models.pop(task, None)
