"""Attack: requests with invented HTTP methods (``M1X``, ``M2X``...) each created a new
series in ``/metrics`` (the raw method was a label: 300 methods, 5,100 lines).  The labels
taken from a request (method, route, status) are bucketed into small fixed sets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import start_api, stop_process

INVENTED_METHODS = 300
MAX_NEW_LINES = 5


@pytest.fixture(scope="module")
def metered_api(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gunicorn API as ``visionq up`` runs it: 2 workers merging their metrics files."""
    directory: Path = tmp_path_factory.mktemp("api-metrics")
    url, process = start_api(redis_url, "api-metric-labels",
                             PROMETHEUS_MULTIPROC_DIR=str(directory))
    yield url
    stop_process(process)


def metric_lines(url: str) -> list[str]:
    response = requests.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200
    return [line for line in response.text.splitlines() if not line.startswith("#")]


def test_invented_methods_do_not_grow_metrics(metered_api: str) -> None:
    session = requests.Session()
    metric_lines(metered_api)  # the series of GET /metrics itself exist before counting
    before = metric_lines(metered_api)
    for i in range(INVENTED_METHODS):
        answer = session.request(f"M{i}X", f"{metered_api}/healthz", timeout=10)
        assert answer.status_code == 405
    after = metric_lines(metered_api)
    assert len(after) - len(before) <= MAX_NEW_LINES, (
        f"{INVENTED_METHODS} invented methods added {len(after) - len(before)} lines, e.g. "
        f"{sorted(set(after) - set(before))[:3]}")
    methods = {line.split('method="')[1].split('"')[0] for line in after if 'method="' in line}
    assert methods <= {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other"}
    counted = sum(float(line.rsplit(" ", 1)[1]) for line in after
                  if line.startswith("visionq_http_requests_total{") and 'method="other"' in line
                  and 'status="405"' in line)
    assert counted == INVENTED_METHODS, "every request is still counted, under other"


def test_unknown_paths_share_one_route(metered_api: str) -> None:
    for i in range(50):
        assert requests.get(f"{metered_api}/nowhere/{i}", timeout=10).status_code == 404
    routes = {line.split('route="')[1].split('"')[0]
              for line in metric_lines(metered_api) if 'route="' in line}
    assert not any(route.startswith("/nowhere") for route in routes)
    assert all(route.startswith("/") or route == "other" for route in routes), routes
