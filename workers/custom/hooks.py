"""Worker hooks for the ``custom`` queue: its models load per job (``workers.custom.cache``),
so start-up only reads the folder and logs what it can serve and what it cannot."""

from __future__ import annotations

import logging

from visionq.custom_models import CUSTOM_QUEUE, custom_root, scan
from visionq.settings import get_settings
from workers.hooks import WorkerHook

log = logging.getLogger("visionq.worker")


class CustomModelsScan(WorkerHook):
    """On a worker consuming ``custom``: one log line per model found, one error line per
    manifest that cannot be served (the worker starts anyway)."""

    def on_worker_init(self, queues: list[str]) -> None:
        if CUSTOM_QUEUE not in queues:
            return
        root = custom_root(get_settings().models_dir)
        catalog = scan(root)
        for name, model in catalog.models.items():
            log.info("custom model %s: %s %s (%s)", name, model.manifest.format,
                     model.manifest.kind, model.model_path)
        if not catalog.models:
            log.warning("no custom model in %s yet; jobs for one added later load it then",
                        root)
        for name, reason in catalog.errors.items():
            log.error("custom model %s cannot be served: %s", name, reason)
