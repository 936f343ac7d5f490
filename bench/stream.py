"""``python -m bench stream``: ``/v1/stream`` (one WebSocket, credit window) against the REST
job API (``POST /v1/jobs`` + long-poll ``GET /v1/jobs/<id>?wait``) in one run, with the same
images, the same stack and the same number of images in flight (the window).

1. **Throughput and cost** for 320×320 JPEGs and 1280×720 camera frames (cut from the
   shared COCO fixtures): images/s, per-image latency (send -> result) and CPU-ms per image
   of the API processes, of the client, and of everything (API + workers + Redis + client),
   from /proc.  Each point is warmed up first; REST and stream alternate.
2. **Many connections held**: ``--hold-conns`` streams (200, seed 000's setting) each
   offering ``--hold-rate`` frames/s for ``--hold-s`` seconds: results lost (sent, never
   answered), rate achieved, streams refused, and the API's resident memory over time.

Writes ``bench/results/<name>.json``, ``<name>_throughput.png``, ``<name>_cpu.png`` and
``<name>_hold_rss.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from bench.harness.common import FIXTURES, REPO, Run, latency_summary, ratio, say
from bench.harness.procstat import children, rss_kb, tree_cpu_s
from bench.harness.stack import VisionqStack
from visionq.client import StreamClient, connect_stream
from visionq.imaging import DecodedImage
from visionq.options import TASK_OPTIONS
from visionq.stream_protocol import header_frame, is_final
from workers.model import ModelBase

SIZES = {"320x320": (320, 320), "1280x720": (1280, 720)}
SOURCES = sorted((FIXTURES / "detect" / "images").glob("*.jpg"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", default="classify",
                        help="queue (and real model) the images go to")
    parser.add_argument("--images", type=int, default=300, help="images per point (320×320)")
    parser.add_argument("--frames", type=int, default=150, help="images per point (1280×720)")
    parser.add_argument("--window", type=int, default=8,
                        help="images in flight: the stream's credits and the REST threads")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--hold-conns", type=int, default=200)
    parser.add_argument("--hold-rate", type=float, default=2.0, help="frames/s per connection")
    parser.add_argument("--hold-s", type=float, default=60.0)
    parser.add_argument("--no-inference", action="store_true",
                        help="classify with bench.stream:NoInference (answers without running "
                             "a model): the API/Redis path is the bottleneck, not inference")
    parser.add_argument("--skip-hold", action="store_true")
    parser.add_argument("--name", default="stream")


class NoInference(ModelBase):
    """``--no-inference``: a classify "model" that answers at once.  The worker still
    fetches, decodes (at 224 px, like the real classifier) and records every image, so a
    run measures what the API, Redis and the worker's bookkeeping cost per image."""

    name = "no_inference"
    extra = "none"
    version = "bench"
    task = "classify"
    options = TASK_OPTIONS["classify"]
    input_size = 224

    def load(self) -> None:
        pass

    def predict(self, images: list[DecodedImage], options: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"model": self.name, "width": i.width, "height": i.height, "predictions": []}
                for i in images]


def model_env(args: argparse.Namespace) -> dict[str, str]:
    if not args.no_inference:
        return {}
    if args.task != "classify":
        raise SystemExit("--no-inference is a classify model: use --task classify")
    # PYTHONPATH: ``bench`` is not installed; the checkout's packages come first.
    return {"VISIONQ_MODEL_CLASSIFY": "bench.stream:NoInference", "PYTHONPATH": str(REPO)}


def jpegs(size: tuple[int, int], count: int = 8) -> list[bytes]:
    """``count`` JPEGs of exactly ``size``, centre-cropped from the COCO fixtures."""
    from PIL import Image, ImageOps

    out = []
    for path in SOURCES[:count]:
        with Image.open(path) as image:
            fitted = ImageOps.fit(image.convert("RGB"), size)
        buffer = io.BytesIO()
        fitted.save(buffer, "JPEG", quality=85)
        out.append(buffer.getvalue())
    return out


def _client_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rest_run(url: str, task: str, images: list[bytes], count: int,
             window: int) -> tuple[list[float], int]:
    """``count`` images through POST + long-poll with ``window`` threads; (latencies, failed)."""
    sessions = threading.local()

    def one(i: int) -> tuple[float, bool]:
        session = getattr(sessions, "s", None) or requests.Session()
        sessions.s = session
        started = time.perf_counter()
        response = session.post(f"{url}/v1/jobs", params={"task": task},
                                files={"image": ("i.jpg", images[i % len(images)])}, timeout=60)
        if response.status_code != 202:
            return time.perf_counter() - started, False
        job_id = response.json()["id"]
        while True:
            job = session.get(f"{url}/v1/jobs/{job_id}", params={"wait": 30}, timeout=60).json()
            if job["status"] in ("succeeded", "failed"):
                return time.perf_counter() - started, job["status"] == "succeeded"

    with ThreadPoolExecutor(window) as pool:
        outcomes = list(pool.map(one, range(count)))
    return [t for t, _ in outcomes], sum(not ok for _, ok in outcomes)


def stream_run(url: str, task: str, images: list[bytes], count: int,
               window: int) -> tuple[list[float], int]:
    sent: dict[str, float] = {}

    def source() -> Iterator[tuple[str, bytes]]:
        for i in range(count):
            sent[str(i)] = time.perf_counter()  # sent right after it is yielded
            yield str(i), images[i % len(images)]

    latencies, failed = [], 0
    for frame in StreamClient(url).run(source(), task, window=window):
        latencies.append(time.perf_counter() - sent[frame["ref"]])
        failed += frame["status"] != "succeeded"
    return latencies, failed


def measure(stack: VisionqStack, mode: str, run: Callable[..., tuple[list[float], int]],
            task: str, images: list[bytes], count: int, window: int) -> dict[str, Any]:
    pids = stack.pids()
    groups = {"api": [pids["api"]], "workers": [p for n, p in pids.items()
                                                if n.startswith("worker-")],
              "redis": [pids["redis"]]}
    cpu0 = {name: tree_cpu_s(roots) for name, roots in groups.items()}
    client0, wall0 = _client_cpu_s(), time.perf_counter()
    latencies, failed = run(stack.url, task, images, count, window)
    wall = time.perf_counter() - wall0
    client = _client_cpu_s() - client0
    cpu = {name: tree_cpu_s(roots) - cpu0[name] for name, roots in groups.items()}
    cpu["client"] = client
    per_image = {f"{name}_cpu_ms": round(seconds * 1000 / count, 2)
                 for name, seconds in cpu.items()}
    per_image["total_cpu_ms"] = round(sum(cpu.values()) * 1000 / count, 2)
    point = {"mode": mode, "images": count, "failed": failed, "wall_s": round(wall, 2),
             "images_per_s": round(count / wall, 1), **per_image,
             "latency": latency_summary(latencies)}
    say(f"{mode}: {point['images_per_s']} images/s, API {per_image['api_cpu_ms']} CPU-ms/"
        f"image, total {per_image['total_cpu_ms']}, p99 {point['latency']['p99_ms']} ms")
    return point


def throughput(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    env = {"VISIONQ_STREAM_WINDOW": str(args.window), **model_env(args)}
    results: dict[str, Any] = {}
    with VisionqStack([args.task], env=env) as stack:
        for size_name, size in SIZES.items():
            images = jpegs(size)
            count = args.images if size_name == "320x320" else args.frames
            rest_run(stack.url, args.task, images, args.warmup, args.window)
            stream_run(stack.url, args.task, images, args.warmup, args.window)
            rest = measure(stack, "rest", rest_run, args.task, images, count, args.window)
            stream = measure(stack, "stream", stream_run, args.task, images, count, args.window)
            results[size_name] = {
                "image_bytes": sum(map(len, images)) // len(images), "rest": rest,
                "stream": stream,
                "stream_vs_rest_images_per_s": ratio(stream["images_per_s"],
                                                     rest["images_per_s"]),
                "stream_vs_rest_api_cpu": ratio(stream["api_cpu_ms"], rest["api_cpu_ms"]),
            }
        setup = stack.describe()
    return results, setup


class HeldStream:
    """One connection offering ``rate`` frames/s until ``end``, then draining."""

    def __init__(self, url: str, task: str, image: bytes, rate: float) -> None:
        self.url, self.task, self.image, self.interval = url, task, image, 1 / rate
        self.sent = self.answered = self.rejected = self.skipped = 0
        self.error: str | None = None

    def run(self, start: float, end: float, drain_s: float) -> None:
        try:
            ws = connect_stream(self.url.replace("http://", "ws://") + "/v1/stream")
        except Exception as exc:  # noqa: BLE001 - counted, not fatal
            self.error = f"connect: {exc}"
            return
        credits, next_send = 0, start
        try:
            while True:
                now = time.monotonic()
                if now >= end + drain_s or (now >= end and self.sent == self.answered):
                    break
                if now >= next_send and now < end:
                    if credits > 0:
                        ws.send(header_frame(self.task, ref=str(self.sent)))
                        ws.send(self.image)
                        credits -= 1
                        self.sent += 1
                    else:
                        self.skipped += 1  # no credit: the server is holding us back
                    next_send += self.interval
                raw = ws.receive(timeout=max(0.01, min(next_send, end + drain_s) - now))
                if raw is None:
                    continue
                frame = json.loads(raw)
                if "credit" in frame:
                    credits += frame["credit"]
                elif is_final(frame):
                    self.answered += 1
                    self.rejected += frame["status"] == "rejected"
        except Exception as exc:  # noqa: BLE001
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            with contextlib.suppress(Exception):  # already closed
                ws.close()


def hold(args: argparse.Namespace) -> dict[str, Any]:
    conns = args.hold_conns
    threads = conns + 16  # each stream holds a thread; REST keeps 16
    env = {"VISIONQ_STREAM_WINDOW": "4", "VISIONQ_MAX_STREAMS": str(conns),
           "VISIONQ_MAX_STREAMS_PER_KEY": str(conns), **model_env(args)}
    image = jpegs(SIZES["320x320"], 1)[0]
    with VisionqStack([args.task], api_threads=threads, env=env) as stack:
        api_pid = stack.pids()["api"]

        def api_rss_mb() -> float:
            return round(sum(rss_kb(p) for p in [api_pid, *children(api_pid)]) / 1024, 1)

        rss = [(0.0, api_rss_mb())]
        streams = [HeldStream(stack.url, args.task, image, args.hold_rate) for _ in range(conns)]
        t0 = time.monotonic()
        start, end = t0 + 5, t0 + 5 + args.hold_s  # 5 s to open every connection
        runners = [threading.Thread(target=s.run, args=(start + i / conns / args.hold_rate,
                                                         end, 60.0), daemon=True)
                   for i, s in enumerate(streams)]
        for runner in runners:
            runner.start()
        while any(r.is_alive() for r in runners):
            time.sleep(1)
            rss.append((round(time.monotonic() - t0, 1), api_rss_mb()))
        setup = stack.describe()
    sent = sum(s.sent for s in streams)
    answered = sum(s.answered for s in streams)
    result = {
        "connections": conns, "offered_rate_per_conn": args.hold_rate, "hold_s": args.hold_s,
        "connected": sum(s.error is None or not s.error.startswith("connect") for s in streams),
        "errors": sorted({s.error for s in streams if s.error})[:10],
        "sent": sent, "answered": answered, "lost": sent - answered,
        "rejected": sum(s.rejected for s in streams),
        "skipped_for_credit": sum(s.skipped for s in streams),
        "achieved_rate_per_s": round(sent / args.hold_s, 1),
        "api_rss_mb": {"before": rss[0][1], "max": max(v for _, v in rss), "end": rss[-1][1]},
        "rss_series": rss, "setup": setup,
    }
    say(f"hold: {result['connected']}/{conns} connected, {sent} sent, {result['lost']} lost, "
        f"API RSS {result['api_rss_mb']}")
    return result


def run(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    results = Run(args.name, argv)
    points, setup = throughput(args)
    results.data.update({"task": args.task, "model": "bench.stream:NoInference" if args.no_inference
                         else "the queue's real model",
                         "window": args.window, "setup": setup,
                         "sizes": points})
    if not args.skip_hold:
        results.data["hold"] = hold(args)
    _plots(results, points)
    results.finish()
    return results.data


def _plots(results: Run, points: dict[str, Any]) -> None:
    from bench.harness import plots

    plots.bars(results.plot_path("throughput"),
               {size: {"REST": p["rest"]["images_per_s"], "stream": p["stream"]["images_per_s"]}
                for size, p in points.items()},
               "images/s, same stack and window", "images/s")
    plots.bars(results.plot_path("cpu"),
               {f"{size} {mode}": {"API": p[mode]["api_cpu_ms"],
                                   "workers": p[mode]["workers_cpu_ms"],
                                   "Redis": p[mode]["redis_cpu_ms"],
                                   "client": p[mode]["client_cpu_ms"]}
                for size, p in points.items() for mode in ("rest", "stream")},
               "CPU-ms per image by process", "CPU-ms / image")
    hold_data = results.data.get("hold")
    if hold_data:
        plt = plots.plt

        fig, ax = plt.subplots(figsize=(7, 4))
        xs, ys = zip(*hold_data["rss_series"], strict=True)
        ax.plot(xs, ys)
        ax.set_xlabel("s")
        ax.set_ylabel("API RSS (MB, all gunicorn processes)")
        ax.set_title(f"{hold_data['connections']} streams at {hold_data['offered_rate_per_conn']}"
                     f" frames/s each for {hold_data['hold_s']:g} s")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        plots.save(fig, results.plot_path("hold_rss"), dpi=110)
