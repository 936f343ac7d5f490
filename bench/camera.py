"""``python -m bench camera``: N cameras posting frames to ``/v1/vision/detection`` the way
Frigate's ``deepstack`` detector does (a keep-alive session each, 0.1 s timeout, open loop,
a late frame dropped), idle and beside ``--workers`` clients keeping 4K face photos queued
(``--background face4k``), on each ``--systems`` entry and ``--variant``.  Writes
``bench/results/<name>.json``, ``<name>_p99.png`` and ``<name>_cdf.png``.  Method, systems
and figures: docs/performance.md#real-time-detection-for-cameras.
"""

from __future__ import annotations

import argparse
import io
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from PIL import Image

from bench.harness import plots
from bench.harness.common import REPO, TASK_IMAGES, Run, latency_summary, say
from bench.harness.procstat import tree_cpu_s
from bench.harness.stack import SyncBaseline, VisionqStack

DETECTION_PATH = "/v1/vision/detection"
DEFAULT_BEFORE_REF = "230c27e"
"""main before issue 26: every image letterboxed to 512, no latency classes."""
WARMUP_FRAMES = 5
DISTINCT_FRAMES = 60
"""Frames encoded per camera and size, then cycled (encoding 1280x720 costs time)."""
BACKGROUND_TIMEOUT_S = 60.0
BASELINE_THREADS = 8
"""The one-process baseline's gunicorn threads (requests, and so models, in threads)."""
SETTLE_S = 3.0
"""Background load runs this long before the cameras start (the face queue fills)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cameras", type=int, default=4, help="simulated cameras (4)")
    parser.add_argument("--fps", type=float, default=5.0, help="frames/s per camera (5)")
    parser.add_argument("--sizes", default="320,1280x720",
                        help="frame sizes, comma-separated: 320 (square) or WxH")
    parser.add_argument("--duration", type=float, default=30, help="seconds per point (30)")
    parser.add_argument("--timeout", type=float, default=0.1,
                        help="per-request timeout in s (0.1, Frigate's api_timeout)")
    parser.add_argument("--background", choices=("none", "face4k"), default="none",
                        help="face4k: also measure every size with --workers clients "
                             "keeping 4K face photos queued (idle points always run)")
    parser.add_argument("--workers", type=int, default=4,
                        help="background clients with --background face4k (4)")
    parser.add_argument("--systems", default="before,after,baseline",
                        help="comma-separated: before, after, baseline")
    parser.add_argument("--before-ref", default=DEFAULT_BEFORE_REF,
                        help=f"commit the 'before' system runs ({DEFAULT_BEFORE_REF})")
    parser.add_argument("--variant", action="append", default=[],
                        metavar="NAME:K=V,K=V",
                        help="another system: this checkout with extra environment "
                             "(repeatable), e.g. no-nice:VISIONQ_HEAVY_NICE=0")
    parser.add_argument("--sweep-fps", default="",
                        help="idle sweep, one camera of the first size, e.g. 1,5,10")
    parser.add_argument("--rounds", type=int, default=1,
                        help="1: each system alone, one after the other; R > 1: every "
                             "system up at once and each point measured in R blocks of "
                             "duration/R, systems alternating (fairer on a busy machine)")
    parser.add_argument("--seed", type=int, default=26)
    parser.add_argument("--name", default="camera", help="results name (camera)")


# -- frames ------------------------------------------------------------------------------

def parse_size(text: str) -> tuple[int, int]:
    """``320`` -> (320, 320); ``1280x720`` -> (1280, 720)."""
    width, _, height = text.strip().lower().partition("x")
    return int(width), int(height or width)


def make_frames(count: int, size: tuple[int, int], seed: int) -> list[bytes]:
    """``count`` JPEGs of ``size``: a crop of one detection fixture (of the frame's aspect)
    drifting a pixel or two per frame, as a camera's view, encoded at Pillow's quality 75."""
    rng = random.Random(seed)
    width, height = size
    with Image.open(rng.choice(TASK_IMAGES["detect"])) as opened:
        source = opened.convert("RGB")
    scale = max(width / source.width, height / source.height, 1.0) * rng.uniform(1.0, 1.3)
    source = source.resize((round(source.width * scale) + 2, round(source.height * scale) + 2))
    crop_w = max(width, round(source.height * width / height * rng.uniform(0.7, 1.0)))
    crop_w = min(crop_w, source.width - 1)
    crop_h = min(source.height - 1, round(crop_w * height / width))
    frames = []
    for index in range(count):
        x = min(source.width - crop_w, index * 2)
        y = min(source.height - crop_h, index)
        region = source.crop((x, y, x + crop_w, y + crop_h)).resize(size)
        with io.BytesIO() as out:
            region.save(out, format="JPEG")
            frames.append(out.getvalue())
    return frames


# -- cameras -----------------------------------------------------------------------------

def post_frame(session: requests.Session, url: str, jpeg: bytes, timeout_s: float) -> str:
    """One frame the way Frigate sends it (an empty ``api_key`` field too); its outcome
    (``ok``, ``timeout``, ...)."""
    try:
        response = session.post(url, data={"api_key": ""}, files={"image": jpeg},
                                timeout=timeout_s)
    except requests.exceptions.Timeout:  # ConnectTimeout and ReadTimeout
        return "timeout"
    except requests.exceptions.ConnectionError:
        return "connection_error"
    if response.status_code != 200:
        return f"http_{response.status_code}"
    try:
        payload = response.json()
    except ValueError:
        return "bad_json"
    if payload.get("success") is False or payload.get("predictions") is None:
        return f"failed:{payload.get('code')}"
    return "ok"


Record = tuple[str, float | None]
"""One frame: (outcome, latency in s or None when it was skipped)."""


def run_camera(url: str, frames: Sequence[bytes], fps: float, timeout_s: float, start: float,
               stop_at: float, out: list[Record]) -> None:
    """Send ``frames`` (cycled) on schedule from ``start`` to ``stop_at``: frame ``i`` is due
    at ``start + i / fps`` whatever happened to the previous one."""
    period = 1.0 / fps
    with requests.Session() as session:
        index = 0
        while (due := start + index * period) < stop_at:
            time.sleep(max(0.0, due - time.monotonic()))
            sent = time.monotonic()
            if sent - due > period:  # the previous call ran over this frame's slot
                out.append(("skipped", None))
            else:
                outcome = post_frame(session, url, frames[index % len(frames)], timeout_s)
                out.append((outcome, time.monotonic() - sent))
            index += 1


def drive_cameras(url: str, frames: Sequence[Sequence[bytes]], fps: float, timeout_s: float,
                  duration_s: float, seed: int) -> list[Record]:
    """Every camera for ``duration_s``, each at a random phase; records of every frame (the
    block's summary is logged after it)."""
    rng = random.Random(seed)
    start = time.monotonic() + 0.2
    records: list[Record] = []
    threads = [threading.Thread(
        target=run_camera, args=(url, frames[k], fps, timeout_s, start + rng.uniform(0, 1 / fps),
                                 start + duration_s, records),
        daemon=True) for k in range(len(frames))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return records


def summarise(records: Sequence[Record], duration_s: float, timeout_s: float) -> dict[str, Any]:
    outcomes = Counter(outcome for outcome, _ in records)
    total = len(records) or 1
    ok = [latency for outcome, latency in records if outcome == "ok"]
    return {"frames": len(records), "ok": len(ok), "timeouts": outcomes["timeout"],
            "timeout_pct": round(100 * outcomes["timeout"] / total, 2),
            "late_pct": round(100 * (len(records) - sum(v <= timeout_s for v in ok)) / total, 2),
            "error_pct": round(100 * (len(records) - len(ok)) / total, 2),
            "outcomes": dict(outcomes.most_common()),
            "answered_fps": round(len(ok) / duration_s, 2),
            "latency_ok": latency_summary(ok)}


# -- background load ---------------------------------------------------------------------

@contextmanager
def face_load(url: str, photos: list[bytes], clients: int
              ) -> Iterator[list[tuple[float, str]]]:
    """``clients`` threads, each keeping one 4K face photo in the system (posted again as
    soon as the previous one returns); yields the (seconds, outcome) of each photo done."""
    stop = threading.Event()
    done: list[tuple[float, str]] = []

    def client(k: int) -> None:
        with requests.Session() as session:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    response = session.post(url, files={"image": photos[k % len(photos)]},
                                            timeout=BACKGROUND_TIMEOUT_S)
                    kind = "ok" if response.status_code == 200 else f"http_{response.status_code}"
                except requests.RequestException as exc:
                    kind = type(exc).__name__
                done.append((time.monotonic() - started, kind))
                k += 1

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    try:
        yield done
    finally:
        stop.set()
        for thread in threads:  # each has at most one photo in flight: drain it
            thread.join(BACKGROUND_TIMEOUT_S + 5)


def face4k_photos() -> list[bytes]:
    from bench.face4k import build_photo

    return [build_photo(seed)[0] for seed in range(2)]


# -- systems -----------------------------------------------------------------------------

@dataclass
class Running:
    """A started system: its URL, the paths its face load uses, the PIDs whose CPU counts."""

    url: str
    face_path: str
    roots: list[int]
    detect_roots: list[int]
    setup: dict[str, Any]


def worktree(ref: str) -> Path:
    """A detached worktree of ``ref`` beside the temp dir (made once, then reused)."""
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", ref], check=True,
                         capture_output=True, text=True).stdout.strip()
    path = Path("/tmp") / f"visionq-camera-before-{sha}"
    if not path.exists():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), sha],
                       check=True, capture_output=True)
    return path


@contextmanager
def start_system(system: str, env: dict[str, str], args: argparse.Namespace
                 ) -> Iterator[Running]:
    face_jobs = "/v1/jobs?task=face&wait=30"
    if system == "baseline":
        with SyncBaseline("detect,face", workers=1, threads=BASELINE_THREADS) as base:
            yield Running(base.url, "/v1/vision/face", [base.pid], [], base.describe())
        return
    code_dir = worktree(args.before_ref) if system == "before" else None
    with VisionqStack(["detect", "face"], worker_concurrency=1, env=env,
                      code_dir=code_dir) as stack:
        pids = stack.pids()
        setup = {**stack.describe(), "code": str(code_dir or REPO)}
        yield Running(stack.url, face_jobs, list(pids.values()),
                      [pids["worker-detect"]], setup)


@dataclass
class Tally:
    """One point of one system, summed over its blocks (``--rounds``)."""

    records: list[Record] = field(default_factory=list)
    seconds: float = 0.0
    cpu_s: float = 0.0
    detect_cpu_s: float | None = None
    background: list[tuple[float, str]] = field(default_factory=list)
    clients: int = 0

    def summary(self, timeout_s: float) -> dict[str, Any]:
        summary = summarise(self.records, self.seconds, timeout_s)
        sent = sum(outcome != "skipped" for outcome, _ in self.records) or 1
        summary["seconds"] = round(self.seconds, 1)
        summary["stack_cpu_ms_per_frame"] = round(self.cpu_s * 1000 / sent, 1)
        if self.detect_cpu_s is not None:
            summary["detect_worker_cpu_ms_per_frame"] = round(self.detect_cpu_s * 1000 / sent,
                                                              1)
        if self.clients:
            ok = [sec for sec, kind in self.background if kind == "ok"]
            summary["background"] = {
                "clients": self.clients, "photos_done": len(ok),
                "photos_per_s": round(len(ok) / self.seconds, 2),
                "errors": dict(Counter(kind for _, kind in self.background if kind != "ok")),
                "latency": latency_summary(ok)}
        return summary


Point = tuple[str, str, list[list[bytes]], float]
"""(key, load: idle or face4k, frames per camera, fps)."""


def run_block(name: str, running: Running, point: Point, seconds: float,
              args: argparse.Namespace, photos: list[bytes], tally: Tally) -> None:
    """Drive the cameras for ``seconds`` (beside the face load if the point has one) and add
    what happened to ``tally``."""
    key, load, frames, fps = point
    label = f"{name} {key}"
    endpoint = running.url + DETECTION_PATH
    face = face_load(running.url + running.face_path, photos, args.workers)
    with face if load == "face4k" else nullcontext([]) as done:
        if load == "face4k":
            tally.clients = args.workers
            time.sleep(SETTLE_S)
        with requests.Session() as session:  # warm-up: the first frames, unhurried
            for jpeg in frames[0][:WARMUP_FRAMES]:
                post_frame(session, endpoint, jpeg, 10.0)
        time.sleep(1)
        say(f"camera: {label}: {len(frames)} camera(s) at {fps:g} frames/s for {seconds:g} s")
        cpu0 = tree_cpu_s(running.roots)
        detect0 = tree_cpu_s(running.detect_roots)
        done0 = len(done)  # photos done while the face queue filled are not counted
        records = drive_cameras(endpoint, frames, fps, args.timeout, seconds,
                                args.seed + len(tally.records))
        tally.seconds += seconds  # the frames' schedule (the last answer may come after it)
        tally.cpu_s += tree_cpu_s(running.roots) - cpu0
        if running.detect_roots:
            tally.detect_cpu_s = (tally.detect_cpu_s or 0.0) + tree_cpu_s(
                running.detect_roots) - detect0
        tally.background += done[done0:]
        tally.records += records
    block = summarise(records, seconds, args.timeout)
    lat = block["latency_ok"]
    say(f"camera: {label}: timeouts {block['timeouts']}/{block['frames']} "
        f"({block['timeout_pct']} %), p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms, "
        f"{block['answered_fps']} frames/s answered")


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """``no-nice:VISIONQ_HEAVY_NICE=0,X=1`` -> ("no-nice", {...})."""
    name, _, pairs = text.partition(":")
    try:
        env = dict(pair.split("=", 1) for pair in filter(None, pairs.split(",")))
    except ValueError:
        raise SystemExit(f"--variant {text!r}: expected NAME:KEY=VALUE,...") from None
    return name.strip(), {key.strip(): value.strip() for key, value in env.items()}


def points(args: argparse.Namespace, sizes: list[tuple[int, int]]) -> list[Point]:
    """Every point, in the order they run."""
    found = []
    for load in ["idle"] + (["face4k"] if args.background == "face4k" else []):
        for size in sizes:
            found.append((f"{load}_{size[0]}x{size[1]}", load,
                          [make_frames(DISTINCT_FRAMES, size, args.seed + k)
                           for k in range(args.cameras)], args.fps))
    for fps in (float(v) for v in args.sweep_fps.split(",") if v.strip()):
        size = sizes[0]
        found.append((f"sweep_{fps:g}fps_1cam_{size[0]}x{size[1]}", "idle",
                      [make_frames(DISTINCT_FRAMES, size, args.seed)], fps))
    return found


def table(systems: dict[str, dict[str, Any]]) -> list[str]:
    """The README's markdown rows: system, point, timeouts, p50, p99, frames/s, CPU."""
    rows = ["| system | load, frames | timeouts | p50 ms | p99 ms | answered/s | CPU-ms/frame |",
            "|---|---|---|---|---|---|---|"]
    for system, result in systems.items():
        for key, point in result["points"].items():
            lat = point["latency_ok"]
            rows.append(f"| {system} | {key} | {point['timeouts']}/{point['frames']} "
                        f"({point['timeout_pct']} %) | {lat['p50_ms']} | {lat['p99_ms']} | "
                        f"{point['answered_fps']} | {point['stack_cpu_ms_per_frame']} |")
    return rows


def plot_p99(path: Path, systems: dict[str, dict[str, Any]], title: str) -> None:
    groups: dict[str, dict[str, float]] = {}
    for system, result in systems.items():
        for key, point in result["points"].items():
            if not key.startswith("sweep"):
                groups.setdefault(key, {})[system] = point["latency_ok"]["p99_ms"] or 0
    plots.bars(path, groups, title, "p99 of answered frames (ms)")


def run(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    # SIGTERM (kill, timeout) unwinds like Ctrl-C: the stacks started here are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = Run(args.name, argv)
    data = results.data
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    wanted = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(wanted) - {"before", "after", "baseline"}
    if unknown:
        raise SystemExit(f"--systems: unknown {sorted(unknown)}")
    plan = [(s, s, {}) for s in wanted] + [(name, "after", env) for name, env in
                                           map(parse_variant, args.variant)]
    data["client"] = {"cameras": args.cameras, "fps": args.fps, "timeout_s": args.timeout,
                      "sizes": [f"{w}x{h}" for w, h in sizes], "duration_s": args.duration,
                      "background": args.background, "background_clients": args.workers,
                      "before_ref": args.before_ref,
                      "how": "requests.Session per camera (keep-alive), open loop, "
                             "multipart image + api_key, frame dropped when late"}
    photos = face4k_photos() if args.background == "face4k" else []
    todo = points(args, sizes)
    tallies = {name: {key: Tally() for key, *_ in todo} for name, *_ in plan}
    data["systems"] = {name: {"env": env, "points": {}} for name, _, env in plan}

    def record(name: str) -> None:
        data["systems"][name]["points"] = {key: tally.summary(args.timeout)
                                           for key, tally in tallies[name].items()
                                           if tally.records}
        data["table"] = table(data["systems"])
        results.finish()  # a partial file survives if a later part fails

    # --rounds 1: one system after the other, each alone on the machine; R > 1: every system
    # up at once, idle but one, blocks alternating (drift on a busy machine cancels out)
    for group in ([[entry] for entry in plan] if args.rounds == 1 else [plan]):
        with ExitStack() as stack:
            running = {}
            for name, system, env in group:
                say(f"camera: system {name} ({system}{', ' + str(env) if env else ''})")
                running[name] = stack.enter_context(start_system(system, env, args))
                data["systems"][name]["setup"] = running[name].setup
            for round_no in range(args.rounds):
                say(f"camera: round {round_no + 1}/{args.rounds}")
                for point in todo:
                    for name in running:
                        run_block(name, running[name], point, args.duration / args.rounds,
                                  args, photos, tallies[name][point[0]])
                for name in running:
                    record(name)
    cdfs = {f"{name} {key}": sorted(latency for outcome, latency in tally.records
                                    if outcome == "ok")
            for name, by_key in tallies.items() for key, tally in by_key.items()
            if not key.startswith("sweep")}
    plot_p99(results.plot_path("p99"), data["systems"],
             f"{args.cameras} cameras x {args.fps:g} frames/s, timeout "
             f"{args.timeout * 1000:g} ms")
    plots.latency_cdf(results.plot_path("cdf"), cdfs, "answered frames, per system and point",
                      args.timeout * 1000)
    data["table"] = table(data["systems"])
    for row in data["table"]:
        print(row)
    results.finish()
    return data
