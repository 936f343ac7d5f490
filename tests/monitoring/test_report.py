"""``visionq report`` draws its charts from a real Prometheus scraping the live stack (and
from bench results files), and explains an empty chart instead of crashing."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from monitoring import report
from tests.conftest import free_port
from tests.monitoring import test_prometheus as shipped
from tests.monitoring.conftest import Stack
from tests.monitoring.live import enqueue_expired, scrape, submit, total, wait_final

prometheus = shipped.prometheus
"""The shipped config on this stack, 1 s scrapes: a Prometheus of this module's own."""
CHARTS = ("overview", "latency", "goodput", "queues")


@pytest.fixture(scope="module")
def prom_url(prometheus: shipped.Prometheus, monitored_stack: Stack) -> str:
    """Two waves of real face jobs (one expired: a goodput miss), scraped before, between
    and after, so that rates and quantiles have increases to show."""
    stack = monitored_stack
    _until(lambda: len(prometheus.query("count_over_time(up[1m]) >= 2")["result"]) == 2,
           "Prometheus did not scrape both targets twice")
    for _ in range(2):
        ids = [submit(stack.api_url) for _ in range(3)] + [enqueue_expired(stack.redis_url)]
        for job_id in ids:
            wait_final(stack.api_url, job_id)
        time.sleep(2)
    want = total(scrape(stack.exporter_url), "visionq_jobs_completed_total")

    def scraped() -> bool:
        got = prometheus.query("sum(visionq_jobs_completed_total)")["result"]
        return bool(got) and float(got[0]["value"][1]) >= want

    _until(scraped, "Prometheus did not scrape the jobs")
    return prometheus.url


def _until(condition: Callable[[], bool], failure: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, failure
        time.sleep(0.3)


def assert_png(path: Path) -> None:
    assert path.is_file(), path
    assert 5_000 < path.stat().st_size < 400_000, (path, path.stat().st_size)
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        assert 600 <= width <= 2000 and 300 <= height <= 2000, image.size
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
        assert colours is None or len(colours) > 20, "a blank image"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = report.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_charts_from_prometheus(prom_url: str, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "--prometheus", prom_url, "--since", "3m", "--step", "1s",
                    "--out", str(tmp_path))
    assert code == 0, out
    for name in CHARTS:
        assert_png(tmp_path / f"{name}.png")
    # Every panel of the charts has data: latency of all three stages, goodput, queues.
    for name, panels in (("overview", 6), ("latency", 3), ("goodput", 2), ("queues", 2)):
        assert f"{name}.png ({panels}/{panels} panels with data)" in out, out
    assert "no data" not in out


def test_misspelled_metric_is_explained(prom_url: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "--prometheus", prom_url, "--since", "3m", "--out", str(tmp_path),
                    "--only-queries", "--query",
                    "typo=sum by (task) (rate(visionq_jobs_completd_total[1m]))")
    assert code == 1
    assert ("Prometheus has no metric named visionq_jobs_completd_total; did you mean "
            "visionq_jobs_completed_total?") in out
    assert_png(tmp_path / "query-typo.png")  # drawn, saying "no data" and why
    assert not (tmp_path / "overview.png").exists()


def test_empty_range_is_explained(prom_url: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "--prometheus", prom_url, "--since", "10m", "--end", "2h",
                    "--out", str(tmp_path))
    assert code == 1
    assert "has no samples between" in out and "widen --since" in out
    assert "no chart has data" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["--only-queries", "--query", "rate(visionq_jobs_completed_total[1m]"],
     "Prometheus rejected"),
    (["--since", "soon"], "not a duration"),
    (["--end", "yesterday"], "--end 'yesterday'"),
])
def test_bad_input_is_one_line(prom_url: str, tmp_path: Path, argv: list[str], message: str,
                               capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "--prometheus", prom_url, "--out", str(tmp_path), *argv)
    assert code == 2
    assert message in out and "Traceback" not in out


def test_unreachable_prometheus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "--prometheus", f"http://127.0.0.1:{free_port()}",
                    "--out", str(tmp_path))
    assert code == 2
    assert "cannot reach Prometheus" in out


def test_charts_from_bench_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Shapes the benches write: rows over an x axis in sibling lists, percentile
    summaries, a plain series; unknown fields are ignored."""
    points = [{"rate_set": r, "offered_rps": r, "throughput_rps": r * 0.9,
               "goodput_rps": r * 0.8, "latency": {"p50_ms": 10 + r, "p99_ms": 30 + r},
               "errors": {}} for r in (10, 20, 40)]
    results = {
        "name": "loadgen_face", "machine": {"cores": 2},
        "systems": {"jobs": {"points": points},
                    "sync": {"points": [dict(p, goodput_rps=p["goodput_rps"] / 2)
                                        for p in points]}},
        "latency_single": {"runs": 50, "p50_ms": 15.7, "p90_ms": 18.4, "min_ms": 14.0},
        "queue_length": [0, 3, 9, 4, 1],
    }
    source = tmp_path / "loadgen_face.json"
    source.write_text(json.dumps(results))
    out_dir = tmp_path / "charts"
    code, out = run(capsys, "--from-bench", str(source), "--out", str(out_dir))
    assert code == 0, out
    pngs = sorted(out_dir.glob("*.png"))
    names = [p.name for p in pngs]
    assert len(pngs) == 4, names  # points: percentiles and rates; the series; percentiles
    assert any("systems-points-percentiles" in n for n in names), names
    assert any("systems-points-rates" in n for n in names), names
    for png in pngs:
        assert_png(png)


@pytest.mark.parametrize(("content", "code", "message"), [
    (None, 2, "cannot read"),
    ("{not json", 2, "is not JSON"),
    ('{"name": "x", "note": "nothing numeric"}', 1, "nothing to plot"),
])
def test_bench_results_that_cannot_be_charted(tmp_path: Path, content: str | None, code: int,
                                              message: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "results.json"
    if content is not None:
        source.write_text(content)
    got, out = run(capsys, "--from-bench", str(source), "--out", str(tmp_path / "charts"))
    assert got == code
    assert message in out and "Traceback" not in out
