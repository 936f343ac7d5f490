"""Scale-out: how far one Redis and one API carry visionq as workers are added.

Simulated nodes: worker processes in their own network namespaces (``tests/deploy/netns``,
as the multi-node test builds them), each ``celery -A tasks worker -Q classify --pool
threads`` running ``bench.harness.sleep_model`` — "inference" that sleeps ``--service-ms`` and uses
no CPU — so 50 or 100 workers fit on two cores.  Redis (the embedded valkey binary) and the
API (gunicorn, as ``visionq up`` plans it) run in a "hub" namespace; so does this process,
which generates the load: a closed loop of ``2 × N`` clients (POST ``/v1/jobs`` then
long-poll ``GET /v1/jobs/<id>?wait=``), enough to keep every worker busy.

Per N (total simulated workers): jobs/s against the ideal ``N / service_time``, latency
p50/p99, Redis CPU and Redis commands per job (``INFO commandstats``, so commands run
inside our Lua scripts count too), API CPU per job and worker CPU per job.  The knee is the
first N whose efficiency drops below 0.9; the JSON says which process was busiest there.

    python -m bench scaleout                       # N = 1 5 10 25 50 100, 500 ms jobs
    python -m bench scaleout --workers 1,10 --service-ms 200 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

from bench.harness import plots
from bench.harness.common import (
    REPO,
    Run,
    cores,
    free_port,
    latency_summary,
    ratio,
    say,
    stop_process,
)
from bench.harness.http import HttpError, Target, multipart, request
from bench.harness.procstat import tree_cpu_s
from bench.harness.redis_stats import RedisStats
from bench.harness.stack import LOGS, check_ready, exited, wait_for_workers
from visionq.embedded_redis import server_command, wait_ready

QUEUE = "classify"
CLONE_NEWNET = 0x40000000
HUB_HOST = 1


def enter_namespace(path: str) -> None:
    """Move this (single-threaded) process into the network namespace at ``path``
    (``/var/run/netns/<name>``, or ``/proc/self/ns/net`` saved earlier): everything it starts
    from then on lives there too.  Python 3.11 has no ``os.setns``."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns({path}) failed")
    finally:
        os.close(fd)


def tiny_jpeg() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 90, 60)).save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


class ClosedLoop:
    """``clients`` coroutines, each submitting a job and waiting for its result, again and
    again until ``stop_at``; completions inside ``[measure_from, stop_at]`` are counted."""

    def __init__(self, url: str, clients: int, measure_from: float, stop_at: float) -> None:
        self.target = Target.parse(url)
        self.clients = clients
        self.measure_from, self.stop_at = measure_from, stop_at
        self.body, self.ctype = multipart({"image": tiny_jpeg()})
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}

    async def _one(self) -> None:
        while time.monotonic() < self.stop_at:
            started = time.monotonic()
            try:
                response = await request(self.target, "POST", f"/v1/jobs?task={QUEUE}",
                                         body=self.body,
                                         headers={"Content-Type": self.ctype}, timeout_s=30)
                if response.status != 202:
                    self._error(f"submit_{response.status}")
                    await asyncio.sleep(0.05)
                    continue
                job_id = response.json()["id"]
                while True:
                    response = await request(self.target, "GET", f"/v1/jobs/{job_id}?wait=20",
                                             timeout_s=30)
                    job = response.json()
                    if job.get("status") in ("succeeded", "failed", "revoked"):
                        break
            except (HttpError, OSError, ValueError) as exc:
                self._error(type(exc).__name__)
                continue
            done = time.monotonic()
            if job["status"] != "succeeded":
                self._error(f"job_{job['status']}")
            elif self.measure_from <= done <= self.stop_at:
                self.latencies.append(done - started)

    def _error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    async def run(self) -> None:
        await asyncio.gather(*(self._one() for _ in range(self.clients)))


class Hub:
    """Redis and the API, started in the current namespace (the hub)."""

    def __init__(self, address: str, api_workers: int, api_threads: int, log_dir: Path,
                 appendfsync: str | None) -> None:
        self.address = address
        self.redis_port, self.api_port = free_port(), free_port()
        self.redis_url = f"redis://{address}:{self.redis_port}/0"
        self.api_url = f"http://{address}:{self.api_port}"
        self.api_workers, self.api_threads = api_workers, api_threads
        self.log_dir = log_dir
        self.appendfsync = appendfsync
        self._tmp = tempfile.TemporaryDirectory(prefix="visionq-scaleout-")
        self.redis: Any = None
        self.api: Any = None

    def env(self) -> dict[str, str]:
        return {**os.environ, "REDIS_URL": self.redis_url, "C_FORCE_ROOT": "1",
                "VISIONQ_STATE_DIR": self._tmp.name, "PYTHONUNBUFFERED": "1",
                f"VISIONQ_MAX_BACKLOG_{QUEUE.upper()}": "100000", "VISIONQ_METRICS": "1",
                "PROMETHEUS_MULTIPROC_DIR": self._multiproc()}

    def _multiproc(self, role: str = "api") -> str:
        path = Path(self._tmp.name) / "metrics" / role
        path.mkdir(parents=True, exist_ok=True)
        return str(path)

    def workers_multiproc(self) -> str:
        return self._multiproc("workers")

    def start(self) -> None:
        import subprocess

        self.log_dir.mkdir(parents=True, exist_ok=True)
        command = server_command(self.redis_port, Path(self._tmp.name) / "redis", host="0.0.0.0",
                                 persistent=self.appendfsync is not None)
        command += ["--protected-mode", "no"]
        if self.appendfsync is not None:
            command += ["--appendfsync", self.appendfsync]
        with open(self.log_dir / "redis.log", "wb") as log:
            self.redis = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True)
        wait_ready(self.redis_url, 15, self.redis)
        with open(self.log_dir / "api.log", "wb") as log:
            self.api = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "--workers", str(self.api_workers),
                 "--threads", str(self.api_threads), "--bind", f"0.0.0.0:{self.api_port}",
                 "--backlog", "2048", "--timeout", "60", "api:create_app()"],
                cwd=REPO, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)

    def stop(self) -> None:
        stop_process(self.api, timeout_s=20)
        stop_process(self.redis, timeout_s=20)
        self._tmp.cleanup()


def split(total: int, nodes: int) -> list[int]:
    """``total`` worker threads over at most ``nodes`` processes, as evenly as possible."""
    nodes = max(1, min(nodes, total))
    base, extra = divmod(total, nodes)
    return [base + (1 if i < extra else 0) for i in range(nodes)]


def measure_point(fabric: Any, hub: Hub, total: int, args: argparse.Namespace,
                  label: str) -> dict[str, Any]:
    """Start ``total`` simulated workers on up to ``args.nodes`` nodes, drive them, stop."""
    env = {**hub.env(), "PROMETHEUS_MULTIPROC_DIR": hub.workers_multiproc(),
           "VISIONQ_MODEL_CLASSIFY": "bench.harness.sleep_model:SleepModel",
           "SLEEP_MODEL_MS": str(args.service_ms), "VISIONQ_TASK_EVENTS": "0"}
    processes, hostnames = [], set()
    for index, threads in enumerate(split(total, args.nodes)):
        node = fabric.nodes[f"n{index}"]
        hostname = f"{QUEUE}-{label}-{index}@{node.name}"
        hostnames.add(hostname)
        processes.append(fabric.spawn(node, f"{label}-worker-{index}", [
            sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", QUEUE, "--pool",
            "threads", "-c", str(threads), "-n", hostname, "--without-mingle",
            "--without-gossip", "--loglevel", "WARNING"], env, REPO))
    client = redis.Redis.from_url(hub.redis_url)
    try:
        wait_for_workers(client, QUEUE, hostnames)
        stats = RedisStats(client)
        service_s = args.service_ms / 1000
        clients = max(4, 2 * total)
        start = time.monotonic()
        measure_from = start + args.warmup
        stop_at = measure_from + args.duration
        loop = ClosedLoop(hub.api_url, clients, measure_from, stop_at)

        async def drive() -> tuple[Any, float, float, float, float]:
            task = asyncio.ensure_future(loop.run())
            await asyncio.sleep(max(0.0, measure_from - time.monotonic()))
            before = (stats.snapshot(), tree_cpu_s([hub.api.pid]),
                      tree_cpu_s([p.pid for p in processes]), time.process_time())
            await asyncio.sleep(max(0.0, stop_at - time.monotonic()))
            after = (stats.snapshot(), tree_cpu_s([hub.api.pid]),
                     tree_cpu_s([p.pid for p in processes]), time.process_time())
            await task
            return before, after

        before, after = asyncio.run(drive())
        completed = len(loop.latencies)
        jobs_s = completed / args.duration
        ideal = total / service_s
        redis_delta = stats.delta(before[0], after[0])
        point = {
            "workers": total, "nodes": len(processes), "clients": clients,
            "completed": completed, "jobs_s": round(jobs_s, 1), "ideal_jobs_s": round(ideal, 1),
            "efficiency": ratio(jobs_s, ideal),
            "latency_ms": latency_summary(loop.latencies),
            "errors": loop.errors,
            "redis_cpu_fraction": round(redis_delta["cpu_s"] / args.duration, 3),
            "redis_cpu_us_per_job": _per_job(redis_delta["cpu_s"] * 1e6, completed),
            "redis_commands_per_job": _per_job(redis_delta["commands"], completed),
            "redis_commands_by_name_per_job": {
                name: _per_job(calls, completed)
                for name, calls in sorted(redis_delta["by_command"].items(),
                                          key=lambda kv: -kv[1]) if calls},
            "api_cpu_ms_per_job": _per_job((after[1] - before[1]) * 1000, completed),
            "api_cpu_fraction": round((after[1] - before[1]) / args.duration, 3),
            "worker_cpu_ms_per_job": _per_job((after[2] - before[2]) * 1000, completed),
            "loadgen_cpu_ms_per_job": _per_job((after[3] - before[3]) * 1000, completed),
        }
        say(f"N={total}: {point['jobs_s']} jobs/s of ideal {point['ideal_jobs_s']} "
            f"(efficiency {point['efficiency']}), p99 {point['latency_ms'].get('p99_ms')} ms, "
            f"API {point['api_cpu_ms_per_job']} CPU-ms/job, Redis "
            f"{point['redis_commands_per_job']} commands/job")
        return point
    finally:
        for process in processes:
            stop_process(process, timeout_s=20)
        client.flushdb()


def _per_job(value: float, jobs: int) -> float | None:
    return round(value / jobs, 2) if jobs else None


def knee(points: list[dict[str, Any]], threshold: float = 0.9) -> dict[str, Any] | None:
    """The first point below ``threshold`` of ideal, with what was busiest there."""
    for point in points:
        if (point["efficiency"] or 0) < threshold:
            busiest = max(("api", point["api_cpu_fraction"]),
                          ("redis", point["redis_cpu_fraction"]), key=lambda kv: kv[1])
            return {"workers": point["workers"], "efficiency": point["efficiency"],
                    "busiest": busiest[0], "busiest_cpu_fraction": busiest[1],
                    "cores": cores()}
    return None


def plot(run: Run, points: list[dict[str, Any]]) -> None:
    plt = plots.plt

    n = [p["workers"] for p in points]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(n, [p["ideal_jobs_s"] for p in points], "--", color="grey",
            label="ideal N / service time")
    ax.plot(n, [p["jobs_s"] for p in points], "o-", label="measured (end to end, HTTP)")
    ax.set_xlabel("simulated workers N")
    ax.set_ylabel("jobs/s")
    ax.set_title(f"visionq scale-out: {run.data['service_ms']:g} ms jobs, one Redis, one API")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    plots.save(fig, run.plot_path("throughput"), dpi=110)

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot([p["jobs_s"] for p in points], [p["redis_cpu_fraction"] * 100 for p in points],
            "o-", label="Redis")
    ax.plot([p["jobs_s"] for p in points], [p["api_cpu_fraction"] * 100 for p in points],
            "s-", label="API (all gunicorn processes)")
    ax.set_xlabel("jobs/s")
    ax.set_ylabel("CPU % of one core")
    ax.set_title("Redis and API CPU vs throughput")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    plots.save(fig, run.plot_path("cpu"), dpi=110)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", default="1,5,10,25,50,100",
                        help="simulated worker counts N, comma-separated (default: %(default)s)")
    parser.add_argument("--service-ms", type=float, default=500.0,
                        help="the sleep model's service time (default: %(default)s)")
    parser.add_argument("--nodes", type=int, default=5,
                        help="namespaces (= worker processes) the N threads spread over "
                             "(default: %(default)s)")
    parser.add_argument("--duration", type=float, default=20.0,
                        help="measured seconds per N (default: %(default)s)")
    parser.add_argument("--warmup", type=float, default=4.0,
                        help="seconds of load before measuring (default: %(default)s)")
    parser.add_argument("--api-workers", type=int, default=2)
    parser.add_argument("--api-threads", type=int, default=16)
    parser.add_argument("--name", default="scaleout", help="results file name")


def run(args: argparse.Namespace, argv: Sequence[str]) -> None:
    from tests.deploy.netns import Fabric, unavailable_reason

    reason = unavailable_reason()
    if reason:
        raise SystemExit(f"bench scaleout needs network namespaces: {reason}")
    totals = [int(v) for v in args.workers.split(",") if v.strip()]
    bench_run = Run(args.name, argv)
    bench_run.data.update(service_ms=args.service_ms, nodes=args.nodes,
                          duration_s=args.duration, api_workers=args.api_workers,
                          api_threads=args.api_threads, points=[])
    log_dir = LOGS / args.name
    fabric = Fabric(f"vqs{os.getpid() % 10000}", log_dir).open()
    hub_node = fabric.add_node("hub", HUB_HOST)
    for index in range(args.nodes):
        fabric.add_node(f"n{index}", 10 + index)
    hub = Hub(hub_node.address, args.api_workers, args.api_threads, log_dir, None)
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        enter_namespace(f"/var/run/netns/{hub_node.netns}")
        hub.start()
        check_ready(hub.api_url, "/healthz", None, [], 120, exited(hub.api, "API"))
        say(f"hub: Redis {hub.redis_url}, API {hub.api_url}; nodes: {args.nodes}")
        for total in totals:
            bench_run.data["points"].append(
                measure_point(fabric, hub, total, args, f"n{total}"))
        bench_run.data["knee"] = knee(bench_run.data["points"])
        plot(bench_run, bench_run.data["points"])
    finally:
        hub.stop()
        # Back home first: closing the fabric SIGKILLs whatever still runs in its namespaces.
        enter_namespace(f"/proc/self/fd/{home}")
        os.close(home)
        fabric.close()
        bench_run.finish()
