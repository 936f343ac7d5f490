"""``python -m bench loadgen``: goodput vs offered load (open loop) for visionq and the
classic synchronous design on the same images and models, plus the compute ceiling, in one
run: the ceiling first, then each system alone (start, warm up, sweep the rates, emptying
the queue between points, stop).  Figures: docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

import redis
import requests

from bench.harness import ceiling, plots
from bench.harness.common import TASK_IMAGES, Run, cores, ratio
from bench.harness.loadgen import (
    DEEPSTACK_PATHS,
    Bodies,
    Call,
    jobs_call,
    post_call,
    run_point,
    sweep,
)
from bench.harness.procstat import tree_cpu_s
from bench.harness.stack import SyncBaseline, VisionqStack

SYSTEMS = {"jobs": "visionq job API", "jobs-wait": "visionq job API, ?wait=",
           "deepstack": "visionq DeepStack", "sync": "sync Flask"}
"""--systems: visionq's job API (submit + long-poll; submit with ?wait=), visionq's
DeepStack endpoint, the sync baseline; their labels in plots."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", default="classify", choices=("classify", "detect", "face"))
    parser.add_argument("--rates", default="20,40,60,90,140",
                        help="offered rates (requests/s), comma-separated")
    parser.add_argument("--duration", type=float, default=20, help="seconds per point")
    parser.add_argument("--slo-ms", type=float, default=1000, help="goodput SLO (ms)")
    parser.add_argument("--deadline", type=float, default=10,
                        help="client gives up on a request after this many seconds")
    parser.add_argument("--max-requests", type=int, default=20_000, help="per point")
    parser.add_argument("--systems", default="jobs,sync",
                        help=f"comma-separated, of {', '.join(SYSTEMS)}")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the compute ceiling")
    parser.add_argument("--ceiling-duration", type=float, default=15)
    parser.add_argument("--api-workers", type=int, default=2)
    parser.add_argument("--api-threads", type=int, default=16,
                        help="gunicorn threads per API worker (16 as `visionq up`; 1: sync)")
    parser.add_argument("--worker-concurrency", type=int, default=0,
                        help="Celery prefork children per queue (default: one per core)")
    parser.add_argument("--backlog", type=int, default=0,
                        help="VISIONQ_MAX_BACKLOG_<TASK> for the stack (default: the "
                             "service's default, 1000)")
    parser.add_argument("--name", default="", help="results name (default loadgen_<task>)")


def _rates(text: str) -> list[float]:
    return [float(r) for r in text.split(",") if r.strip()]


def visionq_cooldown(stack: VisionqStack, tasks: Sequence[str]) -> None:
    client = redis.Redis.from_url(stack.redis_url)
    client.delete(*tasks)  # drop the backlog an overloaded point left behind
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # let the jobs already running finish
        counts = client.hgetall("visionq:jobs:counts")
        if sum(int(v) for k, v in counts.items() if k.endswith(b":running")) <= 0:
            break
        time.sleep(0.5)
    time.sleep(1)


def sync_cooldown(baseline: SyncBaseline) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # queued connections are still being served
        started = time.perf_counter()
        with contextlib.suppress(requests.RequestException):
            requests.get(f"{baseline.url}/ready", timeout=5)
            if time.perf_counter() - started < 0.1:
                break
        time.sleep(1)
    time.sleep(1)


def server_cpu(server: SyncBaseline | VisionqStack) -> float:
    """CPU seconds of the system's process trees so far."""
    if isinstance(server, SyncBaseline):
        return tree_cpu_s([server.pid])
    return tree_cpu_s(server.pids().values())


def system_call(system: str, url: str, task: str, bodies: Bodies) -> Call:
    if system == "sync":
        return post_call(url, f"/v1/vision/{task}", bodies)
    if system == "jobs":
        return jobs_call(url, task, bodies)
    if system == "jobs-wait":
        return jobs_call(url, task, bodies, wait_in_submit=True)
    return post_call(url, DEEPSTACK_PATHS[task], bodies)


def run(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    task = args.task
    results = Run(args.name or f"loadgen_{task}", argv)
    rates = _rates(args.rates)
    slo_s = args.slo_ms / 1000
    data = results.data
    data.update({"task": task, "mix": None, "rates": rates, "duration_s": args.duration,
                 "slo_ms": args.slo_ms, "deadline_s": args.deadline,
                 "images": [p.name for p in TASK_IMAGES[task]], "systems": {}})
    if not args.no_ceiling:
        data["ceiling"] = {
            "predict": ceiling.measure(task, TASK_IMAGES[task], args.ceiling_duration),
            "decode+predict": ceiling.measure(task, TASK_IMAGES[task], args.ceiling_duration,
                                              with_decode=True)}
    bodies = Bodies.of(TASK_IMAGES[task])
    cdfs: dict[str, list[float]] = {}
    for system in [s.strip() for s in args.systems.split(",") if s.strip()]:
        label = SYSTEMS[system]
        if system == "sync":
            server: SyncBaseline | VisionqStack = SyncBaseline(task)
            cooldown = partial(sync_cooldown, server)
        else:
            server = VisionqStack([task], worker_concurrency=args.worker_concurrency or None,
                                  api_workers=args.api_workers, api_threads=args.api_threads,
                                  env={f"VISIONQ_MAX_BACKLOG_{t.upper()}": str(args.backlog)
                                       for t in [task] if args.backlog})
            cooldown = partial(visionq_cooldown, server, [task])
        with server:
            call = system_call(system, server.url, task, bodies)
            run_point(call, 2, 3, slo_s, args.deadline, 50, label=f"{label} warm-up")
            points, latencies = sweep(call, rates, args.duration, slo_s, args.deadline,
                                      args.max_requests, label, cooldown,
                                      partial(server_cpu, server))
        data["systems"][system] = {"setup": server.describe(), "points": points}
        for rate in (rates[0], rates[-1]):
            cdfs[f"{label} @{rate:g}/s"] = latencies[rate]
    data["ratios"] = ratios(data)
    ceiling_rate = (data.get("ceiling") or {}).get("predict", {}).get("images_per_s")
    title = f"{task}: goodput vs offered load, {cores()} cores"
    plots.goodput_curve(results.plot_path("goodput"), {
        s: data["systems"][s]["points"] for s in data["systems"]}, title, ceiling_rate,
        args.slo_ms)
    plots.latency_cdf(results.plot_path("cdf"), cdfs, f"{task}: latency CDF", args.slo_ms)
    results.finish()
    return data


def ratios(data: dict[str, Any]) -> dict[str, Any]:
    """visionq / ceiling at saturation (best throughput over the sweep) and visionq /
    synchronous goodput at the highest offered rate (overload) and at every rate."""
    systems = data["systems"]
    out: dict[str, Any] = {}
    ceiling_figures = data.get("ceiling") or {}
    for system in ("jobs", "jobs-wait", "deepstack"):
        if system not in systems:
            continue
        best_point = max(systems[system]["points"], key=lambda p: p["throughput_rps"])
        best = best_point["throughput_rps"]
        out[f"{system}_best_throughput_rps"] = best
        for mode, figure in ceiling_figures.items():
            out[f"{system}_efficiency_vs_{mode}"] = ratio(best, figure["images_per_s"])
            # CPU-based: model CPU per image / whole stack's CPU per image (noise-robust)
            if best_point.get("server_cpu_ms_per_ok") and figure.get("cpu_s_per_image"):
                out[f"{system}_cpu_efficiency_vs_{mode}"] = ratio(
                    figure["cpu_s_per_image"] * 1000, best_point["server_cpu_ms_per_ok"])
        if "sync" in systems:
            mine = systems[system]["points"]
            theirs = systems["sync"]["points"]
            out[f"{system}_vs_sync_goodput_by_rate"] = {
                str(a["rate_set"]): ratio(a["goodput_rps"], b["goodput_rps"])
                for a, b in zip(mine, theirs, strict=False)}
            out[f"{system}_vs_sync_goodput_overload"] = ratio(mine[-1]["goodput_rps"],
                                                              theirs[-1]["goodput_rps"])
    if "sync" in systems:
        out["sync_best_throughput_rps"] = max(p["throughput_rps"]
                                              for p in systems["sync"]["points"])
    return out
