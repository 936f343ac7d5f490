"""``visionq report --from-bench``: charts from a bench results file whose layout is not
known in advance (``bench/results/*.json`` are written by different benchmarks, and new
ones appear).

What is plotted: lists of result rows (one line per percentile or rate key over the x axis
the rows share, e.g. ``offered_rps``, ``batch``, ``round``; sibling lists such as
``systems.jobs.points`` and ``systems.sync.points`` share a chart), lists of numbers
(series over their index) and percentile summaries (``{"p50_ms": .., "p99_ms": ..}``, one
bar group each).  Anything else is ignored rather than guessed at.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitoring.report_common import DPI, ReportError, pyplot, say

X_KEYS = ("t", "time", "time_s", "elapsed_s", "second", "minute", "round", "offered_rps",
          "rate_set", "rate", "concurrency", "batch", "workers", "min_confidence")
"""Candidates for the x axis of a list of result rows, most telling first."""
PERCENTILE_KEY = re.compile(r"(^|_)(p\d{1,2}(\.\d+)?|p99\.9|median)(_|$)|^(mean|min|max)_(ms|s)$")
RATE_KEY = re.compile(r"(^|_)(rps|per_s|per_second|throughput|goodput|ratio)(_|$)")


@dataclass
class BenchChart:
    title: str
    xlabel: str
    ylabel: str
    lines: dict[str, tuple[list[Any], list[float]]]
    categorical: bool = False
    bars: bool = False


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _flatten(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        elif isinstance(value, str | int | float) or value is None:
            flat[name] = value
    return flat


def _walk(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, (*path, str(key)))
    elif isinstance(node, list) and not all(isinstance(v, dict) for v in node):
        for index, value in enumerate(node):
            if isinstance(value, dict | list):
                yield from _walk(value, (*path, str(index)))


def _last(key: str) -> str:
    return key.rpartition(".")[2]


def bench_charts(data: Any, name: str) -> list[BenchChart]:
    """Every plottable thing in a results file: lists of rows (a line per percentile or
    rate over the x axis the rows share), lists of numbers (series over their index) and
    percentile summaries (one bar group each)."""
    tables: dict[tuple, list[tuple[tuple[str, ...], list[dict[str, Any]], list[str]]]] = {}
    numeric_lists: list[tuple[tuple[str, ...], list[float]]] = []
    summaries: dict[str, dict[str, float]] = {}
    for path, node in _walk(data):
        if isinstance(node, list) and len(node) >= 2 and all(isinstance(v, dict) for v in node):
            rows = [_flatten(v) for v in node]
            numeric = [k for k in rows[0] if all(_number(r.get(k)) is not None for r in rows)]
            x = next((k for want in X_KEYS for k in numeric if _last(k) == want), None)
            group = (len(path), path[-1] if path else "", x)
            tables.setdefault(group, []).append((path, rows, numeric))
        elif isinstance(node, list) and len(node) >= 3 and all(
                _number(v) is not None for v in node):
            numeric_lists.append((path, [float(v) for v in node]))
        elif isinstance(node, dict):
            stats = {k: float(v) for k, v in sorted(node.items(), key=_stat_order)
                     if PERCENTILE_KEY.search(k) and _number(v) is not None}
            if len(stats) >= 2:
                summaries[".".join(path) or name] = stats
    charts: list[BenchChart] = []
    for (_, _, x), found in tables.items():
        shared = [k for k in found[0][2] if all(k in other for _, _, other in found)]
        charts.extend(_table_charts([(path, rows) for path, rows, _ in found], x, shared))
    if numeric_lists:
        by_length: dict[int, dict[str, tuple[list[Any], list[float]]]] = {}
        for path, values in numeric_lists:
            by_length.setdefault(len(values), {})[".".join(path)] = (list(range(len(values))),
                                                                     values)
        for length, lines in by_length.items():
            charts.append(BenchChart(f"series of {length} values", "index", "", lines))
    if summaries:
        keys = [k for stats in summaries.values() for k in stats]
        unit = "ms" if all(k.endswith("_ms") for k in keys) else ""
        charts.append(BenchChart("percentiles", "", unit, {
            where: (list(stats), list(stats.values())) for where, stats in summaries.items()},
            categorical=True, bars=True))
    return charts


def _table_charts(members: list[tuple[tuple[str, ...], list[dict[str, Any]]]], x: str | None,
                  numeric: list[str]) -> list[BenchChart]:
    where = ".".join(members[0][0]) or "rows"
    if len(members) > 1:  # e.g. systems.jobs.points + systems.sync.points: one chart
        differing = [i for i in range(len(members[0][0]))
                     if len({m[0][i] for m in members}) > 1]
        where = ".".join("*" if i in differing else part
                         for i, part in enumerate(members[0][0]))
    groups = {
        "percentiles": [k for k in numeric if k != x and PERCENTILE_KEY.search(_last(k))],
        "rates": [k for k in numeric if k != x and RATE_KEY.search(_last(k))
                  and not PERCENTILE_KEY.search(_last(k))],
    }
    charts = []
    for kind, keys in groups.items():
        if not keys:
            continue
        lines: dict[str, tuple[list[Any], list[float]]] = {}
        for path, rows in members:
            prefix = ""
            if len(members) > 1:
                prefix = "/".join(p for i, p in enumerate(path)
                                  if len({m[0][i] for m in members}) > 1) + " "
            xs: list[Any] = [r[x] for r in rows] if x else [_row_label(r, i)
                                                            for i, r in enumerate(rows)]
            for key in keys:
                lines[f"{prefix}{key}"] = (xs, [float(r[key]) for r in rows])
        unit = "ms" if all(k.endswith("_ms") for k in keys) else (
            "s" if all(k.endswith("_s") for k in keys) else "")
        charts.append(BenchChart(f"{where}: {kind}", x or "row", unit, lines,
                                 categorical=x is None))
    return charts


def _stat_order(item: tuple[str, Any]) -> float:
    """min < p50/median < p90 < p99 < max, mean last."""
    key = item[0]
    if key.startswith("min"):
        return -1
    if key.startswith("median"):
        return 50
    if key.startswith("max"):
        return 101
    match = re.search(r"p(\d+(?:\.\d+)?)", key)
    return float(match.group(1)) if match else 102


def _row_label(row: dict[str, Any], index: int) -> str:
    words = [str(v) for k, v in row.items() if isinstance(v, str) and "." not in k][:3]
    return "/".join(words) or str(index)


def draw_bench(chart: BenchChart, path: Path, source: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.6))
    if chart.bars:
        groups = list(chart.lines.items())
        width = 0.8 / max(1, len(groups))
        names = list(dict.fromkeys(k for _, (keys, _) in groups for k in keys))
        for i, (label, (keys, values)) in enumerate(groups):
            xs = [names.index(k) + i * width for k in keys]
            bars = ax.bar(xs, values, width, label=label)
            ax.bar_label(bars, fmt="%.3g", fontsize=6)
        ax.set_xticks([j + width * (len(groups) - 1) / 2 for j in range(len(names))], names,
                      fontsize=7)
    else:
        for label, (xs, ys) in chart.lines.items():
            if chart.categorical:  # rows are not a progression: markers, a faint guide
                ax.plot(range(len(xs)), ys, "o:", lw=0.6, ms=5, label=label)
                ax.set_xticks(range(len(xs)), [str(v) for v in xs], rotation=30, ha="right",
                              fontsize=7)
            else:
                ax.plot(xs, ys, "o-", lw=1.2, ms=3, label=label)
    ax.set_title(f"{chart.title}\n{source}", fontsize=9)
    ax.set_xlabel(chart.xlabel, fontsize=8)
    ax.set_ylabel(chart.ylabel, fontsize=8)
    ax.grid(alpha=0.3)
    if len(chart.lines) <= 14:
        ax.legend(fontsize=6.5, framealpha=0.7)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def from_bench(source: Path, out: Path) -> int:
    try:
        data = json.loads(source.read_text())
    except OSError as exc:
        raise ReportError(f"cannot read {source}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ReportError(f"{source} is not JSON: {exc}") from exc
    charts = bench_charts(data, source.stem)
    if not charts:
        say(f"{source}: nothing to plot (no lists of result rows, series or percentiles)")
        return 1
    say(f"{source}: {len(charts)} chart(s)")
    for index, chart in enumerate(charts, start=1):
        slug = re.sub(r"[^a-z0-9]+", "-", chart.title.lower()).strip("-")[:50]
        path = out / f"{source.stem}-{index:02d}-{slug}.png"
        draw_bench(chart, path, source.name)
        say(f"wrote {path}")
    return 0
