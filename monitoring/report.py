"""``visionq report``: PNG charts for people who would rather look than query.

From Prometheus (``--prometheus URL``, its HTTP ``query_range`` API) it draws the
dashboard's own panels (``monitoring.dashboard.PANELS``, so the charts and Grafana can
never disagree): latency p50/p95/p99 per stage, goodput (ratio, and within-SLO vs
completed rates), queue length and in flight, plus an overview of all of them and any
``--query TITLE=PROMQL`` of your own.  From a bench results file (``--from-bench``) it draws
whatever series and percentiles the JSON holds, without knowing its layout in advance.

An empty panel is drawn as "no data" and explained (a metric Prometheus has never seen,
with the closest name it has; a metric without samples in the range; a rate window too
short), never a traceback: exit 0 when the charts have data, 1 when they have none or a
``--query`` returned nothing, 2 when Prometheus cannot be asked at all.
"""

from __future__ import annotations

import argparse
import difflib
import math
import re
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from monitoring.dashboard import PANELS, RATE, Panel, Target
from monitoring.report_bench import from_bench
from monitoring.report_common import DPI, ReportError, pyplot, say
from monitoring.settings import PROMETHEUS_PORT, parse_duration

DEFAULT_PROMETHEUS = f"http://127.0.0.1:{PROMETHEUS_PORT}"
POINTS = 240
"""Points per series when ``--step`` is not given: fine enough for a 900 px wide chart."""
DEFAULT_SCRAPE_S = 15.0
"""Prometheus' default scrape interval, for the rate window when its config says nothing."""
QUANTILE_STYLES = ("-", "--", ":", "-.")


# -- Prometheus ---------------------------------------------------------------------------

@dataclass
class Series:
    label: str
    times: list[float]
    values: list[float]

    @property
    def finite(self) -> bool:
        return any(math.isfinite(v) for v in self.values)


@dataclass
class PanelData:
    panel: Panel
    series: list[Series] = field(default_factory=list)
    styles: list[str] = field(default_factory=list)
    """Line style per series: one per target (p50 solid, p95 dashed...)."""
    problem: str = ""

    @property
    def has_data(self) -> bool:
        return any(s.finite for s in self.series)


class Prometheus:
    def __init__(self, url: str, timeout_s: float = 30) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._names: set[str] | None = None

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        try:
            response = requests.get(f"{self.url}{path}", params=params, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise ReportError(f"cannot reach Prometheus at {self.url} ({type(exc).__name__}); "
                              "is it running? (`visionq up` starts it when installed; or "
                              "pass --prometheus URL)") from exc
        try:
            body = response.json()
        except ValueError as exc:
            raise ReportError(f"{self.url}{path} answered HTTP {response.status_code} with "
                              "something that is not Prometheus' JSON; is --prometheus the "
                              "Prometheus server?") from exc
        if body.get("status") != "success":
            raise ReportError(f"Prometheus rejected {params.get('query', path)!r}: "
                              f"{body.get('errorType', '')}: {body.get('error', body)}")
        return body["data"]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict]:
        data = self._get("/api/v1/query_range",
                         {"query": expr, "start": start, "end": end, "step": step})
        return data.get("result", [])

    def names(self) -> set[str]:
        if self._names is None:
            self._names = set(self._get("/api/v1/label/__name__/values", {}))
        return self._names

    def scrape_interval(self) -> float | None:
        """The global scrape interval of Prometheus' loaded config, if it says."""
        try:
            config = self._get("/api/v1/status/config", {}).get("yaml", "")
            match = re.search(r"^\s*scrape_interval:\s*(\S+)", config, re.MULTILINE)
            return duration(match.group(1)) if match else None
        except (ReportError, ValueError, AttributeError):
            return None

    def has_samples(self, name: str, start: float, end: float) -> bool:
        return bool(self._get("/api/v1/series", {"match[]": name, "start": start, "end": end}))


_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
             "unless", "bool", "offset", "inf", "nan"}


def metric_names(expr: str) -> list[str]:
    """Metric names a PromQL expression selects (not functions, labels or keywords)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names: list[str] = []
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        name = match.group(0)
        if text[match.end():].lstrip().startswith("(") or name.lower() in _KEYWORDS:
            continue
        if name not in names:
            names.append(name)
    return names


def diagnose(prom: Prometheus, exprs: Sequence[str], start: float, end: float,
             nan_only: bool) -> str:
    """Why ``exprs`` drew nothing, in terms the user can act on."""
    known = prom.names()
    for expr in exprs:
        for name in metric_names(expr):
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
                hint = f"; did you mean {close[0]}?" if close else \
                    " (is its target scraped? see Status > Targets)"
                return f"Prometheus has no metric named {name}{hint}"
            if not prom.has_samples(name, start, end):
                return (f"{name} has no samples between {_clock(start)} and {_clock(end)}; "
                        "widen --since or move --end")
    if nan_only:
        return "no observations in the range (no jobs ran then?): every point is NaN"
    return ("the metrics have samples but the expression returned nothing; a rate() needs "
            "two samples within --window (try a longer --window or --since)")


def _clock(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _legend(template: str, labels: dict[str, str]) -> str:
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)
    return text.strip() or ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "value"


def fetch(prom: Prometheus, panel: Panel, start: float, end: float, step: float,
          window: str) -> PanelData:
    data = PanelData(panel)
    exprs = [t.expr.replace(RATE, window) for t in panel.targets]
    for index, (target, expr) in enumerate(zip(panel.targets, exprs, strict=True)):
        for result in prom.query_range(expr, start, end, step):
            points = result.get("values", [])
            data.series.append(Series(_legend(target.legend, result.get("metric", {})),
                                      [float(t) for t, _ in points],
                                      [float(v) for _, v in points]))
            data.styles.append(QUANTILE_STYLES[index % len(QUANTILE_STYLES)])
    if not data.has_data:
        data.problem = diagnose(prom, exprs, start, end, nan_only=bool(data.series))
    return data


# -- charts -------------------------------------------------------------------------------

def _panel(title: str) -> Panel:
    found = [p for p in PANELS if p.title.startswith(title)]
    if len(found) != 1:
        raise LookupError(f"no single dashboard panel titled {title!r}")
    return found[0]


@dataclass(frozen=True)
class Chart:
    name: str
    title: str
    panels: tuple[Panel, ...]
    columns: int = 1


def default_charts() -> list[Chart]:
    latency = tuple(_panel(f"Latency: {stage}") for stage in
                    ("end to end", "queue wait", "inference"))
    goodput = (_panel("Goodput ratio"), _panel("Offered vs completed vs goodput"))
    queues = (_panel("Queue length and in flight"), _panel("Oldest waiting job vs SLO"))
    return [
        Chart("overview", "visionq at a glance", (goodput[0], goodput[1], latency[0],
                                                  latency[1], latency[2], queues[0]), 2),
        Chart("latency", "Job latency by stage (p50 solid, p95 dashed, p99 dotted)", latency),
        Chart("goodput", "Goodput: jobs within their SLO", goodput),
        Chart("queues", "Queues", queues),
    ]


def query_chart(spec: str) -> Chart:
    """``--query 'TITLE=PROMQL'`` (or just PROMQL) as a one-panel chart."""
    title, sep, expr = spec.partition("=")
    if not sep or not title.strip() or any(c in title for c in "({[\"'"):
        title, expr = spec, spec  # no title: the "=" belongs to the expression
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40] or "query"
    panel = Panel(title.strip(), (Target(expr.strip(), ""),))
    return Chart(f"query-{slug}", title.strip(), (panel,))


def _scale(unit: str, peak: float) -> tuple[float, str]:
    if unit == "s":
        return (1000.0, "ms") if peak < 1 else (1.0, "s")
    return {"percentunit": (100.0, "%"), "reqps": (1.0, "jobs/s")}.get(unit, (1.0, ""))


def draw_panel(ax: Any, data: PanelData, span: tuple[float, float]) -> None:
    import matplotlib.dates as mdates  # noqa: PLC0415 - optional and heavy (pyplot())

    panel = data.panel
    ax.set_title(panel.title, fontsize=9)
    ax.grid(alpha=0.3)
    if not data.has_data:
        ax.text(0.5, 0.5, "no data\n" + _wrap(data.problem, 60), ha="center", va="center",
                transform=ax.transAxes, fontsize=8, color="grey")
        ax.set_xticks([])
        ax.set_yticks([])
        return
    peak = max((v for s in data.series for v in s.values if math.isfinite(v)), default=0.0)
    factor, unit = _scale(panel.unit, peak)
    colors: dict[str, str] = {}
    for series, style in zip(data.series, data.styles, strict=True):
        # One colour per task/queue, one line style per target (p50/p95/p99...).
        key = re.sub(r" (p\d+|offered|completed|within SLO|waiting|in flight|oldest|SLO)$",
                     "", series.label)
        colors.setdefault(key, f"C{len(colors) % 10}")
        times = [mdates.date2num(_local(t)) for t in series.times]
        ax.plot(times, [v * factor for v in series.values], style, color=colors[key],
                lw=1.4, label=series.label)
    if panel.unit == "percentunit":
        ax.axhline(95, color="red", lw=0.8, ls="--", label="alert < 95 %")
        ax.set_ylim(0, 105)
    else:
        ax.set_ylim(bottom=0)
    ax.set_ylabel(unit, fontsize=8)
    ax.set_xlim(*(mdates.date2num(_local(t)) for t in span))  # every panel, the same range
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6.5, loc="upper left", ncol=max(1, min(3, len(data.series) // 4 + 1)),
              framealpha=0.7)


def _local(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch)


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width))


def render(chart: Chart, data: Sequence[PanelData], path: Path, span: tuple[float, float],
           subtitle: str) -> None:
    plt = pyplot()
    columns = chart.columns
    rows = math.ceil(len(data) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(9 if columns == 1 else 12, 2.6 * rows + 0.6),
                             squeeze=False)
    for ax, panel_data in zip(axes.flat, data, strict=False):
        draw_panel(ax, panel_data, span)
    for ax in list(axes.flat)[len(data):]:
        ax.set_visible(False)
    fig.suptitle(f"{chart.title}\n{subtitle}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


# -- from Prometheus ----------------------------------------------------------------------

_PART = re.compile(r"(\d+(?:\.\d*)?)(ms|s|m|h|d|w)")
_PART_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration(text: str) -> float:
    """Seconds from ``15m``, ``1h30m`` (Prometheus' spelling), ``90`` or ``250ms``."""
    compact = text.replace(" ", "")
    if compact and _PART.sub("", compact) == "" and _PART.search(compact):
        seconds = sum(float(n) * _PART_S[u] for n, u in _PART.findall(compact))
        if seconds <= 0:
            raise ValueError(f"a duration must be positive, got {text!r}")
        return seconds
    return parse_duration(text)


def parse_end(value: str, now: float) -> float:
    """``now``, a Unix timestamp, or a duration meaning that long ago (``1h``)."""
    if value == "now":
        return now
    try:
        number = float(value)
        if number > 1e9:
            return number
    except ValueError:
        pass
    try:
        return now - duration(value)
    except ValueError as exc:
        raise ReportError(f"--end {value!r}: use now, a Unix timestamp or a duration "
                          "ago such as 30m") from exc


def from_prometheus(args: argparse.Namespace, out: Path) -> int:
    try:
        since = duration(args.since)
        step = duration(args.step) if args.step else max(1.0, round(since / POINTS))
        window_s = duration(args.window) if args.window else None
    except ValueError as exc:
        raise ReportError(str(exc)) from exc
    end = parse_end(args.end, time.time())
    start = end - since
    prom = Prometheus(args.prometheus)
    if window_s is None:  # Grafana's $__rate_interval: max(4 scrapes, step + 1 scrape)
        scrape = prom.scrape_interval() or DEFAULT_SCRAPE_S
        window_s = max(4 * scrape, step + scrape)
    window = f"{int(window_s)}s" if window_s == int(window_s) else f"{round(window_s * 1000)}ms"
    charts = [] if args.only_queries else default_charts()
    custom = [query_chart(q) for q in args.query]
    say(f"{prom.url}: {_clock(start)} .. {_clock(end)} (step {step:g} s, rate window {window})")
    cache: dict[tuple[str, ...], PanelData] = {}
    empty_custom = 0
    drawn = 0
    subtitle = f"{_clock(start)} - {_clock(end)}, step {step:g} s, rate window {window}"
    for chart in [*charts, *custom]:
        panels = []
        for panel in chart.panels:
            key = (panel.title, *(t.expr for t in panel.targets))
            if key not in cache:
                cache[key] = fetch(prom, panel, start, end, step, window)
                if not cache[key].has_data:
                    say(f"  no data for {panel.title!r}: {cache[key].problem}")
            panels.append(cache[key])
        path = out / f"{chart.name}.png"
        render(chart, panels, path, (start, end), subtitle)
        with_data = sum(p.has_data for p in panels)
        drawn += with_data
        if chart in custom and not with_data:
            empty_custom += 1
        say(f"wrote {path} ({with_data}/{len(panels)} panels with data)")
    if not drawn:
        say(f"no chart has data between {_clock(start)} and {_clock(end)}: is Prometheus "
            "scraping visionq, and did jobs run then? (try a longer --since)")
        return 1
    return 1 if empty_custom else 0


# -- command line -------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="visionq report", description=__doc__.split("\n\n")[0].split(": ", 1)[1],
        epilog="examples:\n  visionq report --since 30m\n"
               "  visionq report --query 'face p99=histogram_quantile(0.99, sum by (le) "
               "(rate(visionq_job_latency_seconds_bucket{task=\"face\"}[1m])))'\n"
               "  visionq report --from-bench bench/results/submit.json --out /tmp/charts",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prometheus", default=DEFAULT_PROMETHEUS,
                   help="Prometheus base URL (default %(default)s)")
    p.add_argument("--since", default="15m", help="range to chart, ending at --end "
                   "(default %(default)s; 90s, 2h...)")
    p.add_argument("--end", default="now",
                   help="end of the range: now, a Unix timestamp, or a duration ago (1h)")
    p.add_argument("--step", default="", help=f"resolution (default: --since / {POINTS})")
    p.add_argument("--window", default="",
                   help="rate() window (default: like Grafana's $__rate_interval, the "
                        "larger of 4 scrape intervals and step + 1 scrape interval)")
    p.add_argument("--query", action="append", default=[], metavar="TITLE=PROMQL",
                   help="also chart this expression (repeatable)")
    p.add_argument("--only-queries", action="store_true",
                   help="chart only the --query expressions")
    p.add_argument("--from-bench", type=Path, metavar="RESULTS.json",
                   help="chart a bench results file instead of asking Prometheus")
    p.add_argument("--out", type=Path, default=None,
                   help="directory for the PNGs (default: a new temporary directory)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.only_queries and not args.query:
        parser().error("--only-queries needs at least one --query")
    out = args.out or Path(tempfile.mkdtemp(prefix="visionq-report-"))
    out.mkdir(parents=True, exist_ok=True)
    try:
        code = (from_bench(args.from_bench, out) if args.from_bench
                else from_prometheus(args, out))
    except ReportError as exc:
        print(f"visionq report: error: {exc}", file=sys.stderr, flush=True)
        return 2
    say(f"charts in {out}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
