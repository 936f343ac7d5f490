"""The contract every model plugin implements, and a base class that fills in its defaults.

A plugin is one file under ``workers/plugins/`` plus one ``visionq.models`` entry point.
``workers.registry.create(name, settings)`` instantiates it with the service's ``Settings``;
the worker then calls ``load()`` once, ``max_side_for()`` before decoding each image and
``predict()`` per job, and reloads it in every prefork child unless ``fork_safe``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic_settings import BaseSettings, SettingsConfigDict

from visionq.imaging import DecodedImage, ImageInfo
from visionq.options import TaskOptions
from visionq.settings import Settings, get_settings

LoadListener = Callable[[str, str, float], object]
"""Told ``(task, model name, seconds)`` after a model is loaded and warmed up."""


class PluginSettings(BaseSettings):
    """Base of a plugin's own settings: environment variables under the plugin's prefix
    (``model_config = SettingsConfigDict(env_prefix="VISIONQ_FACE_")``), overridden by
    keyword arguments to the plugin's constructor (tests, benchmarks).  Every field is
    listed in docs/configuration.md like ``Settings``' own."""

    model_config = SettingsConfigDict(extra="forbid", populate_by_name=True)


@runtime_checkable
class Model(Protocol):
    """A model plugin, constructed as ``Plugin(settings, **overrides)``.

    ``name`` is the registry key (``VISIONQ_MODEL_<TASK>`` selects it), ``task`` the queue
    it serves, ``version`` goes into every result, ``extra`` is the pip extra that installs
    its dependencies (``visionq[face]``).  ``input_size`` is the longest side (pixels) the
    model needs, or ``None`` for full resolution.  ``fork_safe``: loaded once in the worker's
    main process and shared by its prefork children; ``False`` makes each child load its
    own (runtimes whose threads do not survive ``fork()``).  ``options`` is the task's
    option model (``visionq.options``) or a subclass: the API validates jobs with the
    task's model, the plugin parses them with this one.  ``settings_class`` is the plugin's
    own settings (``PluginSettings``); ``config`` the instance of it in use.
    """

    name: str
    task: str
    version: str
    extra: str
    input_size: int | None
    fork_safe: bool
    options: type[TaskOptions]
    settings_class: type[PluginSettings]
    config: PluginSettings

    def load(self) -> None:
        """Load weights once per process; raise ``ModelLoadError`` with a clear reason."""

    def max_side_for(self, info: ImageInfo) -> int | None:
        """Longest side to decode an image of this header at (reduced-size JPEG decoding),
        or ``None`` for full resolution; boxes are still reported in original pixels."""

    def predict(self, images: list[DecodedImage], options: dict[str, Any]) -> list[dict[str, Any]]:
        """Return one JSON-serialisable result per image, boxes in original-image pixels.
        ``options`` are a job's as given (validate them with ``self.options``)."""


class ModelBase:
    """Defaults for the protocol, so a plugin only states what is its own: subclass it, set
    ``name``, ``task``, ``version``, ``extra``, ``options`` (and ``input_size``,
    ``settings_class``), write ``load()`` and ``predict()``."""

    name: ClassVar[str]
    task: str
    version: str
    extra: ClassVar[str]
    options: type[TaskOptions]
    input_size: int | None = None
    fork_safe: bool = True
    settings_class: type[PluginSettings] = PluginSettings

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        self.settings = settings if settings is not None else get_settings()
        """The service's settings (``VISIONQ_*``)."""
        self.config = self.settings_class(**overrides)
        """This plugin's own settings: environment, then ``overrides``."""

    def max_side_for(self, info: ImageInfo) -> int | None:
        return self.input_size

    def parse_options(self, options: dict[str, Any] | None) -> Any:
        """A job's options as ``self.options`` (defaults filled in); a ``ValueError``
        (pydantic's ``ValidationError``) naming the problem otherwise."""
        return self.options.model_validate(options or {})


class ModelLoadError(RuntimeError):
    """A model could not be loaded (missing weights, missing extra, bad file).  ``code``:
    the failed job's code when it is not ``inference_error`` (``unsafe_model``)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


def process_cpu_count() -> int:
    """CPUs this process may run on (affinity / cgroup cpusets), not the host's count: the
    default thread count of the inference runtimes."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
