"""``python -m bench broker-ceiling``: what one Redis core costs per job, with no HTTP in the
way: in-process producers admit jobs as the API does, no-op workers consume them through
the real task path, once per Redis persistence mode; the ceiling per Redis core is
``1 / (Redis CPU-s per job)`` from Redis's own counters.  Method and figures:
docs/capacity.md.

    python -m bench broker-ceiling --redis-cpu 1
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

from bench.harness import plots
from bench.harness.common import REPO, Run, free_port, say, stop_process
from bench.harness.procstat import tree_cpu_s
from bench.harness.redis_stats import RedisStats
from bench.harness.stack import LOGS, wait_for_workers
from visionq.embedded_redis import server_command, wait_ready

QUEUE = "classify"
MODES = {"off": None, "everysec": "everysec", "always": "always"}


def _tiny_png() -> bytes:
    """The jobs' image: a 16×16 PNG."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 20, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def produce(redis_url: str, count: int, start_event: Any) -> None:
    """Admit ``count`` jobs as the API's submit path does (one job each): the admit script
    stores the image and the record and pushes the Celery message (``tasks.message``)."""
    from tasks import make_celery
    from tasks.message import celery_message
    from visionq.blobstore import RedisBlobStore
    from visionq.jobs import JobStore
    from visionq.redis_conn import redis_client
    from visionq.settings import Settings

    settings = Settings(redis_url=redis_url)
    celery = make_celery(settings)
    jobs = JobStore(redis_client(redis_url), settings.result_ttl_s, settings.recent_jobs)
    image = _tiny_png()
    start_event.wait()
    for _ in range(count):
        job_id = uuid.uuid4().hex
        jobs.admit(QUEUE, [(job_id, RedisBlobStore.key_for(job_id), image)], {}, queue=QUEUE,
                   backlog_limit=10_000_000, blob_ttl_s=settings.blob_ttl_s,
                   messages=[celery_message(celery, QUEUE, job_id)[1]])


def _finished(client: redis.Redis) -> int:
    from visionq.keys import COUNTS_KEY

    value = client.hget(COUNTS_KEY, f"{QUEUE}:succeeded")
    return int(value or 0)


def measure_mode(mode: str, args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    tmp = tempfile.TemporaryDirectory(prefix="visionq-ceiling-")
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    fsync = MODES[mode]
    command = server_command(port, Path(tmp.name) / "redis", persistent=fsync is not None)
    if fsync is not None:
        command += ["--appendfsync", fsync, "--save", ""]
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "REDIS_URL": url, "C_FORCE_ROOT": "1", "VISIONQ_METRICS": "0",
           "VISIONQ_TASK_EVENTS": "0", "VISIONQ_STATE_DIR": tmp.name,
           "VISIONQ_MODEL_CLASSIFY": "bench.harness.sleep_model:SleepModel", "SLEEP_MODEL_MS": "0"}
    others: list[str] = []
    if args.redis_cpu is not None:  # Redis alone on one core, everything else on the rest
        command = ["taskset", "-c", str(args.redis_cpu), *command]
        rest = sorted(os.sched_getaffinity(0) - {args.redis_cpu})
        others = ["taskset", "-c", ",".join(map(str, rest))] if rest else []
    with open(log_dir / f"redis-{mode}.log", "wb") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    workers: list[subprocess.Popen] = []
    try:
        wait_ready(url, 15, server)
        client = redis.Redis.from_url(url)
        for index in range(args.workers):
            with open(log_dir / f"worker-{mode}-{index}.log", "wb") as log:
                workers.append(subprocess.Popen(
                    [*others, sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", QUEUE,
                     "--pool", "threads", "-c", str(args.threads), "-n",
                     f"ceiling-{mode}-{index}@bench", "--without-mingle", "--without-gossip",
                     "--loglevel", "WARNING"], cwd=REPO, env=env, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True))
        wait_for_workers(client, QUEUE, {f"ceiling-{mode}-{i}@bench"
                                          for i in range(args.workers)})
        stats = RedisStats(client)
        start_event = multiprocessing.Event()
        per = args.jobs // args.producers
        producers = [multiprocessing.Process(target=produce,
                                             args=(url, per, start_event))
                     for _ in range(args.producers)]
        for process in producers:
            process.start()
            if others and process.pid:
                os.sched_setaffinity(process.pid, set(map(int, others[2].split(","))))
        time.sleep(1.0)  # producers import and connect before the clock starts
        total = per * args.producers
        baseline = _finished(client)
        before, cpu_before = stats.snapshot(), tree_cpu_s([w.pid for w in workers])
        started = time.monotonic()
        start_event.set()
        deadline = started + args.timeout
        while _finished(client) - baseline < total:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{mode}: only {_finished(client) - baseline} of {total} "
                                   f"jobs finished within {args.timeout:g} s")
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        after, cpu_after = stats.snapshot(), tree_cpu_s([w.pid for w in workers])
        for process in producers:
            process.join(30)
        delta = stats.delta(before, after)
        redis_us = delta["cpu_s"] * 1e6 / total
        point = {
            "mode": mode, "jobs": total,
            "elapsed_s": round(elapsed, 2),
            "jobs_s_measured": round(total / elapsed, 1),
            "redis_cpu_fraction": round(delta["cpu_s"] / elapsed, 3),
            "redis_cpu_us_per_job": round(redis_us, 1),
            "ceiling_jobs_s_per_redis_core": round(1e6 / redis_us) if redis_us else None,
            "redis_commands_per_job": round(delta["commands"] / total, 2),
            "redis_commands_by_name_per_job": {
                name: round(calls / total, 2) for name, calls in
                sorted(delta["by_command"].items(), key=lambda kv: -kv[1])},
            "worker_cpu_ms_per_job": round((cpu_after - cpu_before) * 1000 / total, 2),
        }
        say(f"{mode}: {point['jobs_s_measured']} jobs/s measured, Redis "
            f"{point['redis_cpu_us_per_job']} CPU-µs/job → ceiling "
            f"{point['ceiling_jobs_s_per_redis_core']} jobs/s per Redis core, "
            f"{point['redis_commands_per_job']} commands/job")
        return point
    finally:
        for worker in workers:
            stop_process(worker, timeout_s=20)
        stop_process(server, timeout_s=20)
        tmp.cleanup()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--modes", default="off,everysec,always",
                        help="Redis persistence modes (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=4000, help="jobs per mode")
    parser.add_argument("--producers", type=int, default=2, help="producer processes")
    parser.add_argument("--workers", type=int, default=2, help="no-op worker processes")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per mode")
    parser.add_argument("--redis-cpu", type=int, default=None,
                        help="pin Redis to this CPU and everything else to the others "
                             "(less noise in Redis's CPU per job)")
    parser.add_argument("--name", default="broker_ceiling")


def run(args: argparse.Namespace, argv: Sequence[str]) -> None:
    bench_run = Run(args.name, argv)
    bench_run.data.update(jobs=args.jobs, producers=args.producers, workers=args.workers,
                          threads=args.threads, redis_cpu=args.redis_cpu, points=[])
    log_dir = LOGS / args.name
    try:
        for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
            if mode not in MODES:
                raise SystemExit(f"unknown mode {mode!r}: choose from {', '.join(MODES)}")
            bench_run.data["points"].append(measure_mode(mode, args, log_dir))
        plots.bars(bench_run.plot_path("modes"), {p["mode"]: {
            "ceiling per Redis core (1 / Redis CPU-s per job)":
                p["ceiling_jobs_s_per_redis_core"] or 0,
            "measured on 2 shared cores": p["jobs_s_measured"]}
            for p in bench_run.data["points"]},
            "Broker ceiling by persistence mode", "jobs/s", line=(5000, "goal 5,000 jobs/s"))
    finally:
        bench_run.finish()
