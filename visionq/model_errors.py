"""Why a custom model is refused (``visionq.model_scan`` and ``visionq.savedmodel_scan``
raise them; both import them from here, so neither imports the other's module back)."""

from __future__ import annotations


class UnsafeModelError(ValueError):
    """The model would run more than inference; the message names what and where."""


class ModelTooLargeError(ValueError):
    """An upload or zip past ``VISIONQ_MODEL_MAX_BYTES`` or ``MAX_ZIP_ENTRIES``."""


class CheckerMissing(ImportError):
    """The library that parses this format is not installed in this process."""
