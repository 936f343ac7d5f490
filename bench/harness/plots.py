"""PNG plots (matplotlib, Agg): goodput vs offered load, latency CDFs, bars."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
from PIL import Image

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend


def save(fig: Any, path: Path, dpi: int = 110) -> None:
    """Write ``fig`` as a 256-colour palette PNG (a third of the size, same look) and close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi)
    plt.close(fig)
    buffer.seek(0)
    Image.open(buffer).convert("RGB").quantize(256).save(path, optimize=True)


def finish(fig: Any, ax: Any, path: Path, title: str, xlabel: str, ylabel: str,
           **grid: Any) -> None:
    """Labels, title, a light grid (``grid``: its options), the legend; then ``save``."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, **grid)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, path)


def goodput_curve(path: Path, series: Mapping[str, Sequence[Mapping[str, Any]]], title: str,
                  ceiling: float | None = None, slo_ms: float | None = None) -> None:
    """Goodput (and throughput, dashed) against offered load, one line per system."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    top = 1.0
    for name, points in series.items():
        offered = [p["offered_rps"] for p in points]
        line = ax.plot(offered, [p["goodput_rps"] for p in points], marker="o",
                       label=f"{name} goodput")[0]
        ax.plot(offered, [p["throughput_rps"] for p in points], ls="--", lw=1,
                color=line.get_color(), label=f"{name} throughput")
        top = max(top, *offered, *(p["throughput_rps"] for p in points))
    ax.plot([0, top], [0, top], color="grey", lw=0.6, ls=":", label="goodput = offered")
    if ceiling:
        ax.axhline(ceiling, color="black", lw=1, label=f"compute ceiling {ceiling:.1f}/s")
    suffix = f" (SLO {slo_ms:g} ms)" if slo_ms else ""
    finish(fig, ax, path, title + suffix, "offered load (requests/s, Poisson)", "requests/s")


def latency_cdf(path: Path, series: Mapping[str, Sequence[float]], title: str,
                slo_ms: float | None = None) -> None:
    """Empirical CDF of successful requests' latency (log x axis), one line per series."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, latencies in series.items():
        if not latencies:
            continue
        ms = sorted(v * 1000 for v in latencies)
        ax.step(ms, [(i + 1) / len(ms) for i in range(len(ms))], where="post", label=name)
    if slo_ms:
        ax.axvline(slo_ms, color="red", lw=0.8, ls="--", label=f"SLO {slo_ms:g} ms")
    ax.set_xscale("log")
    finish(fig, ax, path, title, "latency (ms, from scheduled arrival)",
           "fraction of successful requests", which="both")


def bars(path: Path, groups: Mapping[str, Mapping[str, float]], title: str, ylabel: str,
         log: bool = False, line: tuple[float, str] | None = None) -> None:
    """Grouped bars: ``{group: {series: value}}``; ``line``: (y, label) of a goal line."""
    names = list(dict.fromkeys(s for values in groups.values() for s in values))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    width = 0.8 / max(1, len(names))
    for k, name in enumerate(names):
        xs = [i + k * width for i in range(len(groups))]
        values = [groups[g].get(name, 0) for g in groups]
        drawn = ax.bar(xs, values, width, label=name)
        ax.bar_label(drawn, fmt="%.3g", fontsize=7)
    ax.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(groups))],
                  list(groups))
    if line is not None:
        ax.axhline(line[0], color="grey", ls="--", label=line[1])
    if log:
        ax.set_yscale("log")
    finish(fig, ax, path, title, "", ylabel, axis="y")
