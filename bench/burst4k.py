"""``python -m bench burst4k``: 200 4K JPEGs posted within 10 s to a face stack; never OOM.

The issue's part 5 (CodeProject.AI users report killing their server with 15
high-resolution images 0.1 s apart).  A ``VisionqStack(["face"])`` (API under gunicorn,
the real face worker, one pool child per core, embedded Redis) gets ``--images`` 3840x2160
JPEGs (q90, built like ``bench face4k``'s) at an even pace over ``--seconds``, from a pool of
client threads.  Recorded:

- every response: 202, or 503 ``queue_full`` with ``Retry-After`` (anything else, or no
  answer, is a failure of the run), and the POST latency;
- the resident memory of every process of the stack (gunicorn master and workers, Celery
  main process and pool children, Redis), sampled every 0.2 s from /proc until every
  accepted job has finished, and its peak per process;
- every accepted job's final state (must be ``succeeded``, once: ``attempts`` 1).

``--backlog N`` sets ``VISIONQ_MAX_BACKLOG_FACE`` (default: the shipped 1000, so all are
accepted); a small one exercises the 503 path.  Writes bench/results/<name>.json and
<name>_rss.png.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
import requests

from bench.face4k import build_photo
from bench.harness import plots
from bench.harness.common import Run, cores, latency_summary, say
from bench.harness.procstat import children, rss_kb
from bench.harness.stack import VisionqStack
from visionq.jobs import JobStore

SAMPLE_S = 0.2
FINISH_TIMEOUT_S = 900.0
"""Bound of the wait for the accepted jobs (200 4K faces at ~0.35 CPU-s each, on a busy
2-core machine, take a few minutes at most)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="the images are posted evenly over this long")
    parser.add_argument("--photos", type=int, default=4, help="distinct 4K photos to cycle")
    parser.add_argument("--backlog", type=int, default=0,
                        help="VISIONQ_MAX_BACKLOG_FACE (0: the shipped default)")
    parser.add_argument("--clients", type=int, default=32, help="client threads")
    parser.add_argument("--name", default="burst4k")


class RssSampler:
    """Peak and timeline of the RSS of every process under the given roots."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots
        self.peak_kb: dict[str, int] = {}
        self.timeline: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.monotonic()

    def processes(self) -> dict[str, int]:
        """label -> pid: each root and its direct children (gunicorn workers, pool)."""
        found = {}
        for role, pid in self.roots.items():
            found[f"{role} main"] = pid
            for index, child in enumerate(sorted(children(pid))):
                found[f"{role} child {index + 1}"] = child
        return found

    def sample(self) -> None:
        now = round(time.monotonic() - self._t0, 2)
        row: dict[str, Any] = {"t_s": now}
        for label, pid in self.processes().items():
            kb = rss_kb(pid)
            if kb:
                row[label] = kb
                self.peak_kb[label] = max(self.peak_kb.get(label, 0), kb)
        self.timeline.append(row)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.sample()

    def __enter__(self) -> RssSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def post_all(url: str, bodies: list[bytes], count: int, seconds: float,
             clients: int) -> list[dict[str, Any]]:
    """POST ``count`` images at an even pace over ``seconds``; one record per request."""
    start = time.monotonic()
    records: list[dict[str, Any]] = [{} for _ in range(count)]

    def one(index: int) -> None:
        due = start + index * seconds / count
        time.sleep(max(0.0, due - time.monotonic()))
        sent = time.monotonic()
        record = records[index]
        record["sent_s"] = round(sent - start, 3)
        try:
            response = requests.post(f"{url}/v1/jobs", params={"task": "face"},
                                     files={"image": ("4k.jpg", bodies[index % len(bodies)],
                                                      "image/jpeg")}, timeout=120)
        except requests.RequestException as exc:
            record.update(status=None, error=repr(exc))
            return
        record.update(status=response.status_code, latency_s=time.monotonic() - sent,
                      retry_after=response.headers.get("Retry-After"))
        try:
            body = response.json()
        except ValueError:
            body = {}
        record["id" if response.status_code == 202 else "code"] = \
            body.get("id") if response.status_code == 202 else body.get("code")

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(count)))
    return records


def wait_final(store: JobStore, ids: list[str]) -> dict[str, Any]:
    deadline = time.monotonic() + FINISH_TIMEOUT_S
    pending = set(ids)
    while pending and time.monotonic() < deadline:
        for job_id in list(pending):
            job = store.get(job_id)
            if job and job.status in ("succeeded", "failed"):
                pending.discard(job_id)
        time.sleep(0.5)
    jobs = [store.get(i) for i in ids]
    return {
        "accepted": len(ids),
        "succeeded": sum(1 for j in jobs if j and j.status == "succeeded"),
        "failed": sum(1 for j in jobs if j and j.status == "failed"),
        "unfinished": len(pending),
        "ran_more_than_once": sum(1 for j in jobs if j and j.attempts > 1),
        "failure_codes": sorted({str(j.code) for j in jobs if j and j.status == "failed"}),
    }


def plot_rss(path: Any, timeline: list[dict[str, Any]], burst_end_s: float) -> None:
    plt = plots.plt

    labels = sorted({k for row in timeline for k in row if k != "t_s"})
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label in labels:
        points = [(row["t_s"], row[label] / 1024) for row in timeline if label in row]
        ax.plot([p[0] for p in points], [p[1] for p in points], label=label, lw=1)
    ax.axvline(burst_end_s, color="grey", ls=":", lw=1, label="last image posted")
    ax.set_xlabel("seconds since the first image")
    ax.set_ylabel("RSS (MiB)")
    ax.set_title("200 4K JPEGs in 10 s: resident memory per process")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    plots.save(fig, path, dpi=110)


def run(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    results = Run(args.name, argv)
    say(f"building {args.photos} 4K photos")
    bodies = [build_photo(seed)[0] for seed in range(args.photos)]
    env = {"VISIONQ_MAX_BACKLOG_FACE": str(args.backlog)} if args.backlog else {}
    results.data["setup"] = {"images": args.images, "seconds": args.seconds,
                             "photo_bytes": [len(b) for b in bodies], "clients": args.clients,
                             "backlog": args.backlog or "default (1000)", "cores": cores()}
    with VisionqStack(["face"], env=env) as stack:
        results.data["setup"]["stack"] = stack.describe()
        store = JobStore(redis.Redis.from_url(stack.redis_url), 3600)
        with RssSampler(stack.pids()) as sampler:
            say(f"posting {args.images} 4K JPEGs over {args.seconds:g} s")
            records = post_all(stack.url, bodies, args.images, args.seconds, args.clients)
            burst_end = max(r.get("sent_s", 0.0) for r in records)
            ids = [r["id"] for r in records if r.get("status") == 202]
            say(f"{len(ids)} accepted; waiting for them to finish")
            outcome = wait_final(store, ids)
        info = redis.Redis.from_url(stack.redis_url).info("memory")
    statuses: dict[str, int] = {}
    for record in records:
        statuses[str(record.get("status"))] = statuses.get(str(record.get("status")), 0) + 1
    shed = [r for r in records if r.get("status") == 503]
    results.data["responses"] = {
        "by_status": statuses,
        "unanswered": sum(1 for r in records if r.get("status") is None),
        "unexpected": [r for r in records if r.get("status") not in (202, 503)],
        "shed_all_queue_full_with_retry_after": all(
            r.get("code") == "queue_full" and r.get("retry_after") for r in shed),
        "post_latency_s": latency_summary([r["latency_s"] for r in records
                                           if "latency_s" in r]),
        "last_sent_s": burst_end,
    }
    results.data["jobs"] = outcome
    results.data["rss_peak_mib"] = {k: round(v / 1024, 1)
                                    for k, v in sorted(sampler.peak_kb.items())}
    results.data["rss_peak_total_mib"] = round(
        max(sum(v for k, v in row.items() if k != "t_s") for row in sampler.timeline) / 1024, 1)
    results.data["redis_used_memory_peak_mib"] = round(info["used_memory_peak"] / 2**20, 1)
    results.data["rss_timeline"] = sampler.timeline
    plot_rss(results.plot_path("rss"), sampler.timeline, burst_end)
    results.finish()
    say(f"responses {statuses}; jobs {outcome}; peak RSS MiB {results.data['rss_peak_mib']}")
    return results.data


if __name__ == "__main__":  # python -m bench.burst4k
    import sys

    parser = argparse.ArgumentParser(prog="python -m bench.burst4k", description=__doc__)
    add_arguments(parser)
    run(parser.parse_args(sys.argv[1:]), ["burst4k", *sys.argv[1:]])
