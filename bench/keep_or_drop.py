"""What two pieces of cleverness still earn, each on its own headline figure, in one run
(issue 27: keep a piece only where it earns >= 10 %).

* Claiming (``workers/claim.py``): jobs/s on a deep queue of small jobs, with claiming off
  (``VISIONQ_CLAIM_MAX=1``) and on (``4``, the default), measured by ``bench.broker_ceiling``
  (real Redis, real Celery workers of the no-op model, jobs admitted as the API does).
* The multipart fork (the old ``api/multipart.py``: werkzeug 3.1's parse loop copied, to avoid
  two regex compilations per upload) against plain werkzeug (``flask.Request``): CPU ms per
  ``POST /v1/jobs`` of a 100 KB image, through the real app (auth, parse, admit script to a
  real Redis) in-process, so the parse is a larger share than over HTTP; also the parse
  alone.  The fork was dropped after this measurement (eafb4fd): here its side is skipped
  (``fork_available: false``); to measure it again, run the command in a worktree of
  1805f9f (``git worktree add /tmp/kd 1805f9f``).

Rounds alternate the two sides, so both see the same load; the machine is shared and busy,
so read the ratios, not the absolute figures.

    python -m bench keep-or-drop --rounds 3
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import broker_ceiling
from bench.harness import plots
from bench.harness.common import REPO, Run, free_port, say, stop_process
from bench.harness.procstat import tree_cpu_s
from bench.harness.stack import LOGS, check_ready, exited


def _jpeg_about(kb: int) -> bytes:
    return broker_ceiling._image(kb)  # noqa: SLF001 - the same images the ceiling bench sends


def claiming(args: argparse.Namespace) -> dict[str, Any]:
    """Alternate claiming off/on for ``args.rounds`` rounds of the broker ceiling bench."""
    ceiling = argparse.Namespace(jobs=args.jobs, producers=2, workers=2, threads=8,
                                 timeout=600, redis_cpu=None, image_kb=0)
    log_dir = LOGS / "keep_or_drop"
    rates: dict[str, list[float]] = {"off": [], "on": []}
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(args.rounds):
        for side, claim_max in (("off", "1"), ("on", "4")):
            os.environ["VISIONQ_CLAIM_MAX"] = claim_max
            point = broker_ceiling.measure_mode("off", ceiling, log_dir)
            rates[side].append(point["jobs_s_measured"])
            cpu[side].append(point["worker_cpu_ms_per_job"])
            say(f"claiming {side}: {point['jobs_s_measured']} jobs/s, worker "
                f"{point['worker_cpu_ms_per_job']} CPU-ms/job")
    os.environ.pop("VISIONQ_CLAIM_MAX", None)
    ratios = [on / off for on, off in zip(rates["on"], rates["off"], strict=True)]
    return {"headline": "jobs/s, deep queue of small jobs (no-op model)",
            "jobs_per_round": args.jobs, "jobs_s": rates, "worker_cpu_ms_per_job": cpu,
            "ratio_on_over_off": [round(r, 3) for r in ratios],
            "median_gain": round(statistics.median(ratios) - 1, 3)}


def _uploads(image: bytes, count: int) -> list[tuple[bytes, str]]:
    """``count`` bodies of the same image, each with a fresh boundary as every client
    draws one (the same boundary again would hit Python's pattern cache)."""
    from bench.harness.http import multipart as encode

    return [encode({"image": image}, "image.jpg") for _ in range(count)]


def _post_cpu_ms(client: Any, uploads: list[tuple[bytes, str]]) -> float:
    started = time.process_time()
    for body, ctype in uploads:
        reply = client.post("/v1/jobs?task=classify", data=io.BytesIO(body),
                            headers={"Content-Type": ctype})
        if reply.status_code != 202:
            raise RuntimeError(f"POST /v1/jobs: {reply.status_code} {reply.data[:200]!r}")
    return (time.process_time() - started) * 1000 / len(uploads)


def _parse_ms(request_class: type, uploads: list[tuple[bytes, str]]) -> float:
    from werkzeug.test import EnvironBuilder

    environs = [EnvironBuilder(method="POST", data=body, content_type=ctype).get_environ()
                for body, ctype in uploads]
    started = time.process_time()
    for environ in environs:
        request_class(environ).files["image"].read()
    return (time.process_time() - started) * 1000 / len(uploads)


def api(plain: bool = False) -> Any:
    """gunicorn's app factory for the HTTP side: the API, with plain werkzeug's request
    class when ``plain``."""
    import flask

    from api import create_app

    app = create_app()
    if plain:
        app.request_class = flask.Request
    return app


def _serve(url: str, port: int, plain: bool, tmp: str) -> subprocess.Popen:
    env = {**os.environ, "REDIS_URL": url, "VISIONQ_HISTORY_WRITER": "false",
           "VISIONQ_HISTORY_URL": f"sqlite:///{tmp}/history-{port}.sqlite3",
           "VISIONQ_MAX_BACKLOG_CLASSIFY": "10000000", "VISIONQ_STATE_DIR": tmp,
           "VISIONQ_METRICS": "0"}
    log = open(f"{tmp}/api-{port}.log", "wb")  # noqa: SIM115 - the server's, closed with tmp
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "1", "--threads", "4", "-b",
         f"127.0.0.1:{port}", "--no-control-socket",
         f"bench.keep_or_drop:api(plain={plain})"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _http_round(base: str, pid: int, uploads: list[tuple[bytes, str]]) -> tuple[float, float]:
    """(server CPU ms per request, requests/s with one client in a closed loop)."""
    import requests

    with requests.Session() as session:
        session.get(f"{base}/healthz", timeout=30)
        cpu_before, started = tree_cpu_s([pid]), time.monotonic()
        for body, ctype in uploads:
            reply = session.post(f"{base}/v1/jobs?task=classify", data=body,
                                 headers={"Content-Type": ctype}, timeout=30)
            if reply.status_code != 202:
                raise RuntimeError(f"POST /v1/jobs: {reply.status_code} {reply.text[:200]}")
        elapsed, cpu = time.monotonic() - started, tree_cpu_s([pid]) - cpu_before
    return cpu * 1000 / len(uploads), len(uploads) / elapsed


def multipart(args: argparse.Namespace) -> dict[str, Any]:
    """The fork against plain werkzeug: server CPU per POST /v1/jobs over HTTP (gunicorn,
    the headline), the same in-process (no HTTP server), and the parse alone."""
    import flask
    import redis

    from api import create_app
    from visionq.embedded_redis import server_command, wait_ready

    try:
        from api.multipart import VisionqRequest  # type: ignore[import-not-found]
    except ImportError:
        return {"fork_available": False}
    image = _jpeg_about(100)
    sides = {"fork": VisionqRequest, "werkzeug": flask.Request}
    tmp = tempfile.TemporaryDirectory(prefix="visionq-keep-or-drop-")
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    server = subprocess.Popen(server_command(port, Path(tmp.name) / "redis", persistent=False),
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                              start_new_session=True)
    figures: dict[str, dict[str, list[float]]] = {
        what: {side: [] for side in sides}
        for what in ("http_cpu_ms", "http_requests_s", "inprocess_cpu_ms", "parse_cpu_ms")}
    apis: dict[str, tuple[subprocess.Popen, str]] = {}
    try:
        wait_ready(url, 15, server)
        for side in sides:
            api_port = free_port()
            apis[side] = (_serve(url, api_port, side == "werkzeug", tmp.name),
                          f"http://127.0.0.1:{api_port}")
        for process, base in apis.values():
            check_ready(base, "/healthz", None, [], 60, exited(process, f"the API at {base}"))
        app = create_app({"redis_url": url, "history_writer": False,
                          "history_url": f"sqlite:///{tmp.name}/history.sqlite3",
                          "max_backlog_classify": 10_000_000})
        client, conn = app.test_client(), redis.Redis.from_url(url)
        for _ in range(args.rounds):
            for side, request_class in sides.items():
                process, base = apis[side]
                cpu_ms, rate = _http_round(base, process.pid, _uploads(image, args.requests))
                figures["http_cpu_ms"][side].append(cpu_ms)
                figures["http_requests_s"][side].append(rate)
                app.request_class = request_class
                figures["inprocess_cpu_ms"][side].append(
                    _post_cpu_ms(client, _uploads(image, args.requests)))
                figures["parse_cpu_ms"][side].append(
                    _parse_ms(request_class, _uploads(image, args.requests)))
                conn.flushdb()
    finally:
        for process, _ in apis.values():
            stop_process(process, timeout_s=20)
        stop_process(server, timeout_s=20)
        tmp.cleanup()

    def gain(what: str) -> float:
        werkzeug, fork = figures[what]["werkzeug"], figures[what]["fork"]
        return round(statistics.median(w / f for w, f in zip(werkzeug, fork, strict=True)) - 1, 3)

    return {"fork_available": True,
            "headline": "server CPU ms per POST /v1/jobs of a 100 KB image over HTTP "
                        "(gunicorn, 1 process x 4 threads): requests/s per core = 1000 / it",
            "requests_per_round": args.requests, "image_bytes": len(image),
            **{what: {side: [round(v, 3) for v in values] for side, values in by_side.items()}
               for what, by_side in figures.items()},
            "median_gain": gain("http_cpu_ms"),
            "median_gain_inprocess": gain("inprocess_cpu_ms"),
            "median_parse_saving_ms": round(statistics.median(
                w - f for w, f in zip(figures["parse_cpu_ms"]["werkzeug"],
                                      figures["parse_cpu_ms"]["fork"], strict=True)), 3)}


def plot(run: Run) -> None:
    """Each piece's ratio per round (its side on / off) against the 10 % bar."""
    plt = plots.plt

    series = {"claiming: jobs/s on / off": run.data.get("claiming", {}).get("ratio_on_over_off"),
              "multipart fork: API CPU per upload, werkzeug / fork":
                  _ratios(run.data.get("multipart", {}), "http_cpu_ms")}
    series = {name: values for name, values in series.items() if values}
    if not series:
        return
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for index, (name, values) in enumerate(series.items()):
        ax.scatter([index] * len(values), values, label=name)
    ax.axhline(1.10, color="grey", linestyle="--", label="keep at >= 1.10")
    ax.axhline(1.0, color="black", linewidth=0.5)
    ax.set_xticks(range(len(series)), [name.split(":")[0] for name in series])
    ax.set_ylabel("gain ratio per round")
    ax.set_title("What each piece still earns (rounds alternate; busy machine)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    plots.save(fig, run.plot_path("ratios"), dpi=110)


def _ratios(piece: dict[str, Any], what: str) -> list[float] | None:
    if not piece.get("fork_available"):
        return None
    return [round(w / f, 3) for w, f in zip(piece[what]["werkzeug"], piece[what]["fork"],
                                             strict=True)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per piece")
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per claiming round")
    parser.add_argument("--requests", type=int, default=300,
                        help="uploads per multipart round")
    parser.add_argument("--pieces", default="multipart,claiming")
    parser.add_argument("--name", default="keep_or_drop")


def run(args: argparse.Namespace, argv: Sequence[str]) -> None:
    bench_run = Run(args.name, argv)
    pieces = {p.strip() for p in args.pieces.split(",")}
    try:
        if "multipart" in pieces:
            bench_run.data["multipart"] = multipart(args)
            say(f"multipart: {bench_run.data['multipart']}")
        if "claiming" in pieces:
            bench_run.data["claiming"] = claiming(args)
            say(f"claiming: {bench_run.data['claiming']}")
        bench_run.data["rule"] = "keep a piece where its median gain >= 0.10"
        plot(bench_run)
    finally:
        bench_run.finish()
