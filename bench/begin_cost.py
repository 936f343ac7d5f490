"""``python -m bench begin-cost``: Redis CPU per job start, image through Lua vs plain GET.

A worker starts a job with ``JobStore.begin``: the begin script (status, attempts, record)
and the image.  The image used to come back through the script (Lua's ``GET`` copies it
into a Lua string, then into the reply; ``THROUGH_LUA`` rebuilds that script); now the API
stores it under a key derived from the job id and ``begin`` pipelines a plain ``GET`` after
the script.  Both
ways run here back to back, in rounds, on the same Redis (pinned to ``--redis-cpu`` when
given), on jobs admitted as the API admits them; the figure is Redis's own CPU (``INFO
cpu``) per begin, and the client's wall time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from typing import Any

import redis

from bench.broker_ceiling import _image
from bench.harness.common import Run, say
from bench.harness.stack import redis_server
from visionq.blobstore import RedisBlobStore
from visionq.jobs import JobStore
from visionq.jobs.scripts import BEGIN as _BEGIN_SCRIPT
from visionq.keys import COUNTS_KEY

WAYS = ("lua", "get")
THROUGH_LUA = _BEGIN_SCRIPT.replace(
    "return {attempt, redis.call('HGETALL', KEYS[1])}",
    "local key = redis.call('HGET', KEYS[1], 'blob')\n"
    "return {attempt, redis.call('HGETALL', KEYS[1]), key and redis.call('GET', key)}")
"""The begin script as it was: the image read inside it and returned through Lua."""
if THROUGH_LUA == _BEGIN_SCRIPT:
    raise ImportError("visionq.jobs' begin script (begin.lua) changed: update THROUGH_LUA")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image-kb", type=int, default=100, help="JPEG size per job")
    parser.add_argument("--jobs", type=int, default=3000, help="jobs per way and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis-cpu", type=int, default=None,
                        help="pin Redis to this CPU (taskset)")
    parser.add_argument("--name", default="begin_cost")


def _cpu_s(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def _measure(store: JobStore, client: redis.Redis, way: str, ids: list[str],
             image: bytes) -> dict[str, float]:
    through_lua = client.register_script(THROUGH_LUA)
    for start in range(0, len(ids), 100):
        store.admit("classify", [(job_id, RedisBlobStore.key_for(job_id), image)
                                 for job_id in ids[start:start + 100]],
                    queue="begin-cost", backlog_limit=10**9, blob_ttl_s=600)
    cpu, started = _cpu_s(client), time.perf_counter()
    for job_id in ids:
        if way == "lua":  # the script returns the image itself, as before
            reply = through_lua(keys=[store.key(job_id), COUNTS_KEY],
                                args=[repr(time.time()), "bench", ""])
            data = reply[2]
        else:
            data = store.begin(job_id, "bench", with_blob=True)[2]
        if data != image:
            raise AssertionError(f"{way}: job {job_id} did not get its image back")
    elapsed, cpu = time.perf_counter() - started, _cpu_s(client) - cpu
    client.flushdb()
    return {"redis_cpu_us_per_begin": round(cpu / len(ids) * 1e6, 1),
            "client_us_per_begin": round(elapsed / len(ids) * 1e6, 1)}


def run(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    results = Run(args.name, argv)
    pin = ["taskset", "-c", str(args.redis_cpu)] if args.redis_cpu is not None else []
    try:
        with redis_server(pin) as url:
            client = redis.Redis.from_url(url)
            store = JobStore(client, 600)
            image = _image(args.image_kb)
            rounds: list[dict[str, Any]] = []
            for index in range(args.rounds):
                row: dict[str, Any] = {"round": index}
                for way in (WAYS if index % 2 == 0 else WAYS[::-1]):  # alternate the order
                    ids = [f"{way}-{index}-{n}" for n in range(args.jobs)]
                    row[way] = _measure(store, client, way, ids, image)
                    say(f"round {index} {way}: {row[way]}")
                rounds.append(row)
        summary = {way: statistics.median(r[way]["redis_cpu_us_per_begin"] for r in rounds)
                   for way in WAYS}
        results.data.update(image_bytes=len(image), jobs=args.jobs, rounds=rounds,
                            median_redis_cpu_us_per_begin=summary,
                            saved_us=round(summary["lua"] - summary["get"], 1))
        say(f"Redis CPU per begin, median: through Lua {summary['lua']} µs, plain GET "
            f"{summary['get']} µs ({len(image)} B image)")
    finally:
        results.finish()
    return results.data
