"""``python -m bench submit``: ``POST /v1/jobs`` accepted per second and their latency, open
loop over loopback, no worker consuming (backlog limit out of the way, Redis flushed between
points to bound its memory).  Goal (issue 9): >= 1,500 accepted jobs/s, p99 < 50 ms.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

from bench.harness import plots
from bench.harness.common import FIXTURES, Run, cores
from bench.harness.loadgen import Bodies, post_call, sweep
from bench.harness.stack import HUGE_BACKLOG, VisionqStack

DEFAULT_IMAGE = FIXTURES / "faces" / "obama_small.jpg"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rates", default="200,400,800,1200,1600",
                        help="offered rates (requests/s)")
    parser.add_argument("--duration", type=float, default=10, help="seconds per point")
    parser.add_argument("--task", default="classify")
    parser.add_argument("--image", default=str(DEFAULT_IMAGE))
    parser.add_argument("--slo-ms", type=float, default=50)
    parser.add_argument("--api-workers", type=int, default=2)
    parser.add_argument("--api-threads", type=int, default=16)
    parser.add_argument("--name", default="submit")


def run(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    results = Run(args.name, argv)
    rates = [float(r) for r in args.rates.split(",")]
    env = {f"VISIONQ_MAX_BACKLOG_{t.upper()}": str(HUGE_BACKLOG)
           for t in ("face", "detect", "classify")}
    with VisionqStack([args.task], api_workers=args.api_workers, api_threads=args.api_threads,
                      env=env, workers=False) as stack:
        image = Path(args.image)
        call = post_call(stack.url, f"/v1/jobs?task={args.task}", Bodies.of([image]), 202)
        client = redis.Redis.from_url(stack.redis_url)
        points, latencies = sweep(call, rates, args.duration, args.slo_ms / 1000, 5.0,
                                  int(max(rates) * args.duration * 1.5), "submit",
                                  lambda: client.flushdb())
        setup = stack.describe()
    best = max(points, key=lambda p: p["throughput_rps"])
    meeting = [p for p in points if (p["latency"]["p99_ms"] or 1e9) < args.slo_ms
               and not p["errors"]]
    results.data.update({
        "task": args.task, "image": Path(args.image).name,
        "image_bytes": Path(args.image).stat().st_size, "setup": setup, "points": points,
        "best_accepted_per_s": best["throughput_rps"],
        "best_rate_with_p99_under_slo": max((p["throughput_rps"] for p in meeting), default=None),
        "goal": {"accepted_per_s": 1500, "p99_ms": 50}})
    plots.goodput_curve(results.plot_path("goodput"), {"POST /v1/jobs": points},
                        f"submit: accepted jobs/s vs offered, {cores()} cores", None,
                        args.slo_ms)
    plots.latency_cdf(results.plot_path("cdf"), {f"@{r:g}/s": latencies[r] for r in rates},
                      "submit: latency CDF", args.slo_ms)
    results.finish()
    return results.data
