"""``python -m bench detect-eval``: the detector's input side, chosen by recall and speed.

The ``detect`` plugin over the coco8 fixtures at each ``--sides`` (job option
``input_size``) and its default policy, for the images at their own size, resized to
320x320 as Frigate sends a frame, and to a longer side of 224: recall, precision and
agreement with 512 at ``--thresholds``; then ms of ``predict`` on one 320x320 frame per side.
Method and figures: docs/models.md#detector-input-side.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
from collections.abc import Sequence
from functools import partial
from typing import Any

from PIL import Image

from bench.harness import plots
from bench.harness.common import FIXTURES, Run, iou, ratio
from bench.harness.evals import box_of, jpeg, say_table, timed, worker_decode
from workers.plugins.centernet_mbv3 import CenterNetMbv3

DETECT = FIXTURES / "detect"
FRAME_SIDE = 320
SMALL_SIDE = 224
OWN, SQUARE, SMALL = "own size", f"{FRAME_SIDE}x{FRAME_SIDE}", f"long {SMALL_SIDE}"
POLICY = "policy"
AGREEMENT_THRESHOLD = 0.4
Box = Sequence[float]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sides", default="224,256,320,384,416,448,512",
                        help="input sides to evaluate (multiples of 32)")
    parser.add_argument("--thresholds", default="0.4,0.3", help="min_confidence values")
    parser.add_argument("--runs", type=int, default=30, help="timed calls per side")
    parser.add_argument("--threads", type=int, default=None,
                        help="ONNX Runtime threads (default: CPUs of this process)")
    parser.add_argument("--name", default="detect_eval")


def true_positives(predictions: list[dict[str, Any]], truth: list[tuple[str, Box]]) -> int:
    """Predictions (best first) matched to an unused same-class truth box at IoU >= 0.5."""
    used = [False] * len(truth)
    found = 0
    for prediction in predictions:
        best, index = max(((iou(box_of(prediction), b), j) for j, (label, b) in enumerate(truth)
                           if not used[j] and label == prediction["label"]),
                          default=(0.0, -1))
        if best >= 0.5:
            used[index] = True
            found += 1
    return found


def frame(data: bytes, width: int = FRAME_SIDE, height: int = FRAME_SIDE) -> bytes:
    """The image resized to ``width`` x ``height`` and saved as Frigate saves a frame."""
    with Image.open(io.BytesIO(data)) as image:
        resized = image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
    return jpeg(resized, quality=75)


def fixtures(condition: str) -> list[tuple[str, bytes, list[tuple[str, Box]]]]:
    """(name, image bytes, ground truth in that image's pixels) of all 10 fixtures."""
    images = json.loads((DETECT / "ground_truth.json").read_text())["images"]
    out = []
    for name, info in sorted(images.items()):
        data = (DETECT / "images" / name).read_bytes()
        truth = [(o["label"], o["box_xyxy"]) for o in info.get("objects") or ()]
        if condition != OWN:
            if condition == SQUARE:
                width = height = FRAME_SIDE
            else:
                scale = SMALL_SIDE / max(info["width"], info["height"])
                width, height = round(info["width"] * scale), round(info["height"] * scale)
            sx, sy = width / info["width"], height / info["height"]
            data = frame(data, width, height)
            truth = [(label, [b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy])
                     for label, b in truth]
        out.append((name, data, truth))
    return out


def evaluate(model: CenterNetMbv3, condition: str, sides: list[int],
             thresholds: list[float]) -> dict[str, Any]:
    images = [(name, worker_decode(model, data), truth)
              for name, data, truth in fixtures(condition)]
    lowest = min([*thresholds, AGREEMENT_THRESHOLD])
    runs: dict[str, list[tuple[list[dict[str, Any]], list[tuple[str, Box]], int]]] = {}
    for key in [POLICY, *map(str, sides)]:
        options: dict[str, Any] = {"min_confidence": lowest}
        if key != POLICY:
            options["input_size"] = int(key)
        runs[key] = [(result["predictions"], truth, result["input_size"]) for result, truth in
                     ((model.predict([image], options)[0], truth) for _, image, truth in images)]
    reference = runs.get("512") or runs[POLICY]
    out: dict[str, Any] = {}
    for key, per_image in runs.items():
        row: dict[str, Any] = {"input_sides": sorted({side for *_, side in per_image})}
        total = sum(len(truth) for _, truth, _ in per_image)
        for threshold in thresholds:
            tp = returned = 0
            for predictions, truth, _ in per_image:
                if not truth:
                    continue
                kept = [p for p in predictions if p["confidence"] >= threshold]
                tp += true_positives(kept, truth)
                returned += len(kept)
            row[f"{threshold:g}"] = {"tp": tp, "truth": total, "returned": returned,
                                     "recall": round(tp / total, 3),
                                     "precision": round(tp / returned, 3) if returned else None}
        agreed = wanted = 0
        for (predictions, _, _), (ref, _, _) in zip(per_image, reference, strict=True):
            ref_boxes = [(p["label"], box_of(p)) for p in ref
                         if p["confidence"] >= AGREEMENT_THRESHOLD]
            kept = [p for p in predictions if p["confidence"] >= AGREEMENT_THRESHOLD]
            agreed += true_positives(kept, ref_boxes)
            wanted += len(ref_boxes)
        row["agreement_with_512"] = round(agreed / wanted, 3) if wanted else None
        out[key] = row
    return out


def timings(model: CenterNetMbv3, sides: list[int], runs: int) -> dict[str, Any]:
    """Median ms of ``predict`` on one 320x320 frame per side, calls interleaved."""
    data = frame((DETECT / "images" / "bus.jpg").read_bytes())
    image = worker_decode(model, data)
    keys = [POLICY, *map(str, sides)]
    options = {key: {} if key == POLICY else {"input_size": int(key)} for key in keys}
    first: dict[str, float] = {}
    times: dict[str, list[float]] = {key: [] for key in keys}
    cpu: dict[str, list[float]] = {key: [] for key in keys}
    for run in range(runs + 1):
        for key in keys:
            cpu_s, wall_s, _ = timed(partial(model.predict, [image], options[key]), 1)
            if run:
                times[key].append(wall_s * 1000)
                cpu[key].append(cpu_s * 1000)
            else:
                first[key] = wall_s * 1000
    wall_ms = {key: statistics.median(values) for key, values in times.items()}
    cpu_ms = {key: statistics.median(values) for key, values in cpu.items()}
    return {key: {"first_call_ms": round(first[key], 1), "median_ms": round(wall_ms[key], 1),
                  "median_cpu_ms": round(cpu_ms[key], 1),
                  "speedup_vs_512": ratio(wall_ms.get("512"), wall_ms[key]),
                  "cpu_ratio_512_to_this": ratio(cpu_ms.get("512"), cpu_ms[key])}
            for key in keys}


def run(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    results = Run(args.name, argv)
    sides = [int(s) for s in args.sides.split(",")]
    thresholds = [float(t) for t in args.thresholds.split(",")]
    overrides = {"num_threads": args.threads} if args.threads else {}
    model = CenterNetMbv3(**overrides)
    model.load()  # the session's own first call is in no figure below
    model.predict([worker_decode(model, frame((DETECT / "images" / "bus.jpg").read_bytes()))],
                  {})
    conditions = {condition: evaluate(model, condition, sides, thresholds)
                  for condition in (OWN, SQUARE, SMALL)}
    speed = timings(model, sides, args.runs)
    results.data.update({
        "dataset": "coco8 fixtures (../shared/fixtures/detect): 8 images, 30 boxes; "
        "agreement over all 10", "model_version": model.version,
        "max_side": model.config.max_side, "thresholds": thresholds,
        "conditions": conditions, "ms_320_frame": speed})
    say_table({"images": condition, "side": key, "ran at": row["input_sides"],
               **{f"{what} @{t:g}": row[f"{t:g}"][what] for t in thresholds
                  for what in ("recall", "precision")}, "agreement": row["agreement_with_512"]}
              for condition, rows in conditions.items() for key, row in rows.items())
    say_table({"side on a 320x320 frame": key, **row} for key, row in speed.items())
    main = f"{thresholds[0]:g}"
    plots.bars(results.plot_path("recall"),
               {f"{condition} {what}": {key: row[main][what] or 0 for key, row in rows.items()}
                for condition, rows in conditions.items() for what in ("recall", "precision")},
               f"coco8 at min_confidence {main}, by input side", "share")
    plots.bars(results.plot_path("ms"),
               {"median": {k: r["median_ms"] for k, r in speed.items()},
                "median CPU": {k: r["median_cpu_ms"] for k, r in speed.items()},
                "first call": {k: r["first_call_ms"] for k, r in speed.items()}},
               "detect predict() on a 320x320 frame, by input side (one process)", "ms")
    results.finish()
    return results.data
