"""A real Prometheus scrapes a live stack with the shipped config; every dashboard query and
every alert expression is run through its HTTP API and must return data of the expected
shape.  A query naming a metric that no target exports fails the test."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import yaml

from launcher.supervisor import Snapshot
from launcher.up import Stack as UpStack
from monitoring import metrics as declared
from tests.conftest import free_port, log_tail, spawn, stop_process
from tests.monitoring.conftest import Stack
from tests.monitoring.live import (
    DEADLINE_S,
    enqueue_expired,
    scrape,
    submit,
    total,
    until,
    wait_final,
)
from visionq.keys import CALLBACK_DUE_KEY, CALLBACK_PENDING_KEY
from visionq.settings import Settings

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "visionq.json"
RATE_WINDOW = "1m"
"""Stands for Grafana's ``$__rate_interval``: with a 1 s scrape interval, many samples."""
FACES_PER_WAVE = 3
MOVING = (
    'visionq_jobs_submitted_total{task="face"}',
    "visionq_http_request_duration_seconds_count",
    'visionq_jobs_completed_total{task="face",outcome="succeeded"}',
    'visionq_jobs_completed_total{task="face",outcome="failed",reason="expired"}',
    *(f'visionq_job_latency_seconds_count{{task="face",stage="{stage}"}}'
      for stage in declared.STAGES),
    'celery_task_runtime_count{queue_name="face"}',
    'visionq_batch_size_count{task="face"}',
)
"""Series that every wave of jobs increments, whichever the machine's speed: each must show
an increase between two scraped samples, or a rate() over it is 0 (a ratio or a quantile
of it NaN, an alert on it empty).  Not ``visionq_jobs_within_slo_total``: a loaded machine
may miss every SLO, which is a ratio of 0, still data."""
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
    "VisionqProcessRestarting": ("role", {"worker-face"}),  # RESTARTS recorded below
    "VisionqHistoryDeadLetters": None,
    "VisionqWebhooksBehind": ("job", {"visionq-workers"}),  # OVERDUE_S scheduled below
}
RESTARTS = 3
OVERDUE_S = 3600
"""A webhook delivery stored and scheduled as the callbacks sender stores it, due this long
ago, with no sender running (the stack has none): the state of a stopped callbacks role."""
"""Restarts of worker-face recorded the way ``visionq up``'s supervisor records them."""
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
                                timeout=30)
        body = response.json()
        assert body.get("status") == "success", f"{expr}: {body}"
        return body["data"]

    def names(self) -> set[str]:
        return set(requests.get(f"{self.url}/api/v1/label/__name__/values",
                                timeout=30).json()["data"])

    def value(self, expr: str) -> float | None:
        """The value of a one-series expression, ``None`` while it has none."""
        result = self.query(expr)["result"]
        return float(result[0]["value"][1]) if result else None


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
    deadline = time.monotonic() + DEADLINE_S
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


class Waves:
    """Waves of real jobs on ``stack`` (face jobs through the API and one job whose image
    has expired), each followed by a wait until Prometheus has scraped all of it."""

    def __init__(self, prom: Prometheus, stack: Stack) -> None:
        self.prom, self.stack, self.count = prom, stack, 0
        # Counters only grow; other tests of the session may have run jobs on this stack.
        self.submitted = total(scrape(stack.api_url), "visionq_jobs_submitted_total",
                               task="face")
        self.completed = total(scrape(stack.exporter_url), "visionq_jobs_completed_total",
                               task="face")

    def run(self) -> None:
        ids = [submit(self.stack.api_url) for _ in range(FACES_PER_WAVE)]
        ids.append(enqueue_expired(self.stack.redis_url))
        for job_id in ids:
            wait_final(self.stack.api_url, job_id)
        self.count += 1
        self.submitted += FACES_PER_WAVE
        self.completed += FACES_PER_WAVE + 1
        self.wait_scraped()

    def wait_scraped(self) -> None:
        """Until both targets' latest samples in Prometheus hold every job sent so far.
        Waits on the counts this class sent, not on a scrape of the exporter: the worker
        counts a job just after the job turns final."""
        wants = {'sum(visionq_jobs_submitted_total{task="face"})': self.submitted,
                 'sum(visionq_jobs_completed_total{task="face"})': self.completed}

        def scraped() -> bool:
            return all((self.prom.value(expr) or 0) >= want for expr, want in wants.items())

        until(scraped, lambda: f"Prometheus did not scrape the jobs of wave {self.count}: "
                               f"want {wants}, has "
                               f"{ {expr: self.prom.value(expr) for expr in wants} }")

    def until_moving(self, moving: Callable[[str], str]) -> None:
        """Waves until the query ``moving(selector)`` returns data for every series in
        MOVING.  Prometheus starts scraping seconds after it reports ready (target
        discovery and the scrape manager update every 5 s), and a slow scrape on a loaded
        machine can fold two waves into one sample; a wave that starts after the previous
        one is scraped always shows up as an increase."""
        deadline = time.monotonic() + DEADLINE_S
        self.run()  # creates the series; the next wave moves them
        while True:
            self.run()
            flat = [sel for sel in MOVING if not self.prom.query(moving(sel))["result"]]
            if not flat:
                return
            assert time.monotonic() < deadline, (
                f"after {self.count} waves in {DEADLINE_S:g} s, no increase of {flat}")


@pytest.fixture(scope="module")
def live(prometheus: Prometheus, monitored_stack: Stack) -> Prometheus:
    """Waves of real jobs until every rate the dashboard and the alerts take has an
    increase in its window, and a detect job left queued (no detect worker: backlog and
    no-worker alerts)."""
    supervisor = UpStack(settings=Settings(redis_url=monitored_stack.redis_url), queues=[])
    assert supervisor.record(Snapshot(restarts={"worker-face": 0}))  # `visionq up` starts
    submit(monitored_stack.api_url, task="detect")
    Waves(prometheus, monitored_stack).until_moving(
        lambda sel: f"sum(rate({sel}[{RATE_WINDOW}])) > 0")
    # The waves were scraped, so the 0 was: now the role restarts (an increase, not a
    # counter that was born at RESTARTS).
    assert supervisor.record(Snapshot(restarts={"worker-face": RESTARTS}))
    selector = 'visionq_process_restarts_total{role="worker-face"}'
    until(lambda: prometheus.value(selector) == RESTARTS,
          lambda: f"Prometheus did not scrape {RESTARTS} restarts: {prometheus.value(selector)}")
    overdue = redis.Redis.from_url(monitored_stack.redis_url)
    overdue.hset(CALLBACK_PENDING_KEY, "alert-test", json.dumps({"url": "http://192.0.2.1/"}))
    overdue.zadd(CALLBACK_DUE_KEY, {"alert-test": time.time() - OVERDUE_S})
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
        return
    label, values = expected

    def fires_as_expected() -> bool:
        nonlocal data
        data = live.query(rule["expr"])
        return {s["metric"].get(label) for s in data["result"]} == values

    # The waves are scraped; what may still be on its way is a gauge (the queued detect
    # job's age passing its SLO), so poll the expression until it holds.
    until(fires_as_expected, lambda: f"{rule['alert']}: want {label} in {values}, "
                                     f"the expression returns {data['result']}")
