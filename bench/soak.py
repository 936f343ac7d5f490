"""Soak: minutes of mixed load (face / detect / classify) at a fraction of the measured
capacity against a stack this command starts itself, with faults injected all along:

- every ``--kill-every`` seconds a worker is hurt: ``kill -9`` of one pool child (the job
  it runs is redelivered), and every third time the whole worker (main process and pool,
  as a lost node) which is then restarted;
- once, at ~45 % of the run, Redis is restarted (SIGTERM: it flushes its AOF; jobs queued
  and in flight must survive).

It reports jobs accepted, completed, failed (by reason), lost (accepted but never final:
must be 0), duplicated (a job that ran to completion more than once, counted from the
workers' ``job <id> (...) succeeded|failed`` log lines: must be 0), redelivered
(attempts > 1), p50/p99 latency (queued -> finished), RSS of the workers at start and end,
Redis memory; writes ``bench/results/soak.json`` and ``bench/results/soak.png``.

    .venv/bin/python -m bench.soak --minutes 10

Not part of ``make test`` (it takes minutes and all the CPU).  Run it as a module
(``-m bench.soak``): ``bench/http.py`` would shadow the standard library's ``http`` if the
file were run as a script.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import requests

from bench.common import FIXTURES, REPO, free_port, stop_process
from bench.procstat import children, rss_kb
from visionq.embedded_redis import server_command, wait_ready
from visionq.jobs import FINAL_STATUSES, JOB_KEY_PREFIX

IMAGES = {
    "face": FIXTURES / "faces" / "obama_small.jpg",
    "detect": FIXTURES / "detect" / "images" / "000000000009.jpg",
    "classify": FIXTURES / "classify" / "caffe_cat.jpg",
}
TASKS = tuple(IMAGES)
LIMITS = {"VISIONQ_SOFT_TIME_LIMIT_S": "20", "VISIONQ_HARD_TIME_LIMIT_S": "25",
          "VISIONQ_VISIBILITY_TIMEOUT_S": "30"}
"""Jobs take well under a second here, so a 30 s visibility timeout (above the 25 s hard
limit, as the settings require) brings back the job of a killed whole worker quickly."""
DONE_LINE = re.compile(r"job ([0-9a-f]{32}) \((\w+)\) (succeeded|failed) in")


def say(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass
class Stack:
    """Redis (AOF), the API under gunicorn and one worker per queue, logs in ``workdir``."""

    workdir: Path
    redis_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    generation: collections.Counter = field(default_factory=collections.Counter)

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"REDIS_URL": self.redis_url, "C_FORCE_ROOT": "1", "PYTHONUNBUFFERED": "1",
                    "VISIONQ_STATE_DIR": str(REPO / ".visionq"), **LIMITS})
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        return env

    def spawn(self, name: str, command: list[str]) -> subprocess.Popen:
        self.generation[name] += 1
        log = open(self.workdir / f"{name}.{self.generation[name]}.log", "ab")  # noqa: SIM115
        process = subprocess.Popen(command, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                   cwd=REPO, start_new_session=True)
        self.procs[name] = process
        return process

    def start_redis(self) -> None:
        self.spawn("redis", server_command(self.redis_port, self.workdir / "redis"))
        wait_ready(self.redis_url, 20, self.procs["redis"])

    def start_api(self) -> None:
        self.spawn("api", [sys.executable, "-m", "gunicorn", "--workers", "2", "--threads",
                           "4", "--bind", f"127.0.0.1:{self.api_port}", "api:create_app()"])

    def start_worker(self, queue: str) -> None:
        self.spawn(f"worker-{queue}", [
            sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", queue, "-c", "1",
            "-n", f"{queue}@soak", "--loglevel", "INFO", "--without-mingle",
            "--without-gossip"])

    def wait_ready(self, queues: tuple[str, ...], timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                detail = requests.get(f"{self.api}/readyz", timeout=2).json()
                if detail.get("redis") == "ok" and all(detail.get("workers", {}).get(q)
                                                       for q in queues):
                    return
            except (requests.RequestException, ValueError):
                pass
            for name, process in self.procs.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited during start-up; see {self.workdir}")
            time.sleep(0.5)
        raise TimeoutError(f"the stack was not ready in {timeout_s:g} s; see {self.workdir}")

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout_s: float = 30) -> None:
        stop_process(self.procs.get(name), sig, timeout_s)

    def stop_all(self) -> None:
        for name in [n for n in self.procs if n.startswith("worker-")] + ["api", "redis"]:
            self.stop(name)

    def worker_rss_kb(self) -> dict[str, int]:
        """Main process + pool children of each worker."""
        out = {}
        for name, process in self.procs.items():
            if name.startswith("worker-") and process.poll() is None:
                out[name] = rss_kb(process.pid) + sum(rss_kb(c) for c in children(process.pid))
        return out

    def redis_memory(self) -> int | None:
        try:
            return int(redis.Redis.from_url(self.redis_url).info("memory")["used_memory"])
        except redis.RedisError:
            return None


@dataclass
class Ledger:
    """Every submission and what became of it."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    accepted: dict[str, tuple[str, float]] = field(default_factory=dict)
    rejected: collections.Counter = field(default_factory=collections.Counter)
    final: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[tuple[float, str]] = field(default_factory=list)

    def pending(self) -> list[str]:
        with self.lock:
            return [i for i in self.accepted if i not in self.final]


def submit(stack: Stack, ledger: Ledger, images: dict[str, bytes], task: str) -> None:
    try:
        response = requests.post(f"{stack.api}/v1/jobs?task={task}",
                                 files={"image": ("i.jpg", images[task])}, timeout=30)
    except requests.RequestException as exc:
        with ledger.lock:
            ledger.rejected[f"connection:{type(exc).__name__}"] += 1
        return
    with ledger.lock:
        if response.status_code == 202:
            ledger.accepted[response.json()["id"]] = (task, time.time())
        else:
            try:
                code = response.json().get("code", "?")
            except ValueError:
                code = "non_json"
            ledger.rejected[f"{response.status_code}:{code}"] += 1


def collect(stack: Stack, ledger: Ledger) -> None:
    """Read the records of pending jobs (one pipeline) and file the final ones."""
    ids = ledger.pending()
    if not ids:
        return
    try:
        conn = redis.Redis.from_url(stack.redis_url, socket_timeout=5)
        pipe = conn.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(f"{JOB_KEY_PREFIX}{job_id}", "status", "code", "queued_at",
                       "finished_at", "attempts")
        rows = pipe.execute()
    except redis.RedisError:
        return  # Redis is restarting: next round
    with ledger.lock:
        for job_id, (status, code, queued, finished, attempts) in zip(ids, rows, strict=True):
            if status is None or status.decode() not in FINAL_STATUSES:
                continue
            ledger.final[job_id] = {
                "status": status.decode(), "code": code.decode() if code else None,
                "latency_s": float(finished) - float(queued),
                "finished_at": float(finished), "attempts": int(attempts or 0)}


def measure_capacity(stack: Stack, images: dict[str, bytes], per_task: int) -> float:
    """Mixed jobs per second with every worker busy: ``per_task`` jobs of each task at
    once, timed until the last is final."""
    ledger = Ledger()
    started = time.time()
    with ThreadPoolExecutor(8) as pool:
        for _ in range(per_task):
            for task in TASKS:
                pool.submit(submit, stack, ledger, images, task)
    while ledger.pending() or len(ledger.accepted) < per_task * len(TASKS) - sum(
            ledger.rejected.values()):
        collect(stack, ledger)
        time.sleep(0.2)
        if time.time() - started > 300:
            raise TimeoutError("capacity measurement did not finish in 5 minutes")
    elapsed = max(f["finished_at"] for f in ledger.final.values()) - started
    return len(ledger.final) / elapsed


class Chaos(threading.Thread):
    """Kills a pool child every ``every_s`` (every third time the whole worker, restarted
    at once) and restarts Redis once at ``redis_at_s``."""

    def __init__(self, stack: Stack, ledger: Ledger, every_s: float, redis_at_s: float | None,
                 stop: threading.Event, seed: int) -> None:
        super().__init__(daemon=True)
        self.stack, self.ledger, self.every_s, self.redis_at_s = stack, ledger, every_s, redis_at_s
        self.stop_event, self.random = stop, random.Random(seed)
        self.error: BaseException | None = None

    def note(self, what: str) -> None:
        with self.ledger.lock:
            self.ledger.events.append((time.time(), what))
        say(what)

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc

    def _run(self) -> None:
        started = time.monotonic()
        round_no = 0
        next_kill = self.every_s
        while not self.stop_event.wait(0.5):
            elapsed = time.monotonic() - started
            if self.redis_at_s is not None and elapsed >= self.redis_at_s:
                self.redis_at_s = None
                self.note("restarting Redis (SIGTERM, AOF flushed; back after 3 s)")
                self.stack.stop("redis")
                time.sleep(3)
                self.stack.start_redis()
                self.note("Redis is back")
            if elapsed < next_kill:
                continue
            next_kill += self.every_s
            round_no += 1
            queue = self.random.choice(TASKS)
            name = f"worker-{queue}"
            process = self.stack.procs[name]
            if round_no % 3 == 0:
                self.note(f"kill -9 of the whole {name} (main + pool); restarting it")
                self.stack.stop(name, signal.SIGKILL)
                self.stack.start_worker(queue)
                continue
            pool = children(process.pid)
            if pool:
                self.note(f"kill -9 of {name}'s pool child {pool[0]}")
                os.kill(pool[0], signal.SIGKILL)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def completions(workdir: Path) -> collections.Counter:
    """How many times each job ran to the end (one log line per finished run)."""
    counts: collections.Counter = collections.Counter()
    for log in workdir.glob("worker-*.log"):
        for match in DONE_LINE.finditer(log.read_text(errors="replace")):
            counts[match.group(1)] += 1
    return counts


def plot(path: Path, ledger: Ledger, t0: float, summary: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    colours = {"face": "tab:blue", "detect": "tab:orange", "classify": "tab:green"}
    for task in TASKS:
        points = [(ledger.accepted[i][1] - t0, f["latency_s"]) for i, f in ledger.final.items()
                  if ledger.accepted[i][0] == task]
        if points:
            xs, ys = zip(*points, strict=True)
            top.scatter(xs, ys, s=4, alpha=0.5, label=task, color=colours[task])
    top.set_ylabel("latency (s, queued -> finished)")
    top.set_yscale("log")
    top.legend(loc="upper right")
    finished = sorted(f["finished_at"] - t0 for f in ledger.final.values())
    if finished:
        bins = range(0, int(finished[-1]) + 11, 10)
        bottom.hist(finished, bins=list(bins), color="tab:gray")
    bottom.set_ylabel("jobs finished / 10 s")
    bottom.set_xlabel("seconds since the load started")
    for when, what in ledger.events:
        colour = "red" if "Redis" in what else "black"
        for axis in (top, bottom):
            axis.axvline(when - t0, color=colour, alpha=0.3, linewidth=1)
    fig.suptitle(f"visionq soak: {summary['minutes']:g} min, {summary['accepted']} accepted, "
                 f"lost {summary['lost']}, duplicated {summary['duplicated']}, "
                 f"p99 {summary['latency_p99_s']} s (black: worker kills, red: Redis restart)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="load duration (10)")
    parser.add_argument("--load", type=float, default=0.7,
                        help="fraction of the measured capacity to offer (0.7)")
    parser.add_argument("--kill-every", type=float, default=60.0,
                        help="seconds between worker kills (60)")
    parser.add_argument("--no-redis-restart", action="store_true",
                        help="skip the Redis restart")
    parser.add_argument("--capacity-jobs", type=int, default=20,
                        help="jobs per task in the capacity measurement (20)")
    parser.add_argument("--drain", type=float, default=180.0,
                        help="seconds to wait for accepted jobs after the load (180)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results",
                        help="directory for soak.json and soak.png")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the logs' temp directory")
    args = parser.parse_args(argv)

    images = {task: path.read_bytes() for task, path in IMAGES.items()}
    workdir = Path(tempfile.mkdtemp(prefix="visionq-soak-"))
    stack = Stack(workdir)
    say(f"logs in {workdir}")
    ledger = Ledger()
    stop = threading.Event()
    try:
        stack.start_redis()
        stack.start_api()
        for queue in TASKS:
            stack.start_worker(queue)
        stack.wait_ready(TASKS)
        say("stack ready; measuring capacity")
        capacity = measure_capacity(stack, images, args.capacity_jobs)
        rate = capacity * args.load
        say(f"capacity {capacity:.2f} mixed jobs/s; offering {rate:.2f} jobs/s "
            f"({args.load:.0%}) for {args.minutes:g} min")
        rss_start = stack.worker_rss_kb()
        redis_start = stack.redis_memory()

        duration = args.minutes * 60
        chaos = Chaos(stack, ledger, args.kill_every,
                      None if args.no_redis_restart else duration * 0.45, stop, args.seed)
        rng = random.Random(args.seed)
        t0 = time.time()
        chaos.start()
        next_report = 30.0
        with ThreadPoolExecutor(16) as pool:
            due = 0.0
            while (elapsed := time.time() - t0) < duration:
                if elapsed >= due:
                    pool.submit(submit, stack, ledger, images, rng.choice(TASKS))
                    due += rng.expovariate(rate)  # Poisson arrivals
                if elapsed >= next_report:
                    next_report += 30
                    collect(stack, ledger)
                    with ledger.lock:
                        done = collections.Counter(f["status"] for f in ledger.final.values())
                        say(f"{elapsed:5.0f} s: accepted {len(ledger.accepted)}, succeeded "
                            f"{done['succeeded']}, failed {done['failed']}, in flight "
                            f"{len(ledger.accepted) - len(ledger.final)}, rejected "
                            f"{sum(ledger.rejected.values())} {dict(ledger.rejected)}")
                time.sleep(max(0.0, min(due - (time.time() - t0), 0.05)))
        stop.set()
        chaos.join(60)
        if chaos.error:
            raise chaos.error
        say("load stopped; draining")
        stack.wait_ready(TASKS, 120)  # a worker restarted by the last kill must be up
        drain_end = time.time() + args.drain
        while ledger.pending() and time.time() < drain_end:
            collect(stack, ledger)
            time.sleep(0.5)
        collect(stack, ledger)
        time.sleep(3)  # workers log the end of a run just after recording it
        rss_end = stack.worker_rss_kb()
        redis_end = stack.redis_memory()
        blobs_left = sum(1 for _ in redis.Redis.from_url(stack.redis_url).scan_iter(
            "visionq:blob:*", count=1000))
    finally:
        stop.set()
        stack.stop_all()

    runs = completions(workdir)
    finals = ledger.final
    lost = [i for i in ledger.accepted if i not in finals]
    duplicated = [i for i in ledger.accepted if runs[i] > 1]
    latencies = [f["latency_s"] for f in finals.values()]
    by_task = {task: [f["latency_s"] for i, f in finals.items() if ledger.accepted[i][0] == task]
               for task in TASKS}
    failed = collections.Counter(f["code"] for f in finals.values() if f["status"] == "failed")
    summary: dict[str, Any] = {
        "minutes": args.minutes,
        "load_fraction": args.load,
        "capacity_jobs_per_s": round(capacity, 3),
        "offered_jobs_per_s": round(rate, 3),
        "accepted": len(ledger.accepted),
        "rejected": dict(ledger.rejected),
        "completed": sum(1 for f in finals.values() if f["status"] == "succeeded"),
        "failed": sum(failed.values()),
        "failed_by_reason": dict(failed),
        "lost": len(lost),
        "lost_ids": lost[:20],
        "duplicated": len(duplicated),
        "duplicated_ids": duplicated[:20],
        "redelivered": sum(1 for f in finals.values() if f["attempts"] > 1),
        "latency_p50_s": round(percentile(latencies, 0.5) or 0, 3),
        "latency_p99_s": round(percentile(latencies, 0.99) or 0, 3),
        "latency_p99_s_by_task": {t: round(percentile(v, 0.99) or 0, 3)
                                  for t, v in by_task.items()},
        "latency_mean_s": round(statistics.fmean(latencies), 3) if latencies else None,
        "worker_rss_kb_start": rss_start,
        "worker_rss_kb_end": rss_end,
        "redis_used_memory_start": redis_start,
        "redis_used_memory_end": redis_end,
        "blobs_left": blobs_left,
        "faults": [what for _, what in ledger.events],
        "cores": os.cpu_count(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(summary, indent=1) + "\n")
    plot(args.out / "soak.png", ledger, t0, summary)
    say(json.dumps({k: v for k, v in summary.items() if not k.endswith("_ids")}))
    say(f"wrote {args.out / 'soak.json'} and {args.out / 'soak.png'}")
    if args.keep or lost or duplicated:
        say(f"logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if lost or duplicated else 0


if __name__ == "__main__":
    raise SystemExit(main())
