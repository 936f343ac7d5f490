"""A test-only model (``VISIONQ_MODEL_<TASK>=tests.workers.sleepy_model:SleepyModel``)
that images make slow, hang or raise — the poison cases the fault tests need.  The image
says what to do: width 7 raises, width 8 hangs, width 9 hangs ignoring the soft time
limit, width 10 kills its process, width >= 100 sleeps width/100 seconds (and in a worker
started with ``SLEEPY_HOLD=1``, first waits there until its process is killed)."""

from __future__ import annotations

import os
import time
from typing import Any

from visionq.imaging import DecodedImage
from visionq.options import TASK_OPTIONS
from visionq.settings import Settings
from workers.model import ModelBase

RAISE_WIDTH = 7
HANG_WIDTH = 8
STUBBORN_WIDTH = 9
CRASH_WIDTH = 10
"""Kills its own process, like a segfault or the OOM killer."""
"""Hangs and swallows the soft time limit, like a C extension stuck in a loop."""


def image_bytes(width: int, height: int = 10) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 90, 90)).save(buffer, "PNG")
    return buffer.getvalue()


class SleepyModel(ModelBase):
    name = "sleepy"
    extra = "none"
    version = "test"

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        super().__init__(settings, **overrides)
        self.task = os.environ.get("SLEEPY_TASK", "classify")
        self.options = TASK_OPTIONS[self.task]
        if os.environ.get("SLEEPY_FAIL_LOAD"):
            raise RuntimeError(os.environ["SLEEPY_FAIL_LOAD"])

    def load(self) -> None:
        pass

    def predict(self, images: list[DecodedImage], options: dict[str, Any]) -> list[dict[str, Any]]:
        for image in images:
            if image.width == RAISE_WIDTH:
                raise ValueError("model exploded on a poison image")
            if image.width == HANG_WIDTH:
                while True:  # only the time limits can stop it
                    time.sleep(0.05)
            if image.width == CRASH_WIDTH:
                os.kill(os.getpid(), 9)
            if image.width == STUBBORN_WIDTH:
                _stubborn_hang()
            if image.width >= 100:
                while os.environ.get("SLEEPY_HOLD"):  # a node to be killed mid-job
                    time.sleep(0.05)
                time.sleep(image.width / 100)
        return [{"model": self.name, "width": i.width, "height": i.height, "pid": os.getpid()}
                for i in images]


def _stubborn_hang() -> None:
    from celery.exceptions import SoftTimeLimitExceeded

    while True:
        try:
            while True:
                time.sleep(0.05)
        except SoftTimeLimitExceeded:
            continue
