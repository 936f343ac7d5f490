"""``VISIONQ_METRICS=0`` turns every hook off: nothing recorded, no ``/metrics``, no metrics
hook in the workers (what the retired ``bench metrics-overhead`` compared against; its
figures are in bench/results/HISTORY.md)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry

import api.metrics as flask_hooks
import monitoring.record as record
from monitoring.metrics import Metrics
from monitoring.settings import MonitoringSettings, get_monitoring_settings
from tests.conftest import BIN, REPO


@pytest.fixture()
def switch(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Set ``VISIONQ_METRICS`` with ``switch.setenv``; the cached settings follow."""
    get_monitoring_settings.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    get_monitoring_settings.cache_clear()


@pytest.mark.parametrize(("raw", "enabled"), [("0", False), ("false", False), ("1", True),
                                              ("true", True), (None, True)])
def test_setting(monkeypatch: pytest.MonkeyPatch, raw: str | None, enabled: bool) -> None:
    if raw is None:
        monkeypatch.delenv("VISIONQ_METRICS", raising=False)
    else:
        monkeypatch.setenv("VISIONQ_METRICS", raw)
    assert MonitoringSettings().metrics is enabled


@pytest.mark.parametrize(("raw", "recorded"), [("0", 0), ("1", 1)])
def test_record_follows_the_switch(switch: pytest.MonkeyPatch, raw: str, recorded: int) -> None:
    switch.setenv("VISIONQ_METRICS", raw)
    m = Metrics(CollectorRegistry())
    switch.setattr(record, "metrics", lambda: m)
    record.record_submit("face")
    record.record_job("face", "succeeded", None,
                      SimpleNamespace(queued_at=1.0, started_at=1.5), now=2.0)

    def value(name: str, **labels: str) -> float:
        return m.registry.get_sample_value(name, labels) or 0.0

    assert value("visionq_jobs_submitted_total", task="face") == recorded
    assert value("visionq_jobs_completed_total", task="face", outcome="succeeded",
                 reason="none") == recorded
    assert value("visionq_job_latency_seconds_count", task="face",
                 stage="end_to_end") == recorded


@pytest.mark.parametrize(("raw", "served"), [("0", False), ("1", True)])
def test_flask_hooks_follow_the_switch(switch: pytest.MonkeyPatch, raw: str,
                                       served: bool) -> None:
    switch.setenv("VISIONQ_METRICS", raw)
    m = Metrics(CollectorRegistry())
    switch.setattr(flask_hooks, "metrics", lambda: m)
    app = Flask(__name__)
    app.add_url_rule("/ping", "ping", lambda: "pong")
    flask_hooks.init_app(app)
    client = app.test_client()
    assert client.get("/ping").status_code == 200
    assert (client.get("/metrics").status_code == 200) is served
    counted = m.registry.get_sample_value("visionq_http_requests_total",
                                          {"method": "GET", "route": "/ping", "status": "200"})
    assert (counted or 0) == (1 if served else 0)


PROBE = """
import json
import tasks
import workers.app
print(json.dumps({"hooks": [type(h).__name__ for h in workers.app.hooks.hooks]}))
"""


@pytest.mark.parametrize(("raw", "metrics_hook"), [("0", False), ("1", True)])
def test_worker_hooks_follow_the_switch(raw: str, metrics_hook: bool) -> None:
    """A fresh process wired as a worker is (``workers.app``, which Celery imports at
    worker start): the metrics hook is there only with metrics on."""
    env = {**os.environ, "VISIONQ_METRICS": raw}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    result = subprocess.run([str(BIN / "python"), "-c", PROBE], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert ("MetricsHook" in found["hooks"]) is metrics_hook, found
    assert {"ModelLoading", "Heartbeats", "ScalingHints"} <= set(found["hooks"]), found
