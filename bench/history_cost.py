"""``python -m bench.history_cost``: what the durable job history costs (issue 19 part 5).
Goals: ≤ 1 CPU-ms per job, nothing added to a job's latency, and a page of a 1-million-row
SQLite history in < 100 ms.

Everything runs on throw-away servers started here: a Redis (the embedded valkey binary,
no persistence) and, when Debian's PostgreSQL binaries are installed, a PostgreSQL server
(``initdb`` in a temp dir, as the ``postgres`` user when run as root, ``fsync`` on).

1. **On the job's path** (the finishing script): ``--jobs`` jobs are created, started and
   finished with a realistic result (~1 kB JSON) by ``JobStore``, once with the finishing
   script that appends to the history stream and once with the same script without the
   ``XADD`` (variants interleaved in rounds of 1,000 jobs, so drift hits both).  Measured:
   the ``succeed`` round trip (p50/p99, what a worker waits for) and Redis' CPU per job
   (``INFO cpu`` deltas).  A third variant runs the history writer in another process,
   draining into SQLite while the jobs finish (the same Redis serves both).
2. **The writer** (off the job's path, in the API process): CPU-ms per job for reading the
   stream, inserting batches and acknowledging, into SQLite and into PostgreSQL, plus the
   Redis CPU per job it causes.
3. **Reading**: ``--rows`` rows (default 1,000,000) in SQLite and PostgreSQL, then pages of
   50 newest first: the first page, pages at random depths (keyset cursors), and filtered
   by status, task and submitter; p50/p99 per kind.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import redis

from bench.harness.common import Run, free_port, percentile, say, stop_process
from bench.harness.stack import redis_server
from visionq.history import Filters, HistoryStore, HistoryWriter, jobs_table, record_from_fields
from visionq.jobs import JobStore, scripts
from visionq.keys import HISTORY_STREAM_KEY

RESULT = {"model": "efficientnet_lite0", "model_version": "efficientnet_lite0-3b1f0c9e2d7a",
          "width": 640, "height": 480,
          "predictions": [{"label": f"label number {i}", "index": i, "confidence": 0.1 / (i + 1)}
                          for i in range(12)]}
"""About 1 kB of JSON, like a classify or detect result."""
ROUND = 1000


def _ms(values: Sequence[float], q: float) -> float | None:
    value = percentile(sorted(values), q)
    return None if value is None else round(value * 1000, 3)


def redis_cpu_s(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


@contextlib.contextmanager
def postgres_server() -> Iterator[str | None]:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        yield None
        return
    bin_dir = found[-1].parent
    data = Path(tempfile.mkdtemp(prefix="visionq-bench-postgres-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*prefix, str(bin_dir / "initdb"), "-D", str(data / "db"), "-A", "trust",
                    "-U", "visionq", "-E", "UTF8"], check=True, capture_output=True)
    port = free_port()
    process = subprocess.Popen(
        [*prefix, str(bin_dir / "postgres"), "-D", str(data / "db"), "-p", str(port), "-k",
         str(data), "-c", "listen_addresses=127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while subprocess.run([str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                             capture_output=True).returncode != 0:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("postgres did not start")
            time.sleep(0.2)
        yield f"postgresql://visionq@127.0.0.1:{port}/postgres"
    finally:
        import signal
        stop_process(process, sig=signal.SIGINT)
        shutil.rmtree(data, ignore_errors=True)


class NoHistoryJobStore(JobStore):
    """``JobStore`` whose finishing script does not append to the history stream."""

    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        super().__init__(client, ttl_s)
        self._finish = client.register_script(
            scripts.FINISH.replace(scripts.HISTORY_XADD, ""))


def _run_jobs(store: JobStore, n: int, tag: str) -> list[float]:
    """Create, start and finish ``n`` jobs; the ``succeed`` round trips (s)."""
    ids = [f"{tag}-{i}-{os.urandom(4).hex()}" for i in range(n)]
    store.admit("classify", [(job_id, f"visionq:blob:{job_id}", b"x") for job_id in ids],
                queue="bench", backlog_limit=10**9, blob_ttl_s=600, submitter="key:0123abcd")
    latencies = []
    for job_id in ids:
        store.begin(job_id, "bench-worker")
        started = time.perf_counter()
        store.succeed(job_id, RESULT, blob=f"visionq:blob:{job_id}")
        latencies.append(time.perf_counter() - started)
    return latencies


def _writer_process(redis_url: str, history_url: str, stop_path: str) -> None:
    store = HistoryStore(history_url)
    writer = HistoryWriter(redis.Redis.from_url(redis_url), store, block_ms=100)
    while not os.path.exists(stop_path):
        writer.run_once()
    while writer.run_once(block=False):
        pass
    store.dispose()


def job_path(redis_url: str, jobs: int, workdir: Path) -> dict[str, Any]:
    client = redis.Redis.from_url(redis_url)
    variants: dict[str, JobStore] = {"without_history": NoHistoryJobStore(client, 600),
                                     "with_history": JobStore(client, 600)}
    latencies: dict[str, list[float]] = {name: [] for name in variants}
    redis_cpu: dict[str, float] = {name: 0.0 for name in variants}
    for _round in range(max(1, jobs // ROUND)):
        for name, store in (variants.items() if _round % 2 == 0
                            else reversed(list(variants.items()))):
            before = redis_cpu_s(client)
            latencies[name] += _run_jobs(store, ROUND, name)
            redis_cpu[name] += redis_cpu_s(client) - before
        client.delete(HISTORY_STREAM_KEY)
    # with the writer draining into SQLite in another process at the same time
    stop = workdir / "stop-writer"
    writer = multiprocessing.get_context("spawn").Process(
        target=_writer_process, args=(redis_url, f"sqlite:///{workdir / 'concurrent.db'}",
                                      str(stop)))
    writer.start()
    name = "with_history_and_writer"
    latencies[name], redis_cpu[name] = [], 0.0
    for _round in range(max(1, jobs // ROUND)):
        before = redis_cpu_s(client)
        latencies[name] += _run_jobs(variants["with_history"], ROUND, name)
        redis_cpu[name] += redis_cpu_s(client) - before
    stop.touch()
    writer.join(300)
    n = len(latencies["with_history"])
    out = {name: {"jobs": len(values), "succeed_p50_ms": _ms(values, 50),
                  "succeed_p99_ms": _ms(values, 99),
                  "redis_cpu_ms_per_job_whole_life": round(redis_cpu[name] / len(values) * 1000,
                                                           4)}
           for name, values in latencies.items()}
    out["added_p99_ms"] = round(out["with_history"]["succeed_p99_ms"]
                                - out["without_history"]["succeed_p99_ms"], 3)
    out["added_redis_cpu_ms_per_job"] = round(
        out["with_history"]["redis_cpu_ms_per_job_whole_life"]
        - out["without_history"]["redis_cpu_ms_per_job_whole_life"], 4)
    say(f"job path ({n} jobs per variant): {json.dumps(out)}")
    return out


def writer_cost(redis_url: str, history_url: str, jobs: int) -> dict[str, Any]:
    client = redis.Redis.from_url(redis_url)
    client.delete(HISTORY_STREAM_KEY)
    store = JobStore(client, 600)
    for _ in range(max(1, jobs // ROUND)):
        _run_jobs(store, ROUND, "w")
    total = client.xlen(HISTORY_STREAM_KEY)
    history = HistoryStore(history_url)
    history.count()  # create the table outside the measurement
    writer = HistoryWriter(client, history)
    redis_before, cpu_before, wall_before = redis_cpu_s(client), time.process_time(), \
        time.perf_counter()
    while writer.written < total:
        writer.run_once(block=False)
    cpu = time.process_time() - cpu_before
    wall = time.perf_counter() - wall_before
    redis_cpu = redis_cpu_s(client) - redis_before
    writer.trim()
    history.dispose()
    out = {"jobs": total, "writer_cpu_ms_per_job": round(cpu / total * 1000, 4),
           "redis_cpu_ms_per_job": round(redis_cpu / total * 1000, 4),
           "jobs_per_s": round(total / wall)}
    say(f"writer into {history_url.split(':')[0]}: {json.dumps(out)}")
    return out


def _fill(store: HistoryStore, rows: int) -> float:
    store.count()
    started = time.perf_counter()
    statuses, tasks = ("succeeded",) * 9 + ("failed",), ("face", "detect", "classify")
    now = time.time()
    batch = 20_000
    template = {"task": "classify", "status": "succeeded", "attempts": "1", "worker": "w",
                "result": json.dumps(RESULT), "options": "{}", "blob": "visionq:blob:x"}
    for start in range(0, rows, batch):
        chunk = []
        for i in range(start, min(rows, start + batch)):
            queued = now - (rows - i) * 0.5  # one job every 0.5 s: ~6 days for 1M
            fields = dict(template, id=f"{i:012d}", task=tasks[i % 3],
                          status=statuses[i % 10], submitter=f"key:{i % 50:016x}",
                          queued_at=repr(queued), started_at=repr(queued + 0.01),
                          finished_at=repr(queued + 0.05))
            chunk.append(record_from_fields(fields))
        with store.engine.begin() as conn:
            conn.execute(jobs_table.insert(), chunk)
    return time.perf_counter() - started


def page_timings(history_url: str, rows: int, pages: int) -> dict[str, Any]:
    store = HistoryStore(history_url)
    fill_s = _fill(store, rows)
    rng = random.Random(19)
    newest = store.page(limit=1)[0].queued_at or 0.0
    span = rows * 0.5

    def timed(call: Callable[[], list[Any]]) -> float:
        started = time.perf_counter()
        assert call() is not None
        return time.perf_counter() - started

    kinds: dict[str, Callable[[], list[Any]]] = {
        "first_page": lambda: store.page(limit=50),
        "deep_page_keyset": lambda: store.page(limit=50, before=(
            newest - rng.random() * span, "~")),
        "status_failed_deep": lambda: store.page(Filters(status="failed"), limit=50, before=(
            newest - rng.random() * span, "~")),
        "task_detect_deep": lambda: store.page(Filters(task="detect"), limit=50, before=(
            newest - rng.random() * span, "~")),
        "submitter_deep": lambda: store.page(Filters(submitter=f"key:{7:016x}"), limit=50,
                                             before=(newest - rng.random() * span, "~")),
        "time_range_one_hour": lambda: store.page(Filters(
            since=(start := newest - rng.random() * span), until=start + 3600), limit=50),
    }
    out: dict[str, Any] = {"rows": store.count(), "fill_s": round(fill_s, 1)}
    for name, call in kinds.items():
        timed(call)  # warm
        values = [timed(call) for _ in range(pages)]
        out[name] = {"p50_ms": _ms(values, 50), "p99_ms": _ms(values, 99),
                     "max_ms": _ms(values, 100)}
    started = time.perf_counter()
    deleted = store.prune(max_age_s=None, max_rows=rows - 20_000)
    out["prune_20000_rows_s"] = round(time.perf_counter() - started, 2)
    out["pruned"] = deleted
    store.dispose()
    say(f"pages on {history_url.split(':')[0]}: {json.dumps(out)}")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs per variant")
    parser.add_argument("--rows", type=int, default=1_000_000, help="history rows to page")
    parser.add_argument("--pages", type=int, default=200, help="pages timed per kind")


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    run = Run("history_cost", argv)
    run.data["parameters"] = vars(args)
    workdir = Path(tempfile.mkdtemp(prefix="visionq-bench-history-"))
    try:
        with redis_server() as redis_url, postgres_server() as postgres_url:
            run.data["job_path"] = job_path(redis_url, args.jobs, workdir)
            run.data["writer"] = {"sqlite": writer_cost(
                redis_url, f"sqlite:///{workdir / 'writer.db'}", args.jobs)}
            if postgres_url:
                run.data["writer"]["postgresql"] = writer_cost(redis_url, postgres_url,
                                                               args.jobs)
            run.data["pages"] = {"sqlite": page_timings(
                f"sqlite:///{workdir / 'pages.db'}", args.rows, args.pages)}
            if postgres_url:
                from visionq.history import metadata
                store = HistoryStore(postgres_url)
                metadata.drop_all(store.engine)
                store.dispose()
                run.data["pages"]["postgresql"] = page_timings(postgres_url, args.rows,
                                                               args.pages)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    run.finish()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m bench.history_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv), ["history-cost", *argv])


if __name__ == "__main__":
    raise SystemExit(main())
