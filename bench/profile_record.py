"""``python -m bench profile``: py-spy flame graphs (SVG) and collapsed stacks of the stack
under load, with CPU-ms and Redis commands per job from /proc and ``INFO`` in the same
phases; one throw-away stack per ``--scenarios`` entry.  Writes ``<out-dir>/<scenario>.json``,
``<scenario>_<process>.txt`` and ``.svg`` (default ``bench/results/raw/profiles``, not
committed).  Scenarios, phases and caveats: docs/performance.md#profiling.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import redis

from bench.harness.common import FIXTURES, RAW, TASK_IMAGES, load_average, machine_facts, say
from bench.harness.loadgen import DEEPSTACK_PATHS, Bodies, Call, jobs_call, post_call, run_point
from bench.harness.procstat import tree_cpu_s
from bench.harness.redis_stats import RedisStats
from bench.harness.stack import HUGE_BACKLOG, VisionqStack

SUBMIT_IMAGE = FIXTURES / "detect" / "images" / "000000000061.jpg"
"""99.5 KB, 640x480: the "~100 KB JPEG" of issue 14."""
PHASES = ("idle", "plain", "raw", "svg")
IDLE_S = 10.0
"""Length of the idle phase (the stack's background CPU per second)."""


def _submit_load(url: str) -> Call:
    return post_call(url, "/v1/jobs?task=classify", Bodies.of([SUBMIT_IMAGE]), 202)


SCENARIOS: dict[str, tuple[str, int | None, str, dict[str, str], Callable[[str], Call]]] = {
    "api_submit": ("classify", 0, "submit_rate", {"api": "api"}, _submit_load),
    "worker_classify": ("classify", None, "classify_rate",
                        {"worker": "worker-classify", "api": "api"},
                        lambda url: jobs_call(url, "classify", Bodies.of(TASK_IMAGES["classify"]))),
    "deepstack_detect": ("detect", 1, "detect_rate", {"api": "api", "worker": "worker-detect"},
                         lambda url: post_call(url, DEEPSTACK_PATHS["detect"],
                                               Bodies.of(TASK_IMAGES["detect"]))),
    "deepstack_classify": ("classify", None, "classify_rate",
                           {"api": "api", "worker": "worker-classify"},
                           lambda url: post_call(url, DEEPSTACK_PATHS["classify"],
                                                 Bodies.of(TASK_IMAGES["classify"]))),
}
"""name: (task, worker concurrency (0: no worker, None: one per core), rate option,
processes to profile {what: service}, the load's call for a stack URL)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated, of {', '.join(SCENARIOS)}")
    parser.add_argument("--duration", type=float, default=20, help="seconds per phase")
    parser.add_argument("--submit-rate", type=float, default=150,
                        help="POST /v1/jobs per second (api_submit)")
    parser.add_argument("--classify-rate", type=float, default=25,
                        help="classify jobs per second (worker_classify)")
    parser.add_argument("--detect-rate", type=float, default=2,
                        help="DeepStack detections per second (deepstack_detect)")
    parser.add_argument("--hz", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--gil", action="store_true",
                        help="sample only threads holding the GIL (py-spy --gil): Python's "
                        "CPU by function, without threads that only wait")
    parser.add_argument("--out-dir", default=str(RAW / "profiles"))


def find_py_spy() -> str:
    """py-spy next to this Python, else on PATH."""
    found = shutil.which("py-spy", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                         os.environ.get("PATH", "")]))
    if not found:
        raise SystemExit("py-spy not found: uv pip install --python .venv/bin/python py-spy")
    return found


def py_spy_record(py_spy: str, pid: int, out: Path, fmt: str, duration_s: float,
                  args: argparse.Namespace) -> subprocess.Popen:
    """py-spy attached to the process tree of ``pid`` for ``duration_s``."""
    return subprocess.Popen(
        [py_spy, "record", "--pid", str(pid), "--subprocesses", "--rate", str(args.hz),
         "--duration", str(max(1, round(duration_s))), "--format", fmt, "-o", str(out),
         *(["--gil"] if args.gil else [])],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def py_spy_result(process: subprocess.Popen) -> str:
    """py-spy's sample count and errors, once it has finished."""
    try:
        output, _ = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    lines = [line for line in output.splitlines() if "Samples" in line or "rror" in line]
    return " | ".join(lines)[-500:]


def _connections(client: redis.Redis) -> int:
    return int(client.info("stats")["total_connections_received"])


def _phase(phase: str, call: Call | None, rate: float, duration_s: float,
           groups: dict[str, int], profilers: dict[str, subprocess.Popen],
           client: redis.Redis) -> dict[str, Any]:
    load0 = load_average()
    stats = RedisStats(client)
    redis0, connections0 = stats.snapshot(), _connections(client)
    if profilers:
        time.sleep(0.5)  # attach
    cpu0 = {name: tree_cpu_s([pid]) for name, pid in groups.items()}
    started = time.monotonic()
    summary: dict[str, Any] = {}
    if call is None:
        time.sleep(duration_s)
    else:
        summary, _ = run_point(call, rate, duration_s, 10.0, 10.0, int(rate * duration_s * 2)
                               + 10, label=f"{phase}")
    wall = time.monotonic() - started
    cpu = {name: round(tree_cpu_s([pid]) - cpu0[name], 3) for name, pid in groups.items()}
    commands = stats.delta(redis0, stats.snapshot(), exclude=("info", "flushdb"))["by_command"]
    commands["connections_received"] = _connections(client) - connections0
    jobs = summary.get("ok", 0)
    record = {"phase": phase, "wall_s": round(wall, 2), "jobs": jobs, "cpu_s": cpu,
              "load_average_start": load0, "load_average_end": load_average(),
              "cpu_ms_per_job": {name: round(v * 1000 / jobs, 2) for name, v in cpu.items()}
              if jobs else None,
              "cpu_ms_per_s": {name: round(v * 1000 / wall, 1) for name, v in cpu.items()},
              "redis_per_job": {name: round(n / jobs, 2) for name, n in
                                sorted(commands.items(), key=lambda kv: -kv[1])
                                if n > 0 and jobs}}
    if summary:
        record["load"] = {k: summary[k] for k in ("offered_rps", "throughput_rps", "latency",
                                                  "errors")}
    if profilers:
        record["py_spy"] = {name: py_spy_result(p) for name, p in profilers.items()}
    say(f"{phase}: {jobs} jobs in {wall:.1f} s, CPU-ms/job "
        f"{record['cpu_ms_per_job']}, CPU-ms/s {record['cpu_ms_per_s']}")
    return record


def run_scenario(name: str, args: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    if name not in SCENARIOS:
        raise SystemExit(f"unknown scenario {name!r}; one of {', '.join(SCENARIOS)}")
    task, concurrency, rate_option, targets, load = SCENARIOS[name]
    rate = getattr(args, rate_option)
    py_spy = find_py_spy()
    flush = concurrency == 0  # no worker: jobs pile up, so Redis is emptied between phases
    env = {f"VISIONQ_MAX_BACKLOG_{t.upper()}": str(HUGE_BACKLOG)
           for t in ("face", "detect", "classify")} if flush else {}
    result: dict[str, Any] = {
        "scenario": name, "rate": rate, "duration_s": args.duration, "hz": args.hz,
        "image": SUBMIT_IMAGE.name if flush else f"{task} fixtures", "phases": {}}
    with VisionqStack([task], worker_concurrency=concurrency or None, env=env,
                      workers=not flush) as stack:
        result["setup"] = stack.describe()
        pids = stack.pids()
        groups = {key: pid for key, pid in pids.items()
                  if key in ("api", "redis") or key.startswith("worker-")}
        call = load(stack.url)
        client = redis.Redis.from_url(stack.redis_url)
        say(f"{name}: warm-up")
        run_point(call, min(rate, 5), 4, 10.0, 10.0, 100, label="warm-up")
        time.sleep(2)
        for phase in PHASES:
            if flush:
                client.flushdb()
            profilers = {}
            if phase in ("raw", "svg"):
                ext, fmt = ("txt", "raw") if phase == "raw" else ("svg", "flamegraph")
                profilers = {f"{name}_{what}.{ext}": py_spy_record(
                    py_spy, pids[service], out_dir / f"{name}_{what}.{ext}", fmt,
                    args.duration + 0.5, args) for what, service in targets.items()}
            length = min(args.duration, IDLE_S) if phase == "idle" else args.duration
            result["phases"][phase] = _phase(phase, None if phase == "idle" else call,
                                             rate, length, groups, profilers, client)
            time.sleep(2)
        result["collapsed"] = {what: f"{name}_{what}.txt" for what in targets}
    return result


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    out_dir = Path(args.out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    facts = machine_facts()
    for name in [s for s in args.scenarios.split(",") if s]:
        say(f"scenario {name}, load average {load_average()}")
        result = run_scenario(name, args, out_dir)
        result["machine"] = {**facts, "load_average_end": load_average()}
        result["command"] = "python -m bench " + " ".join(argv)
        path = out_dir / f"{name}.json"
        path.write_text(json.dumps(result, indent=1) + "\n")
        say(f"wrote {path}")
    return 0


if __name__ == "__main__":  # python -m bench.profile_record, as HISTORY.md's commands run it
    from bench.__main__ import main

    sys.exit(main(["profile", *sys.argv[1:]]))
