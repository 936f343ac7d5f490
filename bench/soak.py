"""Soak: minutes of mixed face / detect / classify load at a fraction of the capacity
measured at the start of the run, against a real ``visionq up``, with a fault every
``--fault-every`` seconds, in turn: ``kill -9`` of a worker's pool child, then of a worker's
main process (each with a job in hand), a Redis restart, ``kill -9`` of the API's gunicorn
master.  Nothing accepted may be lost or run twice.  Method, faults and figures:
docs/reliability.md.  Writes ``bench/results/soak.json`` and ``soak.png``; logs in
``bench/results/raw/logs/soak/``.

    .venv/bin/python -m bench.soak --minutes 10
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import requests

from bench.harness import plots
from bench.harness.common import (
    FIXTURES,
    RAW,
    RESULTS,
    Run,
    free_port,
    load_average,
    percentile,
    say,
    shown,
    until,
)
from bench.harness.procs import (
    SOAK_LIMITS,
    Event,
    Processes,
    catch_running,
    job_fields,
    kill_group,
    worker_runs,
)
from bench.harness.procstat import children, rss_kb
from bench.harness.stack import check_ready
from launcher.up import CHILDREN_FILE
from visionq.jobs import FINAL_STATUSES

IMAGES = {
    "face": FIXTURES / "faces" / "obama_small.jpg",
    "detect": FIXTURES / "detect" / "images" / "000000000009.jpg",
    "classify": FIXTURES / "classify" / "caffe_cat.jpg",
}
TASKS = tuple(IMAGES)
LOGS = RAW / "logs" / "soak"
FAULTS = ("pool_child", "worker_main", "redis", "api")
SUPERVISOR_LINE = re.compile(r"visionq: (\S+) exited unexpectedly \(([^)]*)\)")
SUBMIT_DEADLINE_S = 120.0
"""A client gives a submit up after retrying this long (longer than any restart here)."""
MAX_RETRY_AFTER_S = 10.0
RSS_EVERY_S = 5.0
WINDOW_S = 30.0
"""Latency percentiles are per window of submissions (two per fault period)."""
BACK_TIMEOUT_S = 120.0
BUSY_WAIT_S = 20.0
"""A worker fault waits this long at most for the worker to be running a job."""


class UpStack(Processes):
    """``visionq up --queues face,detect,classify`` with ports and a state directory of its
    own; its output (every child's, prefixed with the role) goes to ``up.1.log``."""

    def __init__(self) -> None:
        self.api_port, self.redis_port = free_port(), free_port()
        self.state = LOGS / "state"
        env = {k: v for k, v in os.environ.items()
               if k not in ("REDIS_URL", "VISIONQ_REDIS_URL", "PROMETHEUS_MULTIPROC_DIR")}
        super().__init__(LOGS, {
            **env, "VISIONQ_REDIS_PORT": str(self.redis_port),
            "VISIONQ_EXPORTER_PORT": str(free_port()), "VISIONQ_STATE_DIR": str(self.state),
            "C_FORCE_ROOT": "1", "PYTHONUNBUFFERED": "1", **SOAK_LIMITS})

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self) -> None:
        self.spawn("up", [str(Path(sys.executable).parent / "visionq"), "up", "--port",
                          str(self.api_port), "--queues", ",".join(TASKS), "--no-flower",
                          "--no-prometheus"])

    def text(self) -> str:
        return self.log("up").read_text(errors="replace")

    def roles(self) -> dict[str, int]:
        """role -> pid of ``visionq up``'s live children (from its children file)."""
        try:
            recorded = json.loads((self.state / CHILDREN_FILE).read_text())["children"]
        except (OSError, ValueError, KeyError):
            return {}
        return {role: child["pid"] for role, child in recorded.items()
                if (role in ("redis", "api", "exporter") or role.startswith("worker-"))
                and Path(f"/proc/{child['pid']}").exists()}

    def wait_ready(self, timeout_s: float = 300) -> None:
        """``/readyz`` answers 200 and every queue's worker beats."""
        check_ready(self.api, "/readyz", self.redis_url, TASKS, timeout_s, self.check_alive)

    def rss(self) -> dict[str, dict[str, int]]:
        """RSS (kB) of every role's main process and of its children (pool / gunicorn
        workers), and of ``visionq up`` itself."""
        out = {"up": {"main": rss_kb(self.procs["up"].pid), "children": 0}}
        for role, pid in self.roles().items():
            out[role] = {"main": rss_kb(pid), "children": sum(rss_kb(c) for c in children(pid))}
        return out

    def redis_memory(self) -> int | None:
        try:
            conn = redis.Redis.from_url(self.redis_url, socket_timeout=2)
            return int(conn.info("memory")["used_memory"])
        except redis.RedisError:
            return None

    def stop(self) -> int | None:
        """Ctrl-C (SIGINT): warm shutdown; SIGKILL to whatever is left after 120 s."""
        process, left, code = self.procs["up"], list(self.roles().values()), None
        if process.poll() is None:
            os.kill(process.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = process.wait(120)
        self.stop_all(sig=signal.SIGKILL)
        for pid in left:
            kill_group(pid)
        return code


@dataclass
class Ledger:
    """Every submission and what became of it."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    accepted: dict[str, tuple[str, float]] = field(default_factory=dict)
    """job id -> (task, time the client first tried to submit it)"""
    retried: collections.Counter = field(default_factory=collections.Counter)
    """Answers (or their absence) that made a client retry, by reason."""
    refused: collections.Counter = field(default_factory=collections.Counter)
    """Submits given up, by the last reason (a 4xx, or retries for SUBMIT_DEADLINE_S)."""
    replayed: list[str] = field(default_factory=list)
    """Ids of 202s with ``Idempotent-Replayed``: a retry found the job (or the claim) of an
    attempt that got no 202."""
    final: dict[str, dict[str, Any]] = field(default_factory=dict)
    rss: list[dict[str, Any]] = field(default_factory=list)

    def pending(self) -> list[str]:
        with self.lock:
            return [i for i in self.accepted if i not in self.final]


def submit(api: str, ledger: Ledger, images: dict[str, bytes], task: str,
           idempotent: bool = True) -> None:
    """POST one job, retrying connection errors and 503s until a 202 or the deadline.
    Every attempt carries the same ``Idempotency-Key`` (unless ``idempotent`` is False): a
    retry of a submit the API took but never answered returns that job, not a second one."""
    started = time.time()
    headers = {"Idempotency-Key": uuid.uuid4().hex} if idempotent else {}
    while True:
        wait = 0.5
        try:
            response = requests.post(f"{api}/v1/jobs?task={task}", headers=headers,
                                     files={"image": ("i.jpg", images[task])}, timeout=30)
        except requests.RequestException as exc:
            reason = f"no answer:{type(exc).__name__}"
        else:
            if response.status_code == 202:
                with ledger.lock:
                    ledger.accepted[response.json()["id"]] = (task, started)
                    if response.headers.get("Idempotent-Replayed") == "true":
                        ledger.replayed.append(response.json()["id"])
                return
            try:
                code = response.json().get("code", "?")
            except ValueError:
                code = "non_json"
            reason = f"{response.status_code}:{code}"
            if response.status_code != 503:
                with ledger.lock:
                    ledger.refused[reason] += 1
                return
            with contextlib.suppress(ValueError):
                wait = min(float(response.headers.get("Retry-After", wait)), MAX_RETRY_AFTER_S)
        with ledger.lock:
            ledger.retried[reason] += 1
        if time.time() + wait - started > SUBMIT_DEADLINE_S:
            with ledger.lock:
                ledger.refused[f"gave up after {SUBMIT_DEADLINE_S:g} s: {reason}"] += 1
            return
        time.sleep(wait)


def collect(stack: UpStack, ledger: Ledger) -> None:
    """Read the records of pending jobs (one pipeline) and file the final ones."""
    ids = ledger.pending()
    if not ids:
        return
    try:
        conn = redis.Redis.from_url(stack.redis_url, socket_timeout=5)
        rows = job_fields(conn, ids, ("status", "code", "queued_at", "finished_at", "attempts"))
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


def measure_capacity(stack: UpStack, images: dict[str, bytes],
                     per_task: int) -> tuple[float, set[str]]:
    """Mixed jobs per second with every worker busy: ``per_task`` jobs of each task at
    once, timed until the last is final; and the ids of those jobs."""
    ledger = Ledger()
    started = time.time()
    with ThreadPoolExecutor(8) as pool:
        for _ in range(per_task):
            for task in TASKS:
                pool.submit(submit, stack.api, ledger, images, task)
    while ledger.pending():
        collect(stack, ledger)
        time.sleep(0.2)
        if time.time() - started > 600:
            raise TimeoutError("capacity measurement did not finish in 10 minutes")
    if not ledger.final:
        raise RuntimeError(f"no job was accepted: {dict(ledger.refused)}")
    elapsed = max(f["finished_at"] for f in ledger.final.values()) - started
    return len(ledger.final) / elapsed, set(ledger.accepted)


class Chaos(threading.Thread):
    """A fault at ``every_s``, ``2 * every_s``, ... up to ``duration_s`` included (the last
    as the load ends), cycling through ``FAULTS``; worker faults cycle through the queues
    and wait (up to ``BUSY_WAIT_S``) for the worker to have a job in hand; Redis is stopped
    with SIGTERM and SIGKILL in turn.  Nothing is restarted here: ``visionq up``'s
    supervisor does it; this thread measures how long it takes."""

    def __init__(self, stack: UpStack, ledger: Ledger, every_s: float, duration_s: float,
                 t0: float, abort: threading.Event) -> None:
        super().__init__(daemon=True)
        self.stack, self.ledger, self.every_s, self.t0 = stack, ledger, every_s, t0
        self.count = int(duration_s // every_s)
        self.abort = abort
        self.error: BaseException | None = None
        self.rounds: collections.Counter = collections.Counter()
        self.redis = redis.Redis.from_url(stack.redis_url, socket_timeout=2)

    def run(self) -> None:
        try:
            for round_no in range(self.count):
                due = self.t0 + (round_no + 1) * self.every_s
                if self.abort.wait(max(0.0, due - time.time())):
                    return
                self.fault(FAULTS[round_no % len(FAULTS)])
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc

    def wait_busy(self, task: str) -> dict[str, Any]:
        """Wait for a job of ``task`` to be running (its record says so)."""
        def candidates() -> list[str]:
            with self.ledger.lock:
                return [i for i, (t, _) in self.ledger.accepted.items()
                        if t == task and i not in self.ledger.final]
        job, waited = catch_running(self.redis, candidates, BUSY_WAIT_S)
        return {"job_in_hand": job, "waited_for_it_s": waited}

    def fault(self, kind: str) -> None:
        nth = self.rounds[kind]
        self.rounds[kind] += 1
        event = Event(time.time() - self.t0, kind)
        record = event.detail
        if kind == "pool_child":
            record.update(self.kill_pool_child(TASKS[nth % len(TASKS)]))
        elif kind == "worker_main":
            record.update(self.kill_worker_main(TASKS[nth % len(TASKS)]))
        elif kind == "redis":
            client = redis.Redis.from_url(self.stack.redis_url, socket_connect_timeout=0.5,
                                          socket_timeout=1)
            record.update(self.restart("redis", "redis", client.ping,
                                       signal.SIGTERM if nth % 2 == 0 else signal.SIGKILL))
        else:
            record.update(self.restart("api", "gunicorn master", lambda: requests.get(
                f"{self.stack.api}/healthz", timeout=2).status_code == 200))
        self.stack.events.append(event)
        say(f"fault {fault_record(event)}")

    def replaced(self, role: str, old: int) -> int | None:
        """The process the supervisor started in place of ``old`` (None if none came)."""
        return until(lambda: (pid := self.stack.roles().get(role)) and pid != old and pid)

    def kill_pool_child(self, queue: str) -> dict[str, Any]:
        main = self.stack.roles()[f"worker-{queue}"]
        victim = children(main)[0]
        busy = self.wait_busy(queue)
        os.kill(victim, signal.SIGKILL)
        started = time.monotonic()
        back = until(lambda: [c for c in children(main) if c != victim])
        return {"target": f"worker-{queue} pool child {victim}", "signal": "SIGKILL", **busy,
                "new_pool_child_s": round(time.monotonic() - started, 2) if back else None}

    def kill_worker_main(self, queue: str) -> dict[str, Any]:
        role = f"worker-{queue}"
        main = self.stack.roles()[role]
        ready_lines = self._ready_count(role)
        busy = self.wait_busy(queue)
        os.kill(main, signal.SIGKILL)
        started = time.monotonic()
        new = self.replaced(role, main)
        back_s = time.monotonic() - started
        ready = until(lambda: self._ready_count(role) > ready_lines, every_s=0.2)
        return {"target": f"{role} main process {main}", "signal": "SIGKILL", **busy,
                "new_process": new, "process_back_s": round(back_s, 2) if new else None,
                "ready_s": round(time.monotonic() - started, 2) if ready else None}

    def _ready_count(self, role: str) -> int:
        return sum(1 for line in self.stack.text().splitlines()
                   if line.startswith(f"[{role}]") and line.rstrip().endswith(" ready."))

    def restart(self, role: str, name: str, answering: Callable[[], Any],
                sig: signal.Signals = signal.SIGKILL) -> dict[str, Any]:
        """Signal ``role``'s process; how long until the supervisor's new one answers."""
        old = self.stack.roles()[role]
        os.kill(old, sig)
        started = time.monotonic()
        answered = (new := self.replaced(role, old)) and until(answering, every_s=0.05)
        return {"target": f"{name} {old}", "signal": sig.name, "new_process": new,
                "answering_s": round(time.monotonic() - started, 2) if answered else None}


def fault_record(event: Event) -> dict[str, Any]:
    return {"at_s": round(event.t, 1), "fault": event.what, **event.detail}


def sample(stack: UpStack, ledger: Ledger, t0: float) -> None:
    """RSS of every process and Redis memory, now."""
    entry = {"t_s": round(time.time() - t0, 1), "rss_kb": stack.rss(),
             "redis_used_memory": stack.redis_memory()}
    with ledger.lock:
        ledger.rss.append(entry)


def sample_every(stack: UpStack, ledger: Ledger, t0: float, stop: threading.Event) -> None:
    while True:
        with contextlib.suppress(Exception):  # a process vanishing mid-read
            sample(stack, ledger, t0)
        if stop.wait(RSS_EVERY_S):
            return


def p(values: list[float], q: float) -> float:
    """The ``q`` percentile (0..100) in seconds, 0 when there are none."""
    return round(percentile(sorted(values), q) or 0, 3)


def latency_windows(ledger: Ledger, t0: float) -> list[dict[str, Any]]:
    """p50 / p99 latency of the jobs submitted in each ``WINDOW_S``."""
    windows: dict[int, list[float]] = collections.defaultdict(list)
    for job_id, final in ledger.final.items():
        windows[int((ledger.accepted[job_id][1] - t0) // WINDOW_S)].append(final["latency_s"])
    return [{"from_s": int(k * WINDOW_S), "jobs": len(v),
             "p50_s": p(v, 50), "p99_s": p(v, 99)}
            for k, v in sorted(windows.items()) if k >= 0]


def rss_series(ledger: Ledger) -> dict[str, tuple[list[float], list[float]]]:
    """``role main`` / ``role children`` -> (times, MiB)."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    for entry in ledger.rss:
        for role, parts in entry["rss_kb"].items():
            for part, kb in parts.items():
                if part == "children" and role in ("up", "redis", "exporter"):
                    continue
                name = f"{role} {'pool' if role.startswith('worker') else 'workers'}" \
                    if part == "children" else role
                xs, ys = series.setdefault(name, ([], []))
                xs.append(entry["t_s"])
                ys.append(kb / 1024)
    return series


FAULT_COLOURS = {"pool_child": "tab:gray", "worker_main": "black", "redis": "red",
                 "api": "tab:purple"}


def plot(path: Path, ledger: Ledger, t0: float, summary: dict[str, Any]) -> None:
    plt = plots.plt
    fig, (lat, done, rss, mem) = plt.subplots(4, 1, figsize=(12, 13), sharex=True)
    colours = {"face": "tab:blue", "detect": "tab:orange", "classify": "tab:green"}
    for task in TASKS:
        points = [(ledger.accepted[i][1] - t0, f["latency_s"]) for i, f in ledger.final.items()
                  if ledger.accepted[i][0] == task and ledger.accepted[i][1] >= t0]
        if points:
            xs, ys = zip(*points, strict=True)
            lat.scatter(xs, ys, s=3, alpha=0.25, label=task, color=colours[task])
    windows = summary["latency_by_window"]
    mids = [w["from_s"] + WINDOW_S / 2 for w in windows]
    for key, style, colour in (("p50_s", "o-", "navy"), ("p99_s", "s-", "crimson")):
        lat.plot(mids, [w[key] for w in windows], style, color=colour,
                 label=f"{key[:3]} / {WINDOW_S:g} s of submissions")
    lat.set_ylabel("latency (s, queued -> finished)")
    lat.set_yscale("log")
    lat.legend(loc="upper right", fontsize=7, ncol=5)
    finished = sorted(f["finished_at"] - t0 for f in ledger.final.values())
    if finished:
        done.hist(finished, bins=list(range(0, int(finished[-1]) + 11, 10)), color="tab:gray")
    done.set_ylabel("jobs finished / 10 s")
    palette = plt.get_cmap("tab10")
    roles = sorted({name.split()[0] for name in rss_series(ledger)})
    for name, (xs, ys) in sorted(rss_series(ledger).items()):
        rss.plot(xs, ys, label=name, linewidth=1, color=palette(roles.index(name.split()[0])),
                 linestyle="--" if " " in name else "-")
    rss.set_ylabel("RSS (MiB)")
    rss.legend(loc="upper left", fontsize=7, ncol=4)
    samples = [(e["t_s"], e["redis_used_memory"] / 2**20) for e in ledger.rss
               if e["redis_used_memory"] is not None]
    if samples:
        mem.plot(*zip(*samples, strict=True), color="red", label="Redis used_memory")
    mem.set_ylabel("Redis used_memory (MiB)")
    mem.set_xlabel("seconds since the load started")
    for fault in summary["faults"]:
        for axis in (lat, done, rss, mem):
            axis.axvline(fault["at_s"], color=FAULT_COLOURS[fault["fault"]], alpha=0.4,
                         linewidth=1)
        target = fault.get("target", "").split(" ")[0]
        lat.annotate(f"{fault['fault']}\n{target}", (fault["at_s"], 1.0),
                     xycoords=("data", "axes fraction"), fontsize=6, va="top", ha="left",
                     color=FAULT_COLOURS[fault["fault"]])
    fig.suptitle(f"visionq soak under `visionq up`: {summary['minutes']:g} min at "
                 f"{summary['load_fraction']:.0%} of {summary['capacity_jobs_per_s']} jobs/s; "
                 f"{summary['accepted']} accepted, lost {summary['lost']}, duplicated "
                 f"{summary['duplicated']}\nfaults: grey pool child kill -9, black worker main "
                 "kill -9, red Redis restart, purple API (gunicorn master) kill -9", fontsize=9)
    fig.tight_layout()
    plots.save(fig, path, dpi=100)


def summarise(args: argparse.Namespace, ledger: Ledger, log: str, capacity: float,
              rate: float, t0: float, load: dict[str, list[float]],
              blobs_left: int | None, up_exit: int | None, warm_up: set[str],
              events: list[Event]) -> dict[str, Any]:
    """``warm_up``: the capacity measurement's jobs (in the log, not in ``ledger``)."""
    runs = worker_runs([log])[0]
    finals = ledger.final
    lost = [i for i in ledger.accepted if i not in finals]
    duplicated = [i for i in ledger.accepted if runs[i] > 1]
    unacknowledged = [i for i in runs if i not in ledger.accepted and i not in warm_up]
    duplicated += [i for i in warm_up if runs[i] > 1]
    latencies = [f["latency_s"] for f in finals.values()]
    by_task = {task: [f["latency_s"] for i, f in finals.items() if ledger.accepted[i][0] == task]
               for task in TASKS}
    failed = collections.Counter(f["code"] for f in finals.values() if f["status"] == "failed")
    rss = ledger.rss
    faults = [fault_record(event) for event in events]
    for fault in faults:  # did the job a killed worker held run again, and once?
        if fault.get("job_in_hand"):
            fault["job_in_hand_attempts"] = finals.get(fault["job_in_hand"], {}).get("attempts")
            fault["job_in_hand_runs_to_the_end"] = runs[fault["job_in_hand"]]
    return {
        "what": "bench/soak.py under `visionq up` (supervised), mixed face/detect/classify",
        "minutes": args.minutes,
        "load_fraction": args.load,
        "fault_every_s": args.fault_every,
        "capacity_jobs_per_s": round(capacity, 3),
        "offered_jobs_per_s": round(rate, 3),
        "accepted": len(ledger.accepted),
        "accepted_by_task": dict(collections.Counter(t for t, _ in ledger.accepted.values())),
        "idempotency_key": not args.no_idempotency_key,
        "retried_submits_by_reason": dict(ledger.retried),
        "replayed_by_idempotency_key": len(ledger.replayed),
        "replayed_ids": ledger.replayed[:20],
        "refused_by_reason": dict(ledger.refused),
        "completed": sum(1 for f in finals.values() if f["status"] == "succeeded"),
        "failed": sum(failed.values()),
        "failed_by_reason": dict(failed),
        "lost": len(lost),
        "lost_ids": lost[:20],
        "lost_jobs": [{"id": i, "task": ledger.accepted[i][0],
                       "submitted_at_s": round(ledger.accepted[i][1] - t0, 2),
                       "replayed": i in ledger.replayed} for i in lost[:20]],
        "duplicated": len(duplicated),
        "duplicated_ids": duplicated[:20],
        "redelivered": sum(1 for f in finals.values() if f["attempts"] > 1),
        "ran_without_a_202": len(unacknowledged),
        "ran_without_a_202_ids": unacknowledged[:20],
        "latency_p50_s": p(latencies, 50),
        "latency_p99_s": p(latencies, 99),
        "latency_max_s": round(max(latencies), 3) if latencies else None,
        "latency_p99_s_by_task": {t: p(v, 99) for t, v in by_task.items()},
        "latency_mean_s": round(statistics.fmean(latencies), 3) if latencies else None,
        "latency_window_s": WINDOW_S,
        "latency_by_window": latency_windows(ledger, t0),
        "faults": faults,
        "supervisor_restarts": [f"{role}: {how}" for role, how in SUPERVISOR_LINE.findall(log)],
        "rss_kb_start": rss[0]["rss_kb"] if rss else None,
        "rss_kb_end": rss[-1]["rss_kb"] if rss else None,
        "rss_kb_peak": {name: round(max(ys) * 1024) for name, (_, ys) in
                        rss_series(ledger).items()},
        "redis_used_memory_start": rss[0]["redis_used_memory"] if rss else None,
        "redis_used_memory_end": rss[-1]["redis_used_memory"] if rss else None,
        "redis_used_memory_peak": max((e["redis_used_memory"] or 0 for e in rss), default=None),
        "blobs_left": blobs_left,
        "visionq_up_exit_code": up_exit,
        "load_average": load,
        "rss_over_time": rss,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--minutes", type=float, default=10.0, help="load duration (10)")
    parser.add_argument("--load", type=float, default=0.7,
                        help="fraction of the measured capacity to offer (0.7)")
    parser.add_argument("--fault-every", type=float, default=60.0,
                        help="seconds between faults (60)")
    parser.add_argument("--capacity-jobs", type=int, default=20,
                        help="jobs per task in the capacity measurement (20)")
    parser.add_argument("--drain", type=float, default=240.0,
                        help="seconds to wait for accepted jobs after the load (240)")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="directory for soak.json and soak.png")
    parser.add_argument("--name", default="soak", help="result file stem (soak)")
    parser.add_argument("--no-idempotency-key", action="store_true",
                        help="retry submits without an Idempotency-Key (a retried submit the "
                             "API took but never answered then runs as an extra job)")
    parser.add_argument("--seed", type=int, default=1)


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    results = Run(args.name, argv, args.out)

    images = {task: path.read_bytes() for task, path in IMAGES.items()}
    shutil.rmtree(LOGS, ignore_errors=True)
    LOGS.mkdir(parents=True)
    stack = UpStack()
    say(f"logs in {shown(LOGS)}")
    ledger = Ledger()
    stop = threading.Event()
    load = {"start": load_average()}
    blobs_left: int | None = None
    up_exit: int | None = None
    try:
        stack.start()
        stack.wait_ready()
        say(f"visionq up ready: {stack.roles()}; measuring capacity")
        capacity, warm_up = measure_capacity(stack, images, args.capacity_jobs)
        rate = capacity * args.load
        say(f"capacity {capacity:.2f} mixed jobs/s; offering {rate:.2f} jobs/s "
            f"({args.load:.0%}) for {args.minutes:g} min, a fault every {args.fault_every:g} s")
        duration = args.minutes * 60
        rng = random.Random(args.seed)
        stack.t0 = t0 = time.time()
        chaos = Chaos(stack, ledger, args.fault_every, duration, t0, stop)
        chaos.start()
        threading.Thread(target=sample_every, args=(stack, ledger, t0, stop), daemon=True).start()
        next_report = 30.0
        with ThreadPoolExecutor(48) as pool:
            due = 0.0
            while (elapsed := time.time() - t0) < duration:
                if elapsed >= due:
                    pool.submit(submit, stack.api, ledger, images, rng.choice(TASKS),
                                not args.no_idempotency_key)
                    due += rng.expovariate(rate)  # Poisson arrivals
                    continue
                if elapsed >= next_report:
                    next_report += 30
                    collect(stack, ledger)
                    with ledger.lock:
                        done = collections.Counter(f["status"] for f in ledger.final.values())
                        say(f"{elapsed:5.0f} s: accepted {len(ledger.accepted)}, succeeded "
                            f"{done['succeeded']}, failed {done['failed']}, in flight "
                            f"{len(ledger.accepted) - len(ledger.final)}, retried "
                            f"{dict(ledger.retried)}, refused {dict(ledger.refused)}")
                time.sleep(max(0.0, min(due - (time.time() - t0), 0.05)))
            say("load stopped; waiting for the clients still retrying")
        chaos.join(BACK_TIMEOUT_S * 3)  # the last fault comes as the load ends
        if chaos.error:
            raise chaos.error
        say("draining")
        stack.wait_ready(BACK_TIMEOUT_S)
        drain_end = time.time() + args.drain
        while ledger.pending() and time.time() < drain_end:
            collect(stack, ledger)
            time.sleep(0.5)
        collect(stack, ledger)
        time.sleep(3)  # workers log the end of a run just after recording it
        sample(stack, ledger, t0)
        blobs_left = sum(1 for _ in redis.Redis.from_url(stack.redis_url).scan_iter(
            "visionq:blob:*", count=1000))
        load["end"] = load_average()
    finally:
        stop.set()
        up_exit = stack.stop()

    log = stack.text()
    summary = summarise(args, ledger, log, capacity, rate, t0, load, blobs_left, up_exit,
                        warm_up, stack.events)
    png_path = args.out / f"{args.name}.png"
    plot(png_path, ledger, t0, summary)
    results.data.update(summary)
    results.data["plots"].append(shown(png_path))
    results.finish()
    say(json.dumps({k: v for k, v in summary.items()
                    if not k.endswith("_ids") and k not in ("rss_over_time", "rss_kb_start",
                                                             "rss_kb_end")}))
    return 1 if summary["lost"] or summary["duplicated"] else 0


if __name__ == "__main__":
    from bench.__main__ import main

    sys.exit(main(["soak", *sys.argv[1:]]))
