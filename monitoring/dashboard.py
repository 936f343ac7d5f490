"""The Grafana dashboard, generated from the panel list below:
``python -m monitoring.dashboard > monitoring/grafana/dashboards/visionq.json``.

Kept as data (title, queries, unit) rather than hand-edited JSON so that every query is
visible in one place; a test checks the JSON file is up to date and runs every query
against a real Prometheus.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

RATE = "$__rate_interval"
"""Grafana's rate window (at least four scrape intervals); the tests substitute ``1m``."""
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
STAGES = ("queue_wait", "inference", "end_to_end")


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    targets: tuple[Target, ...]
    unit: str = "short"
    description: str = ""
    width: int = 12
    extra: dict[str, Any] = field(default_factory=dict)


def _quantiles(metric: str, selector: str, by: str, legend: str) -> tuple[Target, ...]:
    return tuple(
        Target(f"histogram_quantile({q}, sum by (le, {by}) "
               f"(rate({metric}_bucket{selector}[{RATE}])))", f"{legend} p{int(q * 100)}")
        for q in (0.5, 0.95, 0.99))


PANELS: tuple[Panel, ...] = (
    Panel("Offered vs completed vs goodput (jobs/s)", (
        Target(f"sum by (task) (rate(visionq_jobs_submitted_total[{RATE}]))",
               "{{task}} offered"),
        Target(f"sum by (task) (rate(visionq_jobs_completed_total[{RATE}]))",
               "{{task}} completed"),
        Target(f"sum by (task) (rate(visionq_jobs_within_slo_total[{RATE}]))",
               "{{task}} within SLO"),
    ), unit="reqps", description="Goodput: jobs that succeeded within their task's SLO."),
    Panel("Goodput ratio", (
        Target(f"sum by (task) (rate(visionq_jobs_within_slo_total[{RATE}])) / "
               f"sum by (task) (rate(visionq_jobs_completed_total[{RATE}]))", "{{task}}"),
    ), unit="percentunit", description="Alert below 0.95 for 5 minutes."),
    *(Panel(f"Latency: {stage.replace('_', ' ')} (p50 / p95 / p99)",
            _quantiles("visionq_job_latency_seconds", f'{{stage="{stage}"}}', "task",
                       "{{task}}"), unit="s", width=8)
      for stage in STAGES),
    Panel("Queue length and in flight", (
        Target("sum by (queue_name) (celery_queue_length)", "{{queue_name}} waiting"),
        Target("sum by (queue_name) (visionq_queue_in_flight)", "{{queue_name}} in flight"),
    )),
    Panel("Oldest waiting job vs SLO", (
        Target("max by (queue_name) (visionq_queue_oldest_age_seconds)",
               "{{queue_name}} oldest"),
        Target("max by (queue_name) (visionq_slo_seconds)", "{{queue_name}} SLO"),
    ), unit="s"),
    Panel("Workers: desired vs actual", (
        Target("max by (queue_name) (visionq_autoscale_workers_desired)",
               "{{queue_name}} desired"),
        Target("max by (queue_name) (visionq_autoscale_workers_current)",
               "{{queue_name}} current (autoscaler)"),
        Target("sum by (queue_name) (celery_active_worker_count)",
               "{{queue_name}} online (heartbeats)"),
    ), description="desired/current come from the autoscaler; online from heartbeats."),
    Panel("Errors by reason (jobs/s)", (
        Target('sum by (task, reason) '
               f'(rate(visionq_jobs_completed_total{{outcome="failed"}}[{RATE}]))',
               "{{task}} {{reason}}"),
    ), unit="reqps"),
    Panel("Task runtime (celery_task_runtime)",
          _quantiles("celery_task_runtime", "", "queue_name", "{{queue_name}}"), unit="s"),
    Panel("API requests by route and status", (
        Target(f"sum by (route, status) (rate(visionq_http_requests_total[{RATE}]))",
               "{{route}} {{status}}"),
    ), unit="reqps"),
    Panel("API latency by route (p95)", (
        Target("histogram_quantile(0.95, sum by (le, route) "
               f"(rate(visionq_http_request_duration_seconds_bucket[{RATE}])))", "{{route}}"),
    ), unit="s"),
    Panel("Batch size (mean) and model load time", (
        Target(f"sum by (task) (rate(visionq_batch_size_sum[{RATE}])) / "
               f"sum by (task) (rate(visionq_batch_size_count[{RATE}]))", "{{task}} batch"),
        Target("max by (task, model) "
               "(visionq_model_load_seconds_sum / visionq_model_load_seconds_count)",
               "{{task}} {{model}} load s"),
    )),
)


def panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"},
                    "tooltip": {"mode": "multi"}},
        "targets": [{"refId": chr(ord("A") + i), "datasource": DATASOURCE,
                     "expr": t.expr, "legendFormat": t.legend}
                    for i, t in enumerate(panel.targets)],
        **panel.extra,
    }


def dashboard() -> dict[str, Any]:
    panels, x, y = [], 0, 0
    for i, panel in enumerate(PANELS, start=1):
        if x + panel.width > 24:
            x, y = 0, y + 8
        panels.append(panel_json(panel, i, x, y))
        x += panel.width
    return {
        "uid": "visionq",
        "title": "visionq",
        "tags": ["visionq", "celery"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-30m", "to": "now"},
        "templating": {"list": [{
            "name": "datasource", "type": "datasource", "query": "prometheus",
            "label": "Prometheus", "current": {}, "hide": 0,
        }]},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
