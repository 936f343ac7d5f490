"""``python -m bench frigate``: Frigate NVR emulation against the DeepStack detection
endpoint (issue 14).

Frigate's ``deepstack`` detector (``frigate/detectors/plugins/deepstack.py``) sends every
region it wants classified as its own request: the model-sized crop (320x320 by default)
is JPEG-encoded with Pillow's defaults and posted with a bare ``requests.post(api_url,
data={"api_key": ...}, files={"image": jpeg}, timeout=api_timeout)``: multipart, a NEW
TCP connection every time (no session), and ``api_timeout`` defaults to 0.1 s.  The
detector is synchronous, one frame after the other, so a slow answer is not retried: the
frame is simply lost (Frigate logs the exception and moves on).

This bench does exactly that: ``--frames`` frames (default 300) of ``--size`` px (320),
cut from the detection fixtures with a small drift from frame to frame (like video) and
JPEG-encoded up front, paced at ``--rate`` frames/s (5) by one thread that posts them to
``/v1/vision/detection`` in turn with ``timeout=--timeout`` (0.1 s).  A frame whose
slot has passed when the previous call returns is sent at once (its lag is reported).

Reported: % of frames that timed out (and other errors), latency p50/p95/p99 of the
answered frames and of every frame (a timed-out frame counts at the moment requests gave
up; requests' timeout applies to connect and to each read, so that may exceed the
timeout), the server's own ``duration``, and the stack's CPU-ms per frame (API + Redis +
worker process trees, from /proc).  Writes ``bench/results/<name>.json`` and
``<name>_cdf.png``.  The stack is started here (one detect worker, as
``bench detect-latency``) unless ``--url`` points at a running server.
"""

from __future__ import annotations

import argparse
import io
import random
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests
from PIL import Image

from bench.harness import plots
from bench.harness.common import TASK_IMAGES, Run, latency_summary, percentile, say
from bench.harness.procstat import tree_cpu_s
from bench.harness.stack import VisionqStack

DETECTION_PATH = "/v1/vision/detection"
WARMUP_FRAMES = 5
WARMUP_TIMEOUT_S = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=300, help="frames to send (300)")
    parser.add_argument("--rate", type=float, default=5.0,
                        help="frames per second, paced (5, a Frigate camera's detect fps)")
    parser.add_argument("--timeout", type=float, default=0.1,
                        help="requests.post timeout in seconds (0.1, Frigate's default "
                             "api_timeout)")
    parser.add_argument("--size", type=int, default=320,
                        help="frame side in px (320, Frigate's default model size)")
    parser.add_argument("--url", default="",
                        help="a running visionq (or DeepStack) base URL; default: start a "
                             "throw-away stack with one detect worker")
    parser.add_argument("--worker-concurrency", type=int, default=1,
                        help="detect worker children when the stack is started here "
                             "(1: one child using every core)")
    parser.add_argument("--api-threads", type=int, default=16)
    parser.add_argument("--api-key", default="", help="sent as the api_key form field")
    parser.add_argument("--name", default="frigate", help="results name")


def make_frames(count: int, size: int, seed: int = 14) -> list[bytes]:
    """``count`` JPEGs of ``size`` x ``size``: square crops of the detection fixtures that
    drift a few pixels per frame (a camera region), encoded like Frigate does
    (``Image.save(format="JPEG")``: quality 75)."""
    rng = random.Random(seed)
    sources = []
    for path in TASK_IMAGES["detect"]:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
        side = min(rgb.size)
        if side < size:  # upscale small fixtures so the crop is a real region
            factor = size / side
            rgb = rgb.resize((round(rgb.width * factor) + 1, round(rgb.height * factor) + 1))
        sources.append(rgb)
    crops = [max(size, int(min(s.size) * rng.uniform(0.6, 1.0))) for s in sources]
    frames = []
    per_scene = max(1, count // len(sources))
    for index in range(count):
        scene = (index // per_scene) % len(sources)
        source, crop, step = sources[scene], crops[scene], index % per_scene
        x = min(source.width - crop, step * 2)
        y = min(source.height - crop, step)
        region = source.crop((x, y, x + crop, y + crop)).resize((size, size))
        with io.BytesIO() as out:
            region.save(out, format="JPEG")
            frames.append(out.getvalue())
    return frames


def post_frame(url: str, jpeg: bytes, timeout_s: float, api_key: str = "") -> tuple[str, Any]:
    """One frame the way Frigate sends it; (outcome, response JSON or None)."""
    try:
        response = requests.post(url, data={"api_key": api_key}, files={"image": jpeg},
                                 timeout=timeout_s)
    except requests.exceptions.Timeout:  # ConnectTimeout and ReadTimeout
        return "timeout", None
    except requests.exceptions.ConnectionError:
        return "connection_error", None
    if response.status_code != 200:
        return f"http_{response.status_code}", None
    try:
        payload = response.json()
    except ValueError:
        return "bad_json", None
    if payload.get("success") is False or payload.get("predictions") is None:
        return f"failed:{payload.get('code')}", payload
    return "ok", payload


def send_frames(url: str, frames: Sequence[bytes], rate: float, timeout_s: float,
                api_key: str = "") -> list[dict[str, Any]]:
    """Frame ``i`` is due at ``start + i / rate``; one at a time, like Frigate's detector
    process.  Returns one record per frame."""
    records = []
    period = 1.0 / rate
    start = time.monotonic() + 0.05
    progress_every = max(1, int(rate * 10))  # a line every ~10 s
    for index, jpeg in enumerate(frames):
        due = start + index * period
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        sent = time.monotonic()
        outcome, payload = post_frame(url, jpeg, timeout_s, api_key)
        elapsed = time.monotonic() - sent
        records.append({"frame": index, "outcome": outcome, "latency_s": elapsed,
                        "lag_s": max(0.0, sent - due),
                        "server_ms": payload.get("duration") if payload else None,
                        "predictions": len(payload.get("predictions") or [])
                        if payload else None})
        if (index + 1) % progress_every == 0 or index + 1 == len(frames):
            tally = Counter(r["outcome"] for r in records)
            say(f"frigate: {index + 1}/{len(frames)} frames, ok {tally['ok']}, "
                f"timeouts {tally['timeout']}, other errors "
                f"{sum(tally.values()) - tally['ok'] - tally['timeout']}")
    return records


def summarise(records: Sequence[dict[str, Any]], timeout_s: float) -> dict[str, Any]:
    outcomes = Counter(r["outcome"] for r in records)
    total = len(records) or 1
    ok = [r for r in records if r["outcome"] == "ok"]
    server = sorted(float(r["server_ms"]) for r in ok if r["server_ms"] is not None)
    lags = sorted(r["lag_s"] for r in records)
    return {
        "frames": len(records),
        "ok": len(ok),
        "timeouts": outcomes["timeout"],
        "timeout_pct": round(100 * outcomes["timeout"] / total, 1),
        "error_pct": round(100 * (len(records) - len(ok)) / total, 1),
        "outcomes": dict(outcomes.most_common()),
        "latency_ok": latency_summary(r["latency_s"] for r in ok),
        "latency_all": latency_summary(r["latency_s"] for r in records),
        "within_timeout_pct": round(100 * sum(r["latency_s"] <= timeout_s for r in ok)
                                    / total, 1),
        "server_duration_ms_p50": percentile(server, 50),
        "server_duration_ms_p99": percentile(server, 99),
        "client_lag_p99_ms": round((percentile(lags, 99) or 0) * 1000, 1),
        "predictions_mean": round(sum(r["predictions"] for r in ok) / len(ok), 2)
        if ok else None,
    }


def plot(path: Path, records: Sequence[dict[str, Any]], timeout_s: float, title: str) -> None:
    """CDF of every frame's latency (timed-out frames at the moment requests gave up) and
    of the answered frames, with the timeout as a vertical line."""
    plt = plots.plt  # matplotlib with the Agg backend chosen by bench.harness.plots
    fig, ax = plt.subplots(figsize=(7, 4.5))
    series = {"every frame (timeouts at give-up)": [r["latency_s"] for r in records],
              "answered frames": [r["latency_s"] for r in records if r["outcome"] == "ok"]}
    total = len(records) or 1
    for name, values in series.items():
        if not values:
            continue
        ms = sorted(v * 1000 for v in values)
        # y: fraction of ALL frames, so the answered curve tops out at the success rate
        ax.step(ms, [(i + 1) / total for i in range(len(ms))], where="post", label=name)
    ax.axvline(timeout_s * 1000, color="red", lw=0.8, ls="--",
               label=f"timeout {timeout_s * 1000:g} ms")
    ax.set_xscale("log")
    ax.set_xlabel("latency per frame (ms, requests.post call)")
    ax.set_ylabel("fraction of frames sent")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    plots.save(fig, path, dpi=110)


def _measure(url: str, frames: Sequence[bytes], args: argparse.Namespace,
             pids: Sequence[int]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    endpoint = url.rstrip("/") + DETECTION_PATH
    say(f"frigate: warm-up ({WARMUP_FRAMES} frames, timeout {WARMUP_TIMEOUT_S:g} s)")
    for jpeg in frames[:WARMUP_FRAMES]:
        post_frame(endpoint, jpeg, WARMUP_TIMEOUT_S, args.api_key)
    time.sleep(1)
    say(f"frigate: {len(frames)} frames of {args.size} px at {args.rate:g}/s, "
        f"timeout {args.timeout:g} s, a new connection each -> {endpoint}")
    cpu0 = tree_cpu_s(pids) if pids else 0.0
    records = send_frames(endpoint, frames, args.rate, args.timeout, args.api_key)
    time.sleep(min(2.0, 10 * args.timeout))  # let abandoned jobs finish (their CPU counts)
    summary = summarise(records, args.timeout)
    if pids:
        used = tree_cpu_s(pids) - cpu0
        summary["server_cpu_s"] = round(used, 2)
        summary["server_cpu_ms_per_frame"] = round(used * 1000 / len(records), 1)
    return summary, records


def run(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    results = Run(args.name, argv)
    data = results.data
    frames = make_frames(args.frames, args.size)
    data["client"] = {"frames": args.frames, "rate_fps": args.rate, "timeout_s": args.timeout,
                      "size_px": args.size, "jpeg_bytes_mean": round(
                          sum(len(f) for f in frames) / len(frames)),
                      "how": "requests.post(url, data={'api_key': ...}, files={'image': jpeg}, "
                             "timeout=...) per frame, no session (a new connection each)"}
    if args.url:
        data["setup"] = {"url": args.url, "started_here": False}
        summary, records = _measure(args.url, frames, args, [])
    else:
        with VisionqStack(["detect"], worker_concurrency=args.worker_concurrency,
                          api_threads=args.api_threads) as stack:
            data["setup"] = stack.describe()
            summary, records = _measure(stack.url, frames, args, list(stack.pids().values()))
    data["summary"] = summary
    plot(results.plot_path("cdf"), records, args.timeout,
         f"Frigate emulation: {args.frames} x {args.size} px at {args.rate:g}/s, "
         f"timeout {args.timeout * 1000:g} ms: {summary['timeout_pct']} % timed out")
    data["frames"] = [{**{k: v for k, v in r.items() if k not in ("latency_s", "lag_s")},
                       "latency_ms": round(r["latency_s"] * 1000, 1),
                       "lag_ms": round(r["lag_s"] * 1000, 1)} for r in records]
    lat = summary["latency_ok"]
    say(f"frigate: {summary['timeout_pct']} % timeouts ({summary['timeouts']}/"
        f"{summary['frames']}), {summary['error_pct']} % errors in all; answered p50 "
        f"{lat['p50_ms']} ms, p99 {lat['p99_ms']} ms; server duration p50 "
        f"{summary['server_duration_ms_p50']} ms")
    results.finish()
    return data
