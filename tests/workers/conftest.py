"""Fixtures for in-process worker tests: this process configured as a worker would be
(``VISIONQ_*`` read through ``get_settings``), with an empty model cache."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from visionq.settings import get_settings
from workers import runtime

SLEEPY = "tests.workers.sleepy_model:SleepyModel"
WorkerEnv = Callable[..., None]


@pytest.fixture()
def worker_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkerEnv]:
    """``worker_env(REDIS_URL=..., VISIONQ_MODEL_CLASSIFY=...)``: set the environment and
    re-read the settings; both, and the model cache, are restored afterwards."""
    monkeypatch.setattr(runtime, "_models", {})

    def _set(**env: str) -> None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    get_settings.cache_clear()
    yield _set
    monkeypatch.undo()
    get_settings.cache_clear()
