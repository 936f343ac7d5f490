"""The custom models loaded in this worker process: found by name in the folder on each
job, loaded on first use, the least recently used dropped past
``VISIONQ_CUSTOM_MODELS_LOADED``; a model whose files changed (``addmodel`` replaced it) is
loaded again."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict

from visionq.custom_models import CUSTOM_QUEUE, custom_root, find
from visionq.settings import get_settings
from workers.custom.model import CustomModelPlugin
from workers.model import LoadListener

log = logging.getLogger(f"visionq.{__name__}")

_loaded: OrderedDict[str, tuple[tuple[float, float], CustomModelPlugin]] = OrderedDict()
_lock = threading.Lock()


def model_for(name: str, on_loaded: LoadListener | None = None) -> CustomModelPlugin:
    """The loaded model ``name``; ``ManifestError``/``ModelLoadError`` (the job fails with
    that reason) when the folder has no such model or it cannot be loaded."""
    settings = get_settings()
    entry = find(custom_root(settings.models_dir), name)
    stamp = entry.stamp()
    with _lock:
        cached = _loaded.get(name)
        if cached is not None and cached[0] == stamp:
            _loaded.move_to_end(name)
            return cached[1]
        started = time.perf_counter()
        model = CustomModelPlugin(entry, settings)
        model.load()
        seconds = time.perf_counter() - started
        _loaded[name] = (stamp, model)
        _loaded.move_to_end(name)
        while len(_loaded) > settings.custom_models_loaded:
            dropped, _ = _loaded.popitem(last=False)
            log.info("custom model %s unloaded (keeping %d)", dropped,
                     settings.custom_models_loaded)
    log.info("custom model %s (%s, %s) loaded in %.2f s", name, entry.manifest.format,
             entry.manifest.kind, seconds)
    if on_loaded is not None:
        on_loaded(CUSTOM_QUEUE, name, seconds)
    return model


def loaded() -> list[str]:
    return list(_loaded)


def clear() -> None:
    with _lock:
        _loaded.clear()
