"""A model for capacity benchmarks only (never in the product's registry): its "inference"
sleeps a fixed service time and uses no CPU, so that many workers can be simulated on two
cores (``bench broker-ceiling``).  Select it per queue, like any plugin override::

    VISIONQ_MODEL_CLASSIFY=bench.harness.sleep_model:SleepModel SLEEP_MODEL_MS=100

It also asks for the smallest decode (``max_side_for``), so a worker spends its CPU on the
queue's own work: fetching, recording, waking the waiter.
"""

from __future__ import annotations

import os
import time
from typing import Any

from visionq.imaging import DecodedImage, ImageInfo
from visionq.options import TASK_OPTIONS
from visionq.settings import Settings
from workers.model import ModelBase

SERVICE_MS_ENV = "SLEEP_MODEL_MS"
DEFAULT_SERVICE_MS = 100.0


def service_time_s() -> float:
    return float(os.environ.get(SERVICE_MS_ENV, DEFAULT_SERVICE_MS)) / 1000.0


class SleepModel(ModelBase):
    name = "sleep"
    extra = "none"
    version = "bench"

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        super().__init__(settings, **overrides)
        self.task = os.environ.get("SLEEP_MODEL_TASK", "classify")
        self.options = TASK_OPTIONS[self.task]
        self.service_s = service_time_s()

    def load(self) -> None:
        pass

    def max_side_for(self, info: ImageInfo) -> int | None:
        return 8

    def predict(self, images: list[DecodedImage], options: dict[str, Any]) -> list[dict[str, Any]]:
        time.sleep(self.service_s * len(images))
        return [{"predictions": [{"label": "sleep", "confidence": 1.0}]} for _ in images]
