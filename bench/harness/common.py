"""What every benchmark shares: machine facts, latency statistics, result files, fixtures.

The machine is shared and noisy, so every result records the load average at start and end
and the figures that matter are ratios measured in the same run.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO.parent / "shared" / "fixtures"
RESULTS = Path(os.environ.get("VISIONQ_BENCH_RESULTS") or REPO / "bench" / "results")
"""Where JSON and PNG go; ``VISIONQ_BENCH_RESULTS=/tmp/x`` for a trial run."""
RAW = RESULTS / "raw"
"""Logs, profiler dumps and raw samples: never committed (bench/results/.gitignore)."""
PACKAGES = ("celery", "kombu", "redis", "flask", "gunicorn", "numpy", "pillow", "onnxruntime",
            "ai-edge-litert", "face-recognition", "dlib-bin", "matplotlib", "requests")
TASK_IMAGES = {
    "classify": sorted(p for p in (FIXTURES / "classify").iterdir()
                       if p.suffix in (".jpg", ".png")),
    "detect": sorted((FIXTURES / "detect" / "images").glob("*.jpg")),
    "face": sorted(p for p in (FIXTURES / "faces").glob("*.jpg")),
}
"""The same images for visionq, the ceiling and the synchronous baseline."""


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen | None, sig: int = signal.SIGTERM,
                 timeout_s: float = 30) -> None:
    """Send ``sig`` to the process group of ``process`` (started with
    ``start_new_session=True``), SIGKILL it after ``timeout_s``; nothing if it has exited."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def package_versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found


def machine_facts() -> dict[str, Any]:
    return {"cores": cores(), "cpu_model": cpu_model(), "machine": platform.machine(),
            "kernel": platform.release(), "python": sys.version.split()[0],
            "packages": package_versions(), "load_average_start": load_average()}


class Run:
    """One results file: ``facts`` at start, ``finish()`` adds the end load average and
    writes ``bench/results/<name>.json``; plots go next to it as ``<name>_<what>.png``."""

    def __init__(self, name: str, command: Sequence[str], out_dir: Path = RESULTS) -> None:
        self.name = name
        self.out_dir = out_dir
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.started = time.time()
        self.data: dict[str, Any] = {
            "name": name, "command": "python -m bench " + " ".join(command),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine_facts(),
            "plots": []}

    def plot_path(self, what: str) -> Path:
        path = self.out_dir / f"{self.name}_{what}.png"
        self.data["plots"].append(shown(path))
        return path

    def finish(self) -> Path:
        self.data["machine"]["load_average_end"] = load_average()
        self.data["duration_s"] = round(time.time() - self.started, 1)
        path = self.out_dir / f"{self.name}.json"
        path.write_text(json.dumps(self.data, indent=1, default=_jsonable) + "\n")
        say(f"wrote {shown(path)}")
        return path


def shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values (``q`` in 0..100)."""
    if not sorted_values:
        return None
    rank = max(0, min(len(sorted_values) - 1, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[rank]


def latency_summary(latencies_s: Iterable[float]) -> dict[str, float | None]:
    values = sorted(latencies_s)
    ms = [v * 1000 for v in values]
    return {"p50_ms": _r(percentile(ms, 50)), "p95_ms": _r(percentile(ms, 95)),
            "p99_ms": _r(percentile(ms, 99)), "max_ms": _r(ms[-1] if ms else None),
            "mean_ms": _r(sum(ms) / len(ms) if ms else None)}


def _r(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def until(condition: Callable[[], Any], timeout_s: float = 120, every_s: float = 0.1) -> Any:
    """The first truthy value of ``condition()`` (raising counts as not yet), or None after
    ``timeout_s``: a bench waits on conditions, not on the clock."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if value := condition():
                return value
        time.sleep(every_s)
    return None


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``[x_min, y_min, x_max, y_max]`` boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0.0, w) * max(0.0, h)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 3)
