"""Metric declarations, job recording, SLO parsing, the broker collector and the files users
drop in (dashboard JSON up to date, promtool-clean rules and config)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis
from flask import Flask
from prometheus_client import CollectorRegistry

from api.metrics import UNMATCHED_ROUTE
from monitoring import dashboard
from monitoring.collector import BrokerCollector, oldest_age
from monitoring.metrics import (
    LATENCY_BUCKETS,
    REASONS,
    Metrics,
    clean_multiprocess_dir,
    reason_for,
)
from monitoring.record import record_job, record_submit
from monitoring.settings import MonitoringSettings, parse_duration
from visionq.jobs import JobStore
from visionq.kombu_redis import UNACKED_KEY

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"


@pytest.fixture()
def m() -> Metrics:
    return Metrics(CollectorRegistry())


def value(m: Metrics, name: str, **labels: str) -> float:
    return m.registry.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(("raw", "seconds"), [
    ("2s", 2.0), ("250ms", 0.25), ("1.5", 1.5), ("1m", 60.0), (" 3 s ", 3.0), (".5s", 0.5),
    (2, 2.0), ("1h", 3600.0),
])
def test_parse_duration(raw: str | int, seconds: float) -> None:
    assert parse_duration(raw) == pytest.approx(seconds)


@pytest.mark.parametrize("raw", ["", "fast", "2 days", "0s", "-1s", "1.2.3s"])
def test_parse_duration_rejects(raw: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(raw)


def test_slo_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISIONQ_SLO_FACE", "750ms")
    settings = MonitoringSettings()
    assert settings.slo_for("face") == pytest.approx(0.75)
    assert settings.slo_for("classify") == pytest.approx(1.0)
    monkeypatch.setenv("VISIONQ_SLO_DETECT", "soon")
    with pytest.raises(ValueError):
        MonitoringSettings()


@pytest.mark.parametrize(("code", "reason"), [
    (None, "none"), ("not_an_image", "bad_image"), ("truncated_image", "bad_image"),
    ("empty_image", "bad_image"), ("unsupported_format", "bad_image"),
    ("image_too_large", "too_large"), ("timeout", "timeout"),
    ("inference_error", "model_error"), ("poison_job", "worker_lost"),
    ("image_expired", "expired"), ("internal", "internal"), ("something_new", "other"),
])
def test_reason_for_maps_codes_onto_a_fixed_set(code: str | None, reason: str) -> None:
    assert reason_for(code) == reason
    assert reason in REASONS


def test_buckets_resolve_5ms_to_60s() -> None:
    assert LATENCY_BUCKETS[0] == 0.005 and LATENCY_BUCKETS[-1] == 60.0
    assert list(LATENCY_BUCKETS) == sorted(set(LATENCY_BUCKETS))


def test_record_job_stages_and_goodput(m: Metrics) -> None:
    now = 1000.0
    fast = SimpleNamespace(queued_at=now - 0.5, started_at=now - 0.2)
    slow = SimpleNamespace(queued_at=now - 9.0, started_at=now - 1.0)
    record_job("face", "succeeded", None, fast, m=m, slo_s=2.0, now=now)
    record_job("face", "succeeded", None, slow, m=m, slo_s=2.0, now=now)
    record_job("face", "failed", "not_an_image", fast, m=m, slo_s=2.0, now=now)
    record_job("face", "failed", "poison_job", None, m=m, slo_s=2.0, now=now)
    record_job("face", "revoked", None, None, m=m, slo_s=2.0, now=now)

    completed = "visionq_jobs_completed_total"
    assert value(m, completed, task="face", outcome="succeeded", reason="none") == 2
    assert value(m, completed, task="face", outcome="failed", reason="bad_image") == 1
    assert value(m, completed, task="face", outcome="failed", reason="worker_lost") == 1
    assert value(m, completed, task="face", outcome="revoked", reason="none") == 1
    # Goodput: only the fast success (0.5 s <= 2 s); the failure within 0.5 s is not good.
    assert value(m, "visionq_jobs_within_slo_total", task="face") == 1
    hist = "visionq_job_latency_seconds"
    assert value(m, f"{hist}_count", task="face", stage="end_to_end") == 3
    assert value(m, f"{hist}_sum", task="face", stage="queue_wait") == pytest.approx(
        0.3 + 8.0 + 0.3)
    assert value(m, f"{hist}_sum", task="face", stage="inference") == pytest.approx(
        0.2 + 1.0 + 0.2)
    assert value(m, f"{hist}_bucket", task="face", stage="end_to_end", le="0.5") == 2
    assert value(m, "visionq_batch_size_count", task="face") == 2


def test_goodput_series_exists_at_zero(m: Metrics) -> None:
    late = SimpleNamespace(queued_at=0.0, started_at=5.0)
    record_job("classify", "succeeded", None, late, m=m, slo_s=1.0, now=6.0)
    assert m.registry.get_sample_value("visionq_jobs_within_slo_total",
                                       {"task": "classify"}) == 0.0


def test_record_never_raises(m: Metrics) -> None:
    record_job("face", "succeeded", None, SimpleNamespace(queued_at="x", started_at=None),
               m=m, slo_s=1.0)
    record_submit("face", m=m)
    assert value(m, "visionq_jobs_submitted_total", task="face") == 1


def test_flask_hooks_label_by_rule_not_path(monkeypatch: pytest.MonkeyPatch) -> None:
    import api.metrics as hooks

    m = Metrics(CollectorRegistry())
    monkeypatch.setattr(hooks, "metrics", lambda: m)
    app = Flask(__name__)

    @app.get("/things/<thing_id>")
    def thing(thing_id: str) -> str:
        return thing_id

    hooks.init_app(app)
    client = app.test_client()
    for thing_id in ("a", "b", "c"):
        assert client.get(f"/things/{thing_id}").status_code == 200
    assert client.get("/nowhere").status_code == 404
    requests_total = "visionq_http_requests_total"
    assert value(m, requests_total, method="GET", route="/things/<thing_id>", status="200") == 3
    assert value(m, requests_total, method="GET", route=UNMATCHED_ROUTE, status="404") == 1
    assert value(m, "visionq_http_request_duration_seconds_count", method="GET",
                 route="/things/<thing_id>") == 3
    body = client.get("/metrics").get_data(as_text=True)
    assert "visionq_http_requests_total" in body


def test_broker_collector_reads_kombu_layout(idle_redis_url: str) -> None:
    """Real Redis, messages laid out as kombu writes them (publish with the real
    Celery producer, then move one to ``unacked`` as a consumer would)."""
    from celery import Celery

    from tasks.config import celery_config
    from visionq.settings import Settings

    celery_app = Celery("collector-test")
    celery_app.config_from_object({**celery_config(Settings(redis_url=idle_redis_url)),
                                   "result_backend": None})
    conn = redis.Redis.from_url(idle_redis_url)
    jobs = JobStore(conn, 60)
    old = jobs.create("classify", "blob-old")
    conn.hset(jobs.key(old.id), "queued_at", repr(time.time() - 30))
    new = jobs.create("classify", "blob-new")
    for job in (old, new):
        celery_app.send_task("visionq.classify", args=[job.id], task_id=job.id)
    assert oldest_age(conn, "classify") == pytest.approx(30, abs=2)
    assert oldest_age(conn, "face") == 0.0
    raw = conn.rpop("classify")  # what a consumer's BRPOP takes; kombu parks it unacked
    conn.hset(UNACKED_KEY, "tag-1", json.dumps([json.loads(raw), "classify", "classify"]))
    conn.set("visionq:worker:c1@host", json.dumps({"hostname": "c1@host",
                                                   "queues": ["classify"]}))

    registry = CollectorRegistry()
    registry.register(BrokerCollector(conn, ["face", "classify"], {"face": 2.0,
                                                                   "classify": 1.0}))

    def get(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert get("celery_queue_length", queue_name="classify") == 1
    assert get("celery_queue_length", queue_name="face") == 0
    assert get("visionq_queue_in_flight", queue_name="classify") == 1
    assert get("celery_active_worker_count", queue_name="classify") == 1
    assert get("celery_active_worker_count", queue_name="face") == 0
    assert get("visionq_slo_seconds", task="classify", queue_name="classify") == 1.0
    assert get("visionq_redis_up") == 1
    # The old job was consumed: the remaining one is seconds old.
    assert get("visionq_queue_oldest_age_seconds", queue_name="classify") < 5


def test_broker_collector_reports_redis_down() -> None:
    registry = CollectorRegistry()
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    registry.register(BrokerCollector(dead, ["face"], {"face": 2.0}))
    assert registry.get_sample_value("visionq_redis_up") == 0
    assert registry.get_sample_value("celery_queue_length", {"queue_name": "face"}) is None
    assert registry.get_sample_value("visionq_slo_seconds",
                                     {"task": "face", "queue_name": "face"}) == 2.0


def test_clean_multiprocess_dir(tmp_path: Path) -> None:
    (tmp_path / "counter_1.db").write_bytes(b"x")
    (tmp_path / "keep.txt").write_text("x")
    clean_multiprocess_dir(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    clean_multiprocess_dir(tmp_path / "new")
    assert (tmp_path / "new").is_dir()


def test_dashboard_json_is_generated_from_code() -> None:
    path = MONITORING / "grafana" / "dashboards" / "visionq.json"
    assert path.read_text() == dashboard.render(), (
        "run: python -m monitoring.dashboard > monitoring/grafana/dashboards/visionq.json")
    ids = [p["id"] for p in json.loads(path.read_text())["panels"]]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(("check", "name"), [("rules", "alerts.yml"),
                                             ("config", "prometheus.yml")])
def test_promtool_accepts(check: str, name: str, promtool: str) -> None:
    result = subprocess.run([promtool, "check", check, str(MONITORING / name)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_is_strict(promtool: str, tmp_path: Path) -> None:
    """The check above can fail: a broken expression is rejected."""
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n- name: x\n  rules:\n  - alert: X\n    expr: rate(foo[5m]\n")
    result = subprocess.run([promtool, "check", "rules", str(bad)], capture_output=True,
                            timeout=60)
    assert result.returncode != 0


def test_grafana_provisioning_files_parse() -> None:
    import yaml

    provisioning = MONITORING / "grafana" / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "visionq.yml").read_text())
    assert datasources["datasources"][0]["type"] == "prometheus"
    providers = yaml.safe_load((provisioning / "dashboards" / "visionq.yml").read_text())
    assert providers["providers"][0]["type"] == "file"
