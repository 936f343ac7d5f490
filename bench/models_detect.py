"""Benchmark the ``detect`` model plugin (CenterNet MobileNetV3): recall and false positives
on the coco8 fixtures per threshold, single-image latency and batched throughput.

    .venv/bin/python -m bench models-detect        # ~40 s on 2 cores

Writes ``bench/results/detect_model.json``.  Latency and throughput are measured on images as
the worker sees them (decoded with the model's ``input_size`` JPEG draft) and include
letterboxing and decoding of the heads; image decoding is timed separately.  Needs the
converted weights (``python -m workers.install.detect``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.harness.common import FIXTURES, Run, iou, say
from bench.harness.model_timing import decode_ms, latency, throughput
from visionq.imaging import DecodedImage, decode
from workers import weights
from workers.install import detect as install_detect
from workers.plugins.centernet_mbv3 import DEFAULT_MIN_CONFIDENCE, CenterNetMbv3

DETECT = FIXTURES / "detect"
LATENCY_IMAGE = "bus.jpg"
THRESHOLDS = (0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=None,
                        help="ONNX Runtime threads (default: CPUs of this process)")
    parser.add_argument("--batches", default="1,4,8", help="batch sizes for throughput")
    parser.add_argument("--images", type=int, default=32,
                        help="images per throughput measurement (default 32)")
    parser.add_argument("--latency-runs", type=int, default=50,
                        help="single-image calls for the latency figures (default 50)")
    parser.add_argument("--models-dir", type=Path, default=None,
                        help="default: $VISIONQ_MODELS_DIR or ./.visionq/models")
    parser.add_argument("--name", default="detect_model", help="results file name")


def accuracy(model: CenterNetMbv3, max_side: int | None) -> list[dict[str, Any]]:
    """Recall at IoU 0.5 (same class, greedy by confidence) and false positives per image."""
    truth = json.loads((DETECT / "ground_truth.json").read_text())["images"]
    labelled = {name: info["objects"] for name, info in truth.items() if info.get("objects")}
    images = {name: decode((DETECT / "images" / name).read_bytes(), max_side=max_side)
              for name in labelled}
    rows = []
    for threshold in THRESHOLDS:
        tp = fp = total = 0
        for name, objects in labelled.items():
            result = model.predict([images[name]], {"min_confidence": threshold})[0]
            used = [False] * len(objects)
            for p in result["predictions"]:
                found = [(iou([p["x_min"], p["y_min"], p["x_max"], p["y_max"]], o["box_xyxy"]), j)
                         for j, o in enumerate(objects)
                         if not used[j] and o["label"] == p["label"]]
                best = max(found, default=(0.0, -1))
                if best[0] >= 0.5:
                    used[best[1]] = True
                    tp += 1
                else:
                    fp += 1
            total += len(objects)
        rows.append({"min_confidence": threshold, "default": threshold == DEFAULT_MIN_CONFIDENCE,
                     "recall_iou50": round(tp / total, 3), "found": tp, "objects": total,
                     "false_positives": fp, "fp_per_image": round(fp / len(labelled), 3)})
    return rows


def run(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    results = Run(args.name, argv)
    batches = [int(b) for b in args.batches.split(",")]
    model = CenterNetMbv3(models_dir=args.models_dir, num_threads=args.threads,
                          max_batch=max(batches))
    model.load()
    threads = args.threads or len(os.sched_getaffinity(0))
    images = [decode(path.read_bytes(), max_side=model.input_size)
              for path in sorted((DETECT / "images").glob("*.jpg"))]
    latency_path = DETECT / "images" / LATENCY_IMAGE

    def predict(batch: list[DecodedImage]) -> object:
        return model.predict(batch, {})

    report: dict[str, Any] = {
        "model": model.name, "model_version": model.version,
        "weights": {"package": f"{install_detect.NPM_PACKAGE}@{install_detect.NPM_VERSION}",
                    "license": install_detect.PACKAGE_LICENSE,
                    "centernet_bin_sha256": weights.DETECT_WEIGHTS_SHA256},
        "input_size": model.input_size, "threads": threads,
        "accuracy_coco8_draft_decode": accuracy(model, model.input_size),
        "accuracy_coco8_full_decode": accuracy(model, None),
        "latency_single_image": {"image": LATENCY_IMAGE, **latency(
            predict, decode(latency_path.read_bytes(), max_side=model.input_size),
            args.latency_runs)},
        "throughput": [throughput(predict, images, b, args.images) for b in batches],
        "decode_ms": {LATENCY_IMAGE: {"draft": decode_ms(latency_path, model.input_size),
                                      "full": decode_ms(latency_path, None)}},
    }
    results.data.update(report)
    results.finish()
    say(json.dumps({k: report[k] for k in ("latency_single_image", "throughput")}, indent=1))
    default = next(r for r in report["accuracy_coco8_draft_decode"] if r["default"])
    say(f"default threshold: {default}")
    return results.data


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.models_detect", description=__doc__)
    add_arguments(parser)
    run(parser.parse_args(), ["models-detect", *sys.argv[1:]])
