"""``visionq report`` draws its charts from a real Prometheus scraping the live stack (and
from bench results files), and explains an empty chart instead of crashing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from monitoring import report
from tests.conftest import free_port
from tests.monitoring import test_prometheus as shipped
from tests.monitoring.conftest import Stack

prometheus = shipped.prometheus
"""The shipped config on this stack, 1 s scrapes: a Prometheus of this module's own."""
CHARTS = ("overview", "latency", "goodput", "queues")


@pytest.fixture(scope="module")
def prom_url(prometheus: shipped.Prometheus, monitored_stack: Stack) -> str:
    """Waves of real face jobs (one expired per wave: a goodput miss) until every rate the
    charts take has an increase inside the report's rate window (4 s: 4 scrapes), somewhere
    in the last 2 minutes of its 3-minute range.  The check uses a 3 s window: an increase
    between two scrapes less than 3 s apart shows in every 4 s window that ends within a
    second after the later scrape, so on the report's 1 s steps too."""
    shipped.Waves(prometheus, monitored_stack).until_moving(
        lambda sel: f"max_over_time(sum(rate({sel}[3s]))[2m:1s]) > 0")
    return prometheus.url


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
