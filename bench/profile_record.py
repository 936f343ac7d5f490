"""``python -m bench.profile_record``: py-spy profiles of the stack under load (issue 14,
step 1): flame graphs, and collapsed stacks with the jobs done while they were recorded.

Scenarios (each starts its own throw-away stack, like every bench):

- ``api_submit``: ``POST /v1/jobs`` of a ~100 KB JPEG, open loop at ``--submit-rate``,
  no worker (as ``bench submit``); profiles the API (gunicorn master + workers).
- ``worker_classify``: the job API (submit + long-poll) at ``--classify-rate`` with a
  classify worker (one prefork child per core); profiles the worker (Celery main process
  and pool children) and the API.
- ``deepstack_detect``: ``/v1/vision/detection`` at ``--detect-rate`` (low load) with one
  detect worker child; profiles the API and the worker.
- ``deepstack_classify``: ``/v1/vision/classify``, one request per image
  (the DeepStack way: submit and wait in one request) at ``--classify-rate`` with a classify
  worker (one prefork child per core); profiles the API and the worker.

Each scenario runs the same load in phases of ``--duration`` s: ``idle`` (no load, at most
10 s: the stack's background CPU), ``plain`` (no profiler: the reference CPU per job), ``raw``
(py-spy ``--format raw``: collapsed stacks, the numbers) and ``svg`` (py-spy
``--format flamegraph``: the pictures).  For every phase it records each process tree's
CPU from /proc (API, worker, Redis), the jobs completed and the load average, so CPU-ms
per job come from the kernel's accounting and py-spy only says how they split.

py-spy samples only threads that are running or runnable (no ``--idle``), at ``--hz``
per second, with ``--subprocesses`` (gunicorn workers, prefork children: each stack's
root frame is ``process <pid>:"<command line>"``).  py-spy must be installed
(``uv pip install --python .venv/bin/python py-spy``) and may need root (ptrace).

Writes ``<out-dir>/<scenario>.json`` (phases), ``<scenario>_<process>.txt`` (collapsed)
and ``<scenario>_<process>.svg``, by default under ``bench/results/raw/profiles`` (not
committed).  The stage analysis of issue 14 (``bench.profile_stages``, ``bench.stage_costs``)
is in git history before issue 27 (``git show 8b2ae5f:bench/profile_stages.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

from bench.harness.common import FIXTURES, RAW, TASK_IMAGES, load_average, machine_facts, say
from bench.harness.loadgen import DEEPSTACK_PATHS, Bodies, Call, jobs_call, post_call, run_point
from bench.harness.procstat import tree_cpu_s
from bench.harness.stack import HUGE_BACKLOG, VisionqStack

SCENARIOS = ("api_submit", "worker_classify", "deepstack_detect", "deepstack_classify")
SUBMIT_IMAGE = FIXTURES / "detect" / "images" / "000000000061.jpg"
"""99.5 KB, 640x480: the "~100 KB JPEG" of the issue."""
PHASES = ("idle", "plain", "raw", "svg")
IDLE_S = 10.0
"""Length of the idle phase (the stack's background CPU per second)."""
DEFAULT_OUT = RAW / "profiles"


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
    parser.add_argument("--py-spy", default="", help="py-spy executable (default: next to "
                        "this Python, else on PATH)")
    parser.add_argument("--nice", type=int, default=0,
                        help="renice the stack's processes (e.g. -10) so that other users' "
                             "CPU hogs delay their wake-ups less; py-spy counts a runnable "
                             "thread waiting for a core as busy, which inflates the stages "
                             "that wake up most (Redis replies).  0: leave as is")
    parser.add_argument("--out-dir", default=str(DEFAULT_OUT))


def find_py_spy(explicit: str = "") -> str:
    candidates = [explicit] if explicit else [str(Path(sys.executable).parent / "py-spy"),
                                              shutil.which("py-spy") or ""]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return candidate
    raise SystemExit("py-spy not found: uv pip install --python .venv/bin/python py-spy")


class Profiler:
    """py-spy attached to one process tree for a fixed duration."""

    def __init__(self, py_spy: str, pid: int, out: Path, fmt: str, duration_s: float,
                 hz: int, gil: bool = False) -> None:
        self.out = out
        self.command = [py_spy, "record", "--pid", str(pid), "--subprocesses",
                        "--rate", str(hz), "--duration", str(max(1, round(duration_s))),
                        "--format", fmt, "-o", str(out), *(["--gil"] if gil else [])]
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)

    def wait(self) -> str:
        assert self.process is not None
        try:
            output, _ = self.process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
        lines = [line for line in output.splitlines() if "Samples" in line or "rror" in line]
        return " | ".join(lines)[-500:]


def _plan(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Stack, load and which processes to profile, per scenario."""
    if name == "api_submit":
        env = {f"VISIONQ_MAX_BACKLOG_{t.upper()}": str(HUGE_BACKLOG)
               for t in ("face", "detect", "classify")}
        return {"stack": VisionqStack(["classify"], env=env, workers=False),
                "rate": args.submit_rate, "targets": {"api": "api"},
                "load": lambda url: post_call(url, "/v1/jobs?task=classify",
                                              Bodies.of([SUBMIT_IMAGE]), 202),
                "image": SUBMIT_IMAGE.name, "flush": True}
    if name == "worker_classify":
        return {"stack": VisionqStack(["classify"]), "rate": args.classify_rate,
                "targets": {"worker": "worker-classify", "api": "api"},
                "load": lambda url: jobs_call(url, "classify",
                                              Bodies.of(TASK_IMAGES["classify"])),
                "image": "classify fixtures", "flush": False}
    if name == "deepstack_detect":
        return {"stack": VisionqStack(["detect"], worker_concurrency=1),
                "rate": args.detect_rate, "targets": {"api": "api", "worker": "worker-detect"},
                "load": lambda url: post_call(url, DEEPSTACK_PATHS["detect"],
                                              Bodies.of(TASK_IMAGES["detect"])),
                "image": "detect fixtures", "flush": False}
    if name == "deepstack_classify":
        return {"stack": VisionqStack(["classify"]), "rate": args.classify_rate,
                "targets": {"api": "api", "worker": "worker-classify"},
                "load": lambda url: post_call(url, DEEPSTACK_PATHS["classify"],
                                              Bodies.of(TASK_IMAGES["classify"])),
                "image": "classify fixtures", "flush": False}
    raise SystemExit(f"unknown scenario {name!r}; one of {', '.join(SCENARIOS)}")


def redis_counters(client: redis.Redis) -> dict[str, float]:
    """Commands by name (``INFO commandstats``) and connections accepted, so far."""
    counters: dict[str, float] = {}
    for name, stats in client.info("commandstats").items():
        counters[name.removeprefix("cmdstat_")] = float(stats["calls"])
    counters["connections_received"] = float(client.info("stats")["total_connections_received"])
    return counters


def _per_job(before: dict[str, float], after: dict[str, float], jobs: int) -> dict[str, float]:
    """Redis commands (and connections) per completed job during a phase; the phase's own
    bookkeeping (INFO, FLUSHDB) is left out."""
    per_job = {}
    for name, value in after.items():
        delta = value - before.get(name, 0.0)
        if delta > 0 and name not in ("info", "flushdb") and jobs:
            per_job[name] = round(delta / jobs, 2)
    return dict(sorted(per_job.items(), key=lambda item: -item[1]))


def renice(roots: Sequence[int], niceness: int) -> int:
    """Set ``niceness`` on every process (and thread) of the trees under ``roots``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    todo, done = list(roots), 0
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                os.setpriority(os.PRIO_PROCESS, int(task.name), niceness)
            done += 1
        except OSError:
            continue
    return done


def _cpu(groups: dict[str, int]) -> dict[str, float]:
    return {name: tree_cpu_s([pid]) for name, pid in groups.items()}


def _phase(phase: str, call: Call | None, rate: float, duration_s: float,
           groups: dict[str, int], profilers: Sequence[Profiler],
           client: redis.Redis) -> dict[str, Any]:
    load0 = load_average()
    counters0 = redis_counters(client)
    for profiler in profilers:
        profiler.start()
    if profilers:
        time.sleep(0.5)  # attach
    cpu0, started = _cpu(groups), time.monotonic()
    summary: dict[str, Any] = {}
    if call is None:
        time.sleep(duration_s)
    else:
        summary, _ = run_point(call, rate, duration_s, 10.0, 10.0, int(rate * duration_s * 2)
                               + 10, label=f"{phase}")
    wall = time.monotonic() - started
    cpu = {name: round(used - cpu0[name], 3) for name, used in _cpu(groups).items()}
    counters1 = redis_counters(client)
    py_spy = {p.out.name: p.wait() for p in profilers}
    jobs = summary.get("ok", 0)
    record = {"phase": phase, "wall_s": round(wall, 2), "jobs": jobs, "cpu_s": cpu,
              "load_average_start": load0, "load_average_end": load_average(),
              "cpu_ms_per_job": {name: round(v * 1000 / jobs, 2) for name, v in cpu.items()}
              if jobs else None,
              "cpu_ms_per_s": {name: round(v * 1000 / wall, 1) for name, v in cpu.items()}}
    record["redis_per_job"] = _per_job(counters0, counters1, jobs)
    if summary:
        record["load"] = {k: summary[k] for k in ("offered_rps", "throughput_rps", "latency",
                                                  "errors")}
    if py_spy:
        record["py_spy"] = py_spy
    say(f"{phase}: {jobs} jobs in {wall:.1f} s, CPU-ms/job "
        f"{record['cpu_ms_per_job']}, CPU-ms/s {record['cpu_ms_per_s']}")
    return record


def run_scenario(name: str, args: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    plan = _plan(name, args)
    py_spy = find_py_spy(args.py_spy)
    result: dict[str, Any] = {"scenario": name, "rate": plan["rate"], "image": plan["image"],
                              "duration_s": args.duration, "hz": args.hz, "phases": {}}
    with plan["stack"] as stack:
        result["setup"] = stack.describe()
        pids = stack.pids()
        groups = {"api": pids["api"], "redis": pids["redis"]}
        groups.update({key: pids[key] for key in pids if key.startswith("worker-")})
        if args.nice:
            count = renice(list(groups.values()), args.nice)
            say(f"{name}: reniced {count} processes to {args.nice}")
            result["nice"] = args.nice
        call = plan["load"](stack.url)
        client = redis.Redis.from_url(stack.redis_url)
        say(f"{name}: warm-up")
        run_point(call, min(plan["rate"], 5), 4, 10.0, 10.0, 100, label="warm-up")
        time.sleep(2)
        for phase in PHASES:
            if plan["flush"]:
                client.flushdb()
            profilers = []
            if phase in ("raw", "svg"):
                ext = "txt" if phase == "raw" else "svg"
                fmt = "raw" if phase == "raw" else "flamegraph"
                profilers = [Profiler(py_spy, pids[service], out_dir / f"{name}_{what}.{ext}",
                                      fmt, args.duration + 0.5, args.hz, args.gil)
                             for what, service in plan["targets"].items()]
            length = min(args.duration, IDLE_S) if phase == "idle" else args.duration
            result["phases"][phase] = _phase(phase, None if phase == "idle" else call,
                                             plan["rate"], length, groups, profilers, client)
            time.sleep(2)
        result["collapsed"] = {what: f"{name}_{what}.txt" for what in plan["targets"]}
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


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m bench.profile_record",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv), ["profile", *argv])


if __name__ == "__main__":
    sys.exit(main())
