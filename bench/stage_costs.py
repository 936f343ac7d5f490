"""``python -m bench.stage_costs``: CPU per call of each per-job step, measured alone in one
thread with ``time.thread_time()`` (issue 14).

A cross-check for ``bench/profile_stages.py``: py-spy counts a thread that is runnable but
waiting for a core as busy, so on a loaded 2-core machine the steps that wake up most
(every Redis reply) look bigger than they are.  ``thread_time`` counts only the time this
thread was on a core (user + kernel, loopback TCP included), whatever else runs, so these
figures barely move with the machine's load.  They are client-side costs: the Redis
server's own CPU is measured by ``bench.profile_record`` (``redis`` process group).

Runs against a throw-away Redis (the embedded valkey) with the real code: redis-py client
as the services build it, ``JobStore``, ``RedisBlobStore``, Celery's ``send_task``, the
long-poll's pub/sub set-up and tear-down, ``probe``/``decode``, werkzeug's multipart
parser, the Prometheus hooks, the autoscaler marks, a Celery task event, and the whole
Flask ``POST /v1/jobs`` handler through the test client (no gunicorn).  Prints a table and
writes ``<out-dir>/stage_costs.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.common import FIXTURES, RESULTS, load_average, machine_facts, say
from bench.http import multipart

# prometheus_client picks its multiprocess value class at import: nothing that imports it
# (bench.stack, api, monitoring...) may be imported before run() sets the directory.
SUBMIT_IMAGE = FIXTURES / "detect" / "images" / "000000000061.jpg"
PNG_IMAGE = FIXTURES / "classify" / "chelsea.png"
DEFAULT_OUT = RESULTS / "profiles" / "before"


def timed(fn: Callable[[], Any], n: int, setup: Callable[[], Any] | None = None,
          warmup: int = 10) -> dict[str, float]:
    """Median and mean thread-CPU and wall microseconds per call of ``fn`` (``setup`` runs
    before each call, outside the timing, when given)."""
    for _ in range(warmup):
        if setup:
            setup()
        fn()
    cpu, wall = [], []
    for _ in range(n):
        if setup:
            setup()
        c0, w0 = time.thread_time(), time.perf_counter()
        fn()
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - w0)
    return {"cpu_us_median": round(statistics.median(cpu) * 1e6, 1),
            "cpu_us_mean": round(statistics.fmean(cpu) * 1e6, 1),
            "wall_us_median": round(statistics.median(wall) * 1e6, 1), "calls": n}


def run(n: int, out_dir: Path) -> dict[str, Any]:
    facts = machine_facts()
    state = tempfile.TemporaryDirectory(prefix="visionq-costs-")
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", state.name)  # as `visionq up` runs
    os.environ["VISIONQ_MAX_BACKLOG_CLASSIFY"] = "10000000"
    from bench.stack import free_port
    from visionq.embedded_redis import server_command, wait_ready

    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    server = subprocess.Popen(server_command(port, None, persistent=False),
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        wait_ready(url, 15, server)
        return _measure(url, n, out_dir, facts)
    finally:
        server.terminate()
        server.wait(10)
        state.cleanup()


def _measure(url: str, n: int, out_dir: Path, facts: dict[str, Any]) -> dict[str, Any]:
    from celery import Celery
    from celery import uuid as celery_uuid
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request

    from api import create_app
    from api.services import EXTENSION_KEY
    from monitoring.metrics import metrics
    from monitoring.record import record_job
    from visionq.blobstore import RedisBlobStore
    from visionq.imaging import ImageLimits, decode, probe
    from visionq.jobs import JobStore
    from visionq.redis_conn import redis_client

    try:  # the layout after the house-keeping refactor
        from visionq.broker import mark_busy, mark_idle, record_service_time
    except ImportError:  # commit 169936b and before
        from autoscale.observe import (  # type: ignore[no-redef]
            mark_busy,
            mark_idle,
            record_service_time,
        )

    flask_app = create_app({"redis_url": url})  # its Celery producer publishes to `url`
    enqueue = flask_app.extensions[EXTENSION_KEY].enqueue  # (task, job_id), both layouts
    client = redis_client(url)
    jobs = JobStore(client, 3600)
    blobs = RedisBlobStore(client, 3600)
    jpeg, png = SUBMIT_IMAGE.read_bytes(), PNG_IMAGE.read_bytes()
    limits = ImageLimits()
    body, ctype = multipart({"image": jpeg}, SUBMIT_IMAGE.name)
    results: dict[str, dict[str, float]] = {}

    def step(key: str, label: str, fn: Callable[[], Any],
             setup: Callable[[], Any] | None = None, calls: int = n) -> None:
        results[key] = {"what": label, **timed(fn, calls, setup)}
        say(f"{key} ({label}): {results[key]['cpu_us_median']:.0f} us CPU "
            f"({results[key]['wall_us_median']:.0f} us wall)")

    # -- Redis round trips (API and worker) --------------------------------------------------
    step("redis_llen", "redis LLEN (one bare round trip: check_backlog)",
         lambda: client.llen("classify"))
    keys: list[str] = []
    step("blob_put", "blob put 100 KB (SET EX)", lambda: keys.append(blobs.put(jpeg)))
    step("blob_get", "blob get 100 KB (GET)", lambda: blobs.get(keys[0]))
    step("blob_delete", "blob delete (DEL)", lambda: blobs.delete(keys.pop()),
         calls=min(n, len(keys) - 20))
    created: list[str] = []
    step("job_create", "job create (pipeline: HSET EXPIRE ZADD ZREMRANGEBYRANK)",
         lambda: created.append(jobs.create("classify", keys[0], {}).id))
    step("job_get", "job get (HGETALL + parse)", lambda: jobs.get(created[0]))
    todo = list(created)
    step("job_start", "job start (EVALSHA)", lambda: jobs.start(todo.pop(), "bench@host"),
         calls=min(n // 2, len(todo) - 20))
    if hasattr(jobs, "begin"):  # start + record + image in one script (after issue 14)
        step("job_begin", "job begin (EVALSHA: start, record, image)",
             lambda: jobs.begin(todo.pop(), "bench@host", True), calls=min(n // 2,
                                                                           len(todo) - 20))
    started = [j for j in created if j not in set(todo)]
    step("job_succeed", "job succeed (EVALSHA: HSET, counters, PUBLISH)",
         lambda: jobs.succeed(started.pop(), {"predictions": [{"label": "cat",
                                                                 "confidence": 0.9}] * 5}),
         calls=min(n, len(started) - 20))

    def pubsub_cycle() -> None:
        pubsub = client.pubsub()
        try:
            pubsub.subscribe(jobs.channel("x"))
            while True:
                message = pubsub.get_message(timeout=1.0)
                if message is not None and message["type"] == "subscribe":
                    break
        finally:
            pubsub.close()

    step("pubsub_cycle", "long-poll pub/sub set-up + tear-down (new connection each)", pubsub_cycle)
    final = created[-1]
    jobs.succeed(final, {})
    step("wait_finished", "JobStore.wait on a finished job (HGETALL only)",
         lambda: jobs.wait(final, 5))
    # -- Celery ----------------------------------------------------------------------------
    step("celery_enqueue", "celery enqueue (send_task -> LPUSH, + publish metrics hook)",
         lambda: enqueue("classify", uuid.uuid4().hex))
    client.delete("classify")
    celery_app = Celery("bench", broker=url)  # events cost the same from any app
    with celery_app.connection_for_write() as connection:
        dispatcher = celery_app.events.Dispatcher(connection, hostname="bench@host",
                                                  enabled=True, buffer_while_offline=False)
        step("celery_event", "celery task event (one PUBLISH; a task sends 3)",
             lambda: dispatcher.send("task-succeeded", uuid=celery_uuid(),
                                     result="{'job': 'x'}", runtime=0.01))
        dispatcher.close()
    step("autoscale_marks", "autoscale marks (ZADD; ZREM; pipeline LPUSH LTRIM INCRBY)", lambda: (
        mark_busy(client, "host", "t"), mark_idle(client, "host", "t"),
        record_service_time(client, "classify", 0.01)))
    # -- images ----------------------------------------------------------------------------
    step("probe_jpeg", "probe JPEG 100 KB", lambda: probe(jpeg, limits))
    step("probe_png", "probe PNG (chelsea.png: getexif() decodes it all)",
         lambda: probe(png, limits))
    step("decode_jpeg_224", "decode JPEG 100 KB at 224 px",
         lambda: decode(jpeg, limits, max_side=224))
    step("decode_png_224", "decode PNG at 224 px", lambda: decode(png, limits, max_side=224))
    # -- metrics ---------------------------------------------------------------------------
    m = metrics()
    job = jobs.get(created[1])

    def request_hooks() -> None:
        m.http_requests.labels(method="POST", route="/v1/jobs", status="202").inc()
        m.http_latency.labels(method="POST", route="/v1/jobs").observe(0.004)

    step("metrics_request", "metrics: API request hooks (counter + histogram)", request_hooks)
    step("metrics_record_job", "metrics: worker record_job (counter + 3 histograms + goodput)",
         lambda: record_job("classify", "succeeded", None, job))
    # -- HTTP --------------------------------------------------------------------------------
    environs: list[dict[str, Any]] = []

    def fresh_environ() -> None:
        environs.append(EnvironBuilder(method="POST", path="/v1/jobs", data=body,
                                       content_type=ctype).get_environ())

    step("multipart_100k", "multipart parse 100 KB (werkzeug)",
         lambda: Request(environs.pop()).files["image"].read(), setup=fresh_environ)
    test_client = flask_app.test_client()
    step("flask_submit", "Flask POST /v1/jobs 100 KB, whole handler (test client, no gunicorn)",
         lambda: test_client.post("/v1/jobs?task=classify", data=body, content_type=ctype))
    client.flushdb()
    data = {"n": n, "results": results}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "stage_costs.json"
    data["machine"] = {**facts, "load_average_end": load_average()}
    data["command"] = "python -m bench.stage_costs " + " ".join(sys.argv[1:])
    path.write_text(json.dumps(data, indent=1) + "\n")
    say(f"wrote {path}")
    return data


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stage_costs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=300, help="timed calls per step")
    parser.add_argument("--out-dir", default=str(DEFAULT_OUT))
    args = parser.parse_args(argv)
    run(args.n, Path(args.out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
