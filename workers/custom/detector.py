"""A custom detector as the ``detect`` queue's model: ``VISIONQ_MODEL_DETECT=custom/<name>``
(also read as ``VISIONQ_DETECT_MODEL``) makes ``/v1/vision/detection`` and ``task=detect``
jobs use the folder's model ``<name>`` (``visionq.custom_models``) instead of the built-in
CenterNet.

The job stays on the ``detect`` queue, its options are detect's (``min_confidence``,
``classes``) and its labels come out as COCO / Frigate spell them (``visionq.labels.
coco_name``: ``motorbike`` -> ``motorcycle``), so Frigate, Home Assistant and Blue Iris
understand them.  The detect worker reads the model from its own ``VISIONQ_MODELS_DIR``
(``custom/`` there), so that folder must be the one ``addmodel`` writes to (shared).  At
start the worker refuses a name the folder does not have, or a model that is not a detector
(``registry.create`` -> ``workers.hooks.ModelLoading``); a model replaced later
(``addmodel`` again) is loaded again by the next job.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from visionq.custom_models import CustomModel, ManifestError, custom_root, find, model_name
from visionq.imaging import DecodedImage, ImageInfo
from visionq.labels import coco_name
from visionq.options import DetectOptions
from visionq.settings import Settings
from workers.custom.model import CustomModelPlugin
from workers.model import ModelBase, ModelLoadError

log = logging.getLogger(f"visionq.{__name__}")


class CustomDetector(ModelBase):
    """``CustomDetector(settings, task="custom/<name>")``: what ``workers.registry.create``
    builds for a ``custom/<name>`` model name."""

    name = "custom"
    task = "detect"
    extra = "detect"
    options = DetectOptions
    input_size = None
    fork_safe = False
    """Each pool process opens its own runtime (and opens it again when the model is
    replaced): a runtime session opened before the fork is not carried into the child."""

    def __init__(self, settings: Settings | None = None, *, task: str) -> None:
        super().__init__(settings)
        self.model_name = model_name(task)
        self.name = task  # type: ignore[misc]
        self.plugin = CustomModelPlugin(self._entry(), self.settings)
        self.version = self.plugin.version
        self._stamp: tuple[float, float] | None = None
        self._lock = threading.Lock()

    def _entry(self) -> CustomModel:
        root = custom_root(self.settings.models_dir)
        try:
            entry = find(root, self.model_name)
        except ManifestError as exc:
            raise ModelLoadError(f"{self.name} cannot serve the detect queue: {exc} "
                                 "(VISIONQ_MODELS_DIR must be the folder addmodel writes to)"
                                 ) from exc
        if entry.manifest.kind != "detect":
            raise ModelLoadError(f"{self.name} is a {entry.manifest.kind} model; the detect "
                                 "queue needs one of kind detect")
        return entry

    def load(self) -> None:
        self.plugin.load()
        self._stamp = self.plugin.entry.stamp()
        log.info("detect queue serves custom model %s (%s, layout %s, %s)", self.model_name,
                 self.plugin.manifest.format, self.plugin.manifest.layout,
                 self.plugin.entry.model_path)

    def max_side_for(self, info: ImageInfo) -> int | None:
        return self.plugin.max_side_for(info)

    def predict(self, images: list[DecodedImage], options: dict[str, Any]) -> list[dict[str, Any]]:
        opts: DetectOptions = self.parse_options(options)
        plugin = self._current()
        results = plugin.predict(images, {"min_confidence": opts.min_confidence})
        wanted = set(opts.classes) if opts.classes is not None else None
        for result in results:
            named = [{**p, "label": coco_name(p["label"])} for p in result["predictions"]]
            result["predictions"] = [p for p in named if wanted is None or p["label"] in wanted]
            result["model"] = self.name
        return results

    def _current(self) -> CustomModelPlugin:
        """The loaded model, loaded again first when its files changed since (a failure to
        read the new one fails the job with the reason)."""
        with self._lock:
            try:
                stamp: tuple[float, float] | None = self.plugin.entry.stamp()
            except OSError:
                stamp = None
            if self._stamp is None or stamp != self._stamp:
                replacement = CustomModelPlugin(self._entry(), self.settings)
                replacement.load()
                self.plugin, self.version = replacement, replacement.version
                self._stamp = replacement.entry.stamp()
                log.info("custom model %s loaded again for the detect queue (its files "
                         "changed)", self.model_name)
            return self.plugin
