"""Monitoring settings: the on/off switch (``VISIONQ_METRICS=0``), per-task SLOs
(``VISIONQ_SLO_FACE=2s``) and the workers' exporter.

Durations accept ``250ms``, ``2s``, ``1.5``, ``1m`` so the same spelling works in the
environment, docs/configuration.md and Prometheus-style configs.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Annotated

from pydantic import BeforeValidator, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from visionq.settings import QUEUES

DEFAULT_SLO_S = {"face": 2.0, "detect": 2.0, "classify": 1.0}
"""End-to-end deadlines (queued -> finished): one CPU image job takes 50-500 ms, so a
job within its SLO waited at most a few service times in the queue."""
DEFAULT_EXPORTER_PORT = 9808
"""Next to celery-exporter's 9808 convention, so existing scrape configs carry over."""
DEFAULT_EXPORTER_HOST = "127.0.0.1"
PROMETHEUS_PORT = 9090
"""Where ``visionq up`` runs Prometheus (on 127.0.0.1) and where ``visionq report`` asks it
by default: Prometheus' own default port."""

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")


def parse_duration(value: str | float | int) -> float:
    """Seconds from ``"250ms"``, ``"2s"``, ``"1.5"`` (seconds), ``"1m"``; must be > 0."""
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"not a duration: {value!r} (examples: 250ms, 2s, 1.5, 1m)")
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got {value!r}")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


class MonitoringSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VISIONQ_", extra="ignore")

    metrics: bool = Field(
        default=True, description="Record metrics (0: no request/task hooks, no recording, "
        "no API /metrics; for measuring their overhead or running without Prometheus).")
    slo_face: Duration = Field(default=DEFAULT_SLO_S["face"], description=(
        "Per-task SLO for the goodput metric."))
    slo_detect: Duration = Field(default=DEFAULT_SLO_S["detect"], description=(
        "Per-task SLO for the goodput metric."))
    slo_classify: Duration = Field(default=DEFAULT_SLO_S["classify"], description=(
        "Per-task SLO for the goodput metric."))
    exporter_host: str = Field(default=DEFAULT_EXPORTER_HOST,
                               description="Workers' exporter bind address.")
    exporter_port: int = Field(default=DEFAULT_EXPORTER_PORT,
                               description="Workers' exporter port (/metrics).")

    def slo_for(self, task: str) -> float:
        return float(getattr(self, f"slo_{task}", DEFAULT_SLO_S.get(task, 2.0)))

    def slos(self) -> dict[str, float]:
        return {task: self.slo_for(task) for task in QUEUES}


@cache
def get_monitoring_settings() -> MonitoringSettings:
    return MonitoringSettings()


def metrics_enabled() -> bool:
    """``VISIONQ_METRICS`` (default on), read once per process."""
    return get_monitoring_settings().metrics
