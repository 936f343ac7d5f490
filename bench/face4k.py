"""``python -m bench face4k``: the seeds' 4K face-detection experiment, per core.

Builds 3840x2160 test photos (JPEG q90) by pasting the fixtures' faces, scaled so every
face box is >= 160 px tall, onto an upscaled face-free COCO photo.  Then:

1. in this process, one core: CPU-s per image (decode included) for visionq's default
   path (reduced-size JPEG decode to ~960 px + HOG with one upsample, default options)
   and for ``face_recognition`` at full resolution (its defaults: upsample 1; and upsample 0);
2. recall of the default path against full-resolution detection (upsample 1) on faces
   >= 160 px tall, boxes matched at IoU >= 0.5 (and against the pasted boxes);
3. visionq end to end: a face worker with one child per core, the job API under an open
   loop above capacity -> images/s on this machine, per core, and CPU-s per image of the
   whole stack (API + Redis + worker process trees, from /proc).
Goal (issue 8): >= 4 images/s per core, <= 0.25 CPU-s per image, recall >= 0.95.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from bench.harness import plots
from bench.harness.common import FIXTURES, RAW, Run, cores, iou, say
from bench.harness.loadgen import Bodies, jobs_call, run_point
from bench.harness.procstat import tree_cpu_s
from bench.harness.stack import VisionqStack
from visionq.imaging import decode, probe

WIDTH, HEIGHT = 3840, 2160
FACE_SOURCES = ("obama.jpg", "biden.jpg", "biden2.jpg", "obama3.jpg", "obama2.jpg",
                "two_people.jpg", "obama_and_biden.jpg")
BACKGROUND = FIXTURES / "faces" / "000000000009.jpg"
MIN_FACE_PX = 160
FACE_SIZES = (170, 200, 230, 260, 290)
MARGIN = 0.6
"""Context kept around each face box (fraction of its size per side): HOG needs the head."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--photos", type=int, default=2, help="4K test photos to build")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per photo and path")
    parser.add_argument("--duration", type=float, default=30,
                        help="seconds of the end-to-end point")
    parser.add_argument("--rate", type=float, default=0,
                        help="offered rate end to end (default: 1.5x the in-process estimate)")
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--name", default="face4k")


def face_crops() -> list[Image.Image]:
    expected = json.loads((FIXTURES / "faces" / "expected.json").read_text())["images"]
    crops = []
    for name in FACE_SOURCES:
        image = Image.open(FIXTURES / "faces" / name).convert("RGB")
        for face in expected[name]["faces"]:
            top, right, bottom, left = face["box_trbl"]
            w, h = right - left, bottom - top
            box = (max(0, left - MARGIN * w), max(0, top - MARGIN * h),
                   min(image.width, right + MARGIN * w), min(image.height, bottom + MARGIN * h))
            crop = image.crop(tuple(round(v) for v in box))
            crop.info["face"] = (left - box[0], top - box[1], w, h)
            crops.append(crop)
    return crops


def build_photo(seed: int) -> tuple[bytes, list[tuple[int, int, int, int]]]:
    """A 4K JPEG (q90) with faces pasted on a 5x3 grid, and their boxes (l, t, r, b)."""
    rng = random.Random(seed)
    canvas = Image.open(BACKGROUND).convert("RGB").resize((WIDTH, HEIGHT),
                                                          Image.Resampling.BICUBIC)
    crops = face_crops()
    boxes = []
    cell_w, cell_h = WIDTH // 5, HEIGHT // 3
    for index in range(15):
        crop = crops[(index + seed) % len(crops)]
        fx, fy, fw, fh = crop.info["face"]
        size = rng.choice(FACE_SIZES)
        scale = size / fh
        size_px = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
        scaled = crop.resize(size_px, Image.Resampling.LANCZOS)
        scaled = scaled.crop((0, 0, min(scaled.width, cell_w), min(scaled.height, cell_h)))
        col, row = index % 5, index // 5
        x = col * cell_w + rng.randint(0, max(0, cell_w - scaled.width))
        y = row * cell_h + rng.randint(0, max(0, cell_h - scaled.height))
        canvas.paste(scaled, (x, y))
        boxes.append((round(x + fx * scale), round(y + fy * scale),
                      round(x + (fx + fw) * scale), round(y + (fy + fh) * scale)))
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=90)
    return out.getvalue(), boxes


def recall(reference: list[Sequence[float]], found: list[Sequence[float]]) -> float | None:
    if not reference:
        return None
    hits = sum(1 for ref in reference if any(iou(ref, f) >= 0.5 for f in found))
    return hits / len(reference)


def _timed(fn: Any, runs: int) -> tuple[float, float, Any]:
    """(median CPU s, median wall s, last result)."""
    cpu, wall, result = [], [], None
    for _ in range(runs):
        c0, w0 = time.process_time(), time.perf_counter()
        result = fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return sorted(cpu)[len(cpu) // 2], sorted(wall)[len(wall) // 2], result


def in_process(photos: list[tuple[bytes, list]], runs: int) -> dict[str, Any]:
    import face_recognition

    from workers.plugins.face_recognition_model import FaceRecognitionModel

    model = FaceRecognitionModel()
    model.load()

    def default_path(data: bytes, options: dict[str, Any]) -> list[tuple[int, ...]]:
        image = decode(data, max_side=model.max_side_for(probe(data)))
        faces = model.predict([image], options)[0]["faces"]
        return [(f["x_min"], f["y_min"], f["x_max"], f["y_max"]) for f in faces]

    def full_res(data: bytes, upsample: int) -> list[tuple[int, ...]]:
        pixels = face_recognition.load_image_file(io.BytesIO(data))
        return [(left, top, right, bottom) for top, right, bottom, left in
                face_recognition.face_locations(pixels, number_of_times_to_upsample=upsample)]

    rows = []
    for index, (data, pasted) in enumerate(photos):
        say(f"photo {index}: timing the default path and full resolution (slow: ~4 s a run)")
        row: dict[str, Any] = {"photo": index, "bytes": len(data), "pasted_faces": len(pasted)}
        for label, fn, n in (
                ("default", lambda d=data: default_path(d, {}), runs),
                ("default_no_landmarks", lambda d=data: default_path(d, {"landmarks": "none"}),
                 runs),
                ("full_res_upsample1", lambda d=data: full_res(d, 1), max(1, runs - 1)),
                ("full_res_upsample0", lambda d=data: full_res(d, 0), runs)):
            cpu, wall, boxes = _timed(fn, n)
            row[label] = {"cpu_s": round(cpu, 3), "wall_s": round(wall, 3), "faces": len(boxes)}
            row[f"_{label}_boxes"] = boxes
        reference = [b for b in row["_full_res_upsample1_boxes"] if b[3] - b[1] >= MIN_FACE_PX]
        row["reference_faces_ge_160"] = len(reference)
        row["recall_vs_full_res"] = recall(reference, row["_default_boxes"])
        row["recall_vs_pasted"] = recall([b for b in pasted if b[3] - b[1] >= MIN_FACE_PX],
                                         row["_default_boxes"])
        row["recall_full_res_vs_pasted"] = recall(pasted, row["_full_res_upsample1_boxes"])
        for key in [k for k in row if k.startswith("_")]:
            row.pop(key)
        say(f"photo {index}: {row}")
        rows.append(row)
    return {"photos": rows, **_medians(rows)}


def _medians(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def med(path: str, field: str) -> float:
        values = sorted(r[path][field] for r in rows)
        return values[len(values) // 2]

    cpu = med("default", "cpu_s")
    recalls = [r["recall_vs_full_res"] for r in rows if r["recall_vs_full_res"] is not None]
    return {"default_cpu_s_per_image": cpu,
            "default_images_per_s_per_core": round(1 / cpu, 2) if cpu else None,
            "no_landmarks_cpu_s_per_image": med("default_no_landmarks", "cpu_s"),
            "full_res_defaults_cpu_s_per_image": med("full_res_upsample1", "cpu_s"),
            "full_res_upsample0_cpu_s_per_image": med("full_res_upsample0", "cpu_s"),
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
