"""``python -m bench face4k``: the seeds' 4K face-detection experiment, per core.

3840x2160 photos with 15 pasted faces >= 160 px tall: CPU-s per image in one process for
visionq's default path and ``face_recognition`` at full resolution, recall at IoU >= 0.5,
then images/s and CPU-s per image of the whole stack under an open loop above capacity.
Method and figures: docs/models.md (4K faces) and docs/performance.md.
"""

from __future__ import annotations

import argparse
import io
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.harness import plots
from bench.harness.common import FIXTURES, RAW, Run, cores, say
from bench.harness.evals import (
    background,
    detect_faces,
    face_crops,
    face_model,
    jpeg,
    ltrb,
    matched,
    paste,
    scaled_face,
    share,
    timed,
)
from bench.harness.loadgen import Bodies, jobs_call, run_point
from bench.harness.procstat import tree_cpu_s
from bench.harness.stack import VisionqStack

WIDTH, HEIGHT = 3840, 2160
BACKGROUND = FIXTURES / "faces" / "000000000009.jpg"
MIN_FACE_PX = 160
FACE_SIZES = (170, 200, 230, 260, 290)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--photos", type=int, default=2, help="4K test photos to build")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per photo and path")
    parser.add_argument("--duration", type=float, default=30,
                        help="seconds of the end-to-end point")
    parser.add_argument("--rate", type=float, default=0,
                        help="offered rate end to end (default: 1.5x the in-process estimate)")
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--name", default="face4k")


def build_photo(seed: int) -> tuple[bytes, list[tuple[int, int, int, int]]]:
    """A 4K JPEG (q90) with faces pasted on a 5x3 grid, and their boxes (l, t, r, b)."""
    rng = random.Random(seed)
    canvas = background(BACKGROUND.name, (WIDTH, HEIGHT))
    crops = face_crops()
    boxes = []
    cell_w, cell_h = WIDTH // 5, HEIGHT // 3
    for index in range(15):
        crop = crops[(index + seed) % len(crops)]
        scaled, scale = scaled_face(crop, rng.choice(FACE_SIZES))
        scaled = scaled.crop((0, 0, min(scaled.width, cell_w), min(scaled.height, cell_h)))
        col, row = index % 5, index // 5
        x = col * cell_w + rng.randint(0, max(0, cell_w - scaled.width))
        y = row * cell_h + rng.randint(0, max(0, cell_h - scaled.height))
        boxes.append(paste(canvas, scaled, (x, y), crop, scale))
    return jpeg(canvas), boxes


def recall(reference: Sequence[Sequence[float]], found: Sequence[Sequence[float]]
           ) -> float | None:
    return share(matched(reference, found), digits=None)


def in_process(photos: list[tuple[bytes, list]], runs: int) -> dict[str, Any]:
    import face_recognition

    model = face_model()

    def full_res(data: bytes, upsample: int) -> list[tuple[int, ...]]:
        pixels = face_recognition.load_image_file(io.BytesIO(data))
        return [ltrb(location) for location in
                face_recognition.face_locations(pixels, number_of_times_to_upsample=upsample)]

    rows = []
    for index, (data, pasted) in enumerate(photos):
        say(f"photo {index}: timing the default path and full resolution (slow: ~4 s a run)")
        row: dict[str, Any] = {"photo": index, "bytes": len(data), "pasted_faces": len(pasted)}
        boxes = {}
        for label, fn, n in (
                ("default", lambda d=data: detect_faces(model, d, {}), runs),
                ("default_no_landmarks",
                 lambda d=data: detect_faces(model, d, {"landmarks": "none"}), runs),
                ("full_res_upsample1", lambda d=data: full_res(d, 1), max(1, runs - 1)),
                ("full_res_upsample0", lambda d=data: full_res(d, 0), runs)):
            cpu, wall, boxes[label] = timed(fn, n)
            row[label] = {"cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
                          "faces": len(boxes[label])}
        full = boxes["full_res_upsample1"]
        reference = [b for b in full if b[3] - b[1] >= MIN_FACE_PX]
        row["reference_faces_ge_160"] = len(reference)
        row["recall_vs_full_res"] = recall(reference, boxes["default"])
        row["recall_vs_pasted"] = recall([b for b in pasted if b[3] - b[1] >= MIN_FACE_PX],
                                         boxes["default"])
        row["recall_full_res_vs_pasted"] = recall(pasted, full)
        say(f"photo {index}: {row}")
        rows.append(row)
    return {"photos": rows, **_medians(rows)}


def _medians(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def med(path: str) -> float:
        values = sorted(r[path]["cpu_s"] for r in rows)
        return values[len(values) // 2]

    cpu = med("default")
    recalls = [r["recall_vs_full_res"] for r in rows if r["recall_vs_full_res"] is not None]
    return {"default_cpu_s_per_image": cpu,
            "default_images_per_s_per_core": round(1 / cpu, 2) if cpu else None,
            "no_landmarks_cpu_s_per_image": med("default_no_landmarks"),
            "full_res_defaults_cpu_s_per_image": med("full_res_upsample1"),
            "full_res_upsample0_cpu_s_per_image": med("full_res_upsample0"),
            "recall_min": min(recalls) if recalls else None}


def end_to_end(paths: list[Path], rate: float, duration_s: float) -> dict[str, Any]:
    with VisionqStack(["face"]) as stack:
        call = jobs_call(stack.url, "face", Bodies.of(paths))
        run_point(call, 1, 4, 10, 30, 20, label="face warm-up")
        roots = list(stack.pids().values())
        cpu0 = tree_cpu_s(roots)
        summary, _ = run_point(call, rate, duration_s, 10, 30, int(rate * duration_s * 2),
                               label="face 4K end to end")
        cpu = tree_cpu_s(roots) - cpu0
        setup = stack.describe()
    summary["stack_cpu_s"] = round(cpu, 2)
    done = summary["ok"]
    return {"setup": setup, "point": summary,
            "images_per_s": summary["throughput_rps"],
            "images_per_s_per_core": round(summary["throughput_rps"] / cores(), 2),
            "stack_cpu_s_per_image": round(cpu / done, 3) if done else None}


def run(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    results = Run(args.name, argv)
    photos = [build_photo(seed) for seed in range(args.photos)]
    paths = []
    for index, (data, _) in enumerate(photos):
        path = RAW / f"face4k_photo{index}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        paths.append(path)
    results.data["test_photos"] = [str(p.name) for p in paths]
    results.data["in_process_one_core"] = in_process(photos, args.runs)
    figures = results.data["in_process_one_core"]
    if not args.skip_e2e:
        rate = args.rate or round(1.5 * cores() / figures["default_cpu_s_per_image"], 1)
        results.data["end_to_end"] = end_to_end(paths, rate, args.duration)
    e2e = results.data.get("end_to_end", {})
    results.data["goals"] = {"images_per_s_per_core": 4, "cpu_s_per_image": 0.25,
                             "recall": 0.95}
    plots.bars(results.plot_path("cpu"), {
        "CPU-s per 4K image": {
            "visionq default (in process)": figures["default_cpu_s_per_image"],
            "visionq end to end (whole stack)": e2e.get("stack_cpu_s_per_image") or 0,
            "face_recognition defaults, full res": figures["full_res_defaults_cpu_s_per_image"],
            "full res, no upsample": figures["full_res_upsample0_cpu_s_per_image"],
            "seed service (0.77)": 0.77}},
        "4K face detection cost (lower is better)", "CPU-s per image", log=True)
    results.finish()
    return results.data
