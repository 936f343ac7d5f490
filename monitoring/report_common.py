"""What both sources of ``visionq report`` share (``monitoring.report`` for Prometheus,
``monitoring.report_bench`` for bench results files): the user-facing error, the one-line
progress message and matplotlib, loaded only when a chart is drawn."""

from __future__ import annotations

from typing import Any

DPI = 100


class ReportError(Exception):
    """Something the user must fix (address, range, query, file); printed as one line."""


def say(message: str) -> None:
    print(f"visionq report: {message}", flush=True)


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend.  Imported here, lazily on purpose: matplotlib
    is optional (visionq[bench]) and heavy, and ``visionq report --help`` or a report that
    fails before drawing should not need it."""
    try:
        import matplotlib  # noqa: PLC0415 - optional and heavy: only when drawing
    except ImportError as exc:
        raise ReportError("matplotlib is needed for charts: pip install 'visionq[bench]' "
                          "(or uv pip install matplotlib)") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 - after use("Agg"); optional, heavy

    return plt
