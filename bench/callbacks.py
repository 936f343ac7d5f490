"""``python -m bench callbacks``: does a slow webhook receiver slow the workers?  (Issue 29.)
Rounds of ``--jobs`` classify jobs alternate without and with a ``callback_url`` per job, on
one stack with the real ``callbacks`` role and a loopback receiver that answers after
``--receiver-delay-s``; reports jobs/s per variant (median of rounds), their ratio, and how
long the webhook backlog took to drain.  Method and figures: docs/webhooks.md.
"""

from __future__ import annotations

import argparse
import http.server
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
import requests

from bench.harness import plots
from bench.harness.common import TASK_IMAGES, Run, ratio, say, stop_process
from bench.harness.stack import LOGS, VisionqStack, final_jobs

VARIANTS = ("none", "callback")


class SlowReceiver:
    """Counts POSTs; answers each 200 after ``delay_s`` (a thread per connection)."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.count = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(outer.delay_s)
                with outer._lock:
                    outer.count += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def submit_round(url: str, images: list[bytes], jobs: int, clients: int,
                 callback_url: str | None) -> list[str]:
    local = threading.local()

    def one(i: int) -> str:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        data = {"callback_url": callback_url} if callback_url else {}
        for _ in range(100):
            response = session.post(f"{url}/v1/jobs?task=classify", data=data,
                                    files={"image": ("i.jpg", images[i % len(images)])},
                                    timeout=60)
            if response.status_code == 202:
                return response.json()["id"]
            if response.status_code != 503:  # backpressure: retry after a moment
                raise RuntimeError(f"submit: {response.status_code} {response.text[:200]}")
            time.sleep(0.2)
        raise RuntimeError("the queue stayed full")

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(one, range(jobs)))


def wait_finished(client: redis.Redis, ids: list[str], timeout_s: float) -> dict[str, float]:
    """Until every job is final: the round's first ``queued_at`` and last ``finished_at``."""
    rows = final_jobs(client, ids, ("queued_at", "finished_at"), timeout_s)
    return {"first_queued": min(float(r[1]) for r in rows),
            "last_finished": max(float(r[2]) for r in rows),
            "failed": sum(row[0] == b"failed" for row in rows)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs", type=int, default=300, help="jobs per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per variant")
    parser.add_argument("--clients", type=int, default=8, help="concurrent submitters")
    parser.add_argument("--receiver-delay-s", type=float, default=1.0)
    parser.add_argument("--drain-timeout", type=float, default=300.0,
                        help="longest wait for the webhook backlog after the last round")
    parser.add_argument("--name", default="callbacks", help="results file name")


def run(args: argparse.Namespace, argv: Sequence[str]) -> None:
    out = Run(args.name, argv)
    images = [path.read_bytes() for path in TASK_IMAGES["classify"]]
    receiver = SlowReceiver(args.receiver_delay_s)
    sender: subprocess.Popen | None = None
    try:
        with VisionqStack(["classify"], env={"VISIONQ_CALLBACK_ALLOW": "127.0.0.1"}) as stack:
            env = {**os.environ, **stack.env(), "REDIS_URL": stack.redis_url}
            LOGS.mkdir(parents=True, exist_ok=True)
            with open(LOGS / "callbacks-sender.log", "w") as log:
                sender = subprocess.Popen([sys.executable, "-m", "visionq.callbacks"], env=env,
                                          stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True)
            client = redis.Redis.from_url(stack.redis_url)
            say("warm-up")
            wait_finished(client, submit_round(stack.url, images, 20, args.clients, None), 300)
            rounds: list[dict[str, Any]] = []
            callback_jobs = 0
            for number in range(args.rounds):
                for variant in VARIANTS:
                    url = receiver.url if variant == "callback" else None
                    ids = submit_round(stack.url, images, args.jobs, args.clients, url)
                    times = wait_finished(client, ids, 600)
                    callback_jobs += len(ids) if url else 0
                    span = times["last_finished"] - times["first_queued"]
                    row = {"round": number + 1, "variant": variant, "jobs": len(ids),
                           "failed": times["failed"], "span_s": round(span, 3),
                           "jobs_per_s": round(len(ids) / span, 2),
                           "webhooks_received_by_then": receiver.count}
                    rounds.append(row)
                    say(f"round {number + 1} {variant}: {row['jobs_per_s']} jobs/s, "
                        f"{receiver.count}/{callback_jobs} webhooks received so far")
            at_last_job = receiver.count
            drain_start = time.monotonic()
            while receiver.count < callback_jobs and (
                    time.monotonic() - drain_start < args.drain_timeout):
                time.sleep(0.2)
            drained_s = time.monotonic() - drain_start
            if sender.poll() is not None:
                raise RuntimeError(f"the sender exited; see {LOGS}/callbacks-sender.log")
    finally:
        stop_process(sender)
        receiver.close()
    medians = {v: round(statistics.median(r["jobs_per_s"] for r in rounds
                                          if r["variant"] == v), 2) for v in VARIANTS}
    out.data.update({
        "stack": "embedded Redis, API (2 gunicorn workers x 16 threads), classify worker "
                 "(one process per core), python -m visionq.callbacks (defaults: 16 attempts "
                 "at once)",
        "receiver_delay_s": args.receiver_delay_s, "jobs_per_round": args.jobs,
        "clients": args.clients, "rounds": rounds, "median_jobs_per_s": medians,
        "ratio_callback_to_none": ratio(medians["callback"], medians["none"]),
        "webhooks": {"expected": callback_jobs, "received_when_last_job_finished": at_last_job,
                     "received": receiver.count, "drain_s": round(drained_s, 1)},
        "note": "shared 2-core machine: noisy; re-run on a quiet one with the command above"})
    plots.bars(out.plot_path("jobs_per_s"), {f"round {r}": {
        v: next(x["jobs_per_s"] for x in rounds if x["round"] == r and x["variant"] == v)
        for v in VARIANTS} for r in range(1, args.rounds + 1)},
        f"classify jobs/s without / with a webhook per job (receiver answers after "
        f"{args.receiver_delay_s:g} s)", "jobs/s")
    out.finish()
    say(f"median jobs/s: {medians}; ratio callback/none "
        f"{out.data['ratio_callback_to_none']}; webhooks {receiver.count}/{callback_jobs}")
