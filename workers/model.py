"""The small protocol every model plugin implements, and the result shapes they return."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from visionq.imaging import DecodedImage

TASKS = ("face", "detect", "classify")


@runtime_checkable
class Model(Protocol):
    """A model plugin: one file under ``workers/plugins/`` plus one entry point line.

    ``name`` is the registry key (``VISIONQ_MODEL_<TASK>`` selects it), ``task`` is the
    queue it serves, ``version`` goes into every result, ``extra`` is the pip extra that
    installs its dependencies (``visionq[face]``).  ``input_size`` (longest side in
    pixels, or ``None``) lets the decoder use reduced-size JPEG decoding.
    """

    name: str
    task: str
    version: str
    extra: str
    input_size: int | None

    def load(self) -> None:
        """Load weights once per process; raise ``ModelLoadError`` with a clear reason."""

    def predict(self, images: list[DecodedImage], options: dict[str, Any]) -> list[dict[str, Any]]:
        """Return one JSON-serialisable result per image, boxes in original-image pixels."""


class ModelLoadError(RuntimeError):
    """A model could not be loaded (missing weights, missing extra, bad file)."""
