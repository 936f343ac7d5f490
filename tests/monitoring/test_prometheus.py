"""A real Prometheus scrapes a live stack with the shipped config; every dashboard query and
every alert expression is run through its HTTP API and must return data of the expected
shape.  A query naming a metric that no target exports fails the test."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from monitoring import metrics as declared
from tests.conftest import free_port, log_tail, spawn, stop_process
from tests.monitoring.conftest import Stack
from tests.monitoring.live import enqueue_expired, scrape, submit, total, wait_final

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "visionq.json"
RATE_WINDOW = "1m"
"""Stands for Grafana's ``$__rate_interval``: with a 1 s scrape interval, many samples."""
AUTOSCALER_ONLY = {declared.AUTOSCALE_DESIRED, declared.AUTOSCALE_CURRENT}
"""Published by the autoscaler, which this stack does not run: their queries are checked
against the declared names instead of live data."""
ALERTS_EXPECTED: dict[str, tuple[str, set[str]] | None] = {
    # alert -> (label, values it must fire for) or None (must not fire)
    "VisionqBacklogOlderThanSlo": ("queue_name", {"detect"}),  # a detect job, no worker
    "VisionqGoodputLow": ("task", {"face"}),  # expired jobs count as misses
    "VisionqQueueWithoutWorkers": ("queue_name", {"detect", "classify"}),
    "VisionqHighErrorRate": ("task", {"face"}),
    "VisionqApiErrors": None,
    "VisionqRedisDown": None,
    "VisionqTargetDown": None,
}
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
             "unless", "bool", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (not functions, labels or keywords)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        if text[match.end():].lstrip().startswith("(") or match.group(0) in _KEYWORDS:
            continue
        names.add(match.group(0))
    return names


def test_metric_names_extraction() -> None:
    expr = ('histogram_quantile(0.95, sum by (le, task) (rate(visionq_job_latency_seconds_'
            'bucket{stage="queue_wait"}[$__rate_interval]))) / on (task) group_left up '
            'or absent(visionq_redis_up)')
    assert metric_names(expr) == {"visionq_job_latency_seconds_bucket", "up",
                                  "visionq_redis_up"}


def dashboard_targets() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(panel["title"], target["expr"]) for panel in panels for target in panel["targets"]]


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_expectations_cover_every_alert() -> None:
    assert {rule["alert"] for rule in alert_rules()} == set(ALERTS_EXPECTED)


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> dict[str, Any]:
        response = requests.get(f"{self.url}/api/v1/query", params={"query": expr},
                                timeout=10)
        body = response.json()
        assert body.get("status") == "success", f"{expr}: {body}"
        return body["data"]

    def names(self) -> set[str]:
        return set(requests.get(f"{self.url}/api/v1/label/__name__/values",
                                timeout=10).json()["data"])


def test_config_scrapes_every_component() -> None:
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == {"visionq-api", "visionq-workers", "flower", "visionq-autoscaler"}
    assert config["rule_files"] == ["alerts.yml"]


@pytest.fixture(scope="module")
def prometheus(prometheus_bin: str, monitored_stack: Stack,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """The shipped config with this stack's targets, a 1 s scrape interval and only the
    components the stack runs (no Flower, no autoscaler)."""
    base = tmp_path_factory.mktemp("prometheus")
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(MONITORING / "alerts.yml")]
    targets = {"visionq-api": monitored_stack.api_url,
               "visionq-workers": monitored_stack.exporter_url}
    config["scrape_configs"] = [
        {**job, "static_configs": [{"targets": [targets[job["job_name"]].split("//")[1]]}]}
        for job in config["scrape_configs"] if job["job_name"] in targets]
    (base / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = spawn("prometheus", [
        prometheus_bin, f"--config.file={base / 'prometheus.yml'}",
        f"--web.listen-address=127.0.0.1:{port}", f"--storage.tsdb.path={base / 'data'}",
        "--log.level=warn"], {"PATH": "/usr/bin:/bin"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process)
            raise RuntimeError(f"prometheus did not start:\n{log_tail('prometheus')}")
        time.sleep(0.2)
    try:
        yield Prometheus(url)
    finally:
        stop_process(process)


def _wave(stack: Stack, faces: int) -> None:
    ids = [submit(stack.api_url) for _ in range(faces)]
    ids.append(enqueue_expired(stack.redis_url))
    for job_id in ids:
        wait_final(stack.api_url, job_id)


def _wait_scraped(prom: Prometheus, stack: Stack, timeout_s: float = 15) -> None:
    """Until Prometheus holds what the exporter serves now (the last wave is in)."""
    want = total(scrape(stack.exporter_url), "visionq_jobs_completed_total")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = prom.query("sum(visionq_jobs_completed_total)")["result"]
        if result and float(result[0]["value"][1]) >= want:
            return
        time.sleep(0.5)
    raise AssertionError(f"Prometheus did not scrape {want} completed jobs in {timeout_s} s")


@pytest.fixture(scope="module")
def live(prometheus: Prometheus, monitored_stack: Stack) -> Prometheus:
    """Two waves of real jobs (the first creates the series, the second moves rates off
    zero), a detect job left queued (no detect worker: backlog and no-worker alerts)."""
    stack = monitored_stack
    submit(stack.api_url, task="detect")
    time.sleep(2.5)  # a few scrapes of the idle stack
    _wave(stack, faces=3)
    time.sleep(2.5)
    _wave(stack, faces=3)
    time.sleep(2.5)  # the detect job is now older than its 2 s SLO
    _wait_scraped(prometheus, stack)
    # rate() needs two scraped samples that differ inside its window; on a loaded machine
    # a slow scrape can fold both waves into one sample, so add waves until it moves.
    for _ in range(4):
        moving = prometheus.query(
            f'sum by (task) (rate(visionq_jobs_completed_total{{task="face"}}[{RATE_WINDOW}])) > 0'
            f' and sum by (task) (rate(visionq_job_latency_seconds_count{{task="face"}}'
            f'[{RATE_WINDOW}])) > 0')["result"]
        if moving:
            break
        _wave(stack, faces=3)
        time.sleep(2.5)
        _wait_scraped(prometheus, stack)
    return prometheus


def _finite(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in data["result"] if not math.isnan(float(s["value"][1]))]


@pytest.mark.parametrize(("title", "expr"), dashboard_targets(),
                         ids=[f"{t}:{e[:40]}" for t, e in dashboard_targets()])
def test_dashboard_query_returns_data(live: Prometheus, title: str, expr: str) -> None:
    expr = expr.replace("$__rate_interval", RATE_WINDOW)
    names = metric_names(expr)
    data = live.query(expr)
    assert data["resultType"] == "vector", f"{title}: {expr}"
    if names <= AUTOSCALER_ONLY:
        return  # the autoscaler is not part of this stack; names checked below
    missing = names - live.names()
    assert not missing, f"{title}: no target exports {sorted(missing)}"
    assert _finite(data), f"{title}: {expr} returned no data: {data['result']}"


def test_autoscaler_queries_use_declared_names() -> None:
    used = set().union(*(metric_names(e) for _, e in dashboard_targets()))
    assert used & AUTOSCALER_ONLY == AUTOSCALER_ONLY


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_expression(live: Prometheus, rule: dict[str, Any]) -> None:
    missing = metric_names(rule["expr"]) - live.names()
    assert not missing, f"{rule['alert']}: no target exports {sorted(missing)}"
    data = live.query(rule["expr"])
    assert data["resultType"] == "vector"
    expected = ALERTS_EXPECTED[rule["alert"]]
    if expected is None:
        assert data["result"] == [], f"{rule['alert']} fires on a healthy stack: {data}"
    else:
        label, values = expected
        assert {s["metric"].get(label) for s in data["result"]} == values, data
