"""``python -m bench classify-eval``: classifier preprocessing chosen on 1,300 labelled images.

The ``classify`` plugin's EfficientNet-Lite0 over ``../shared/fixtures/imagenet_val`` (decoded
as the worker decodes them) once per preprocessing variant (crop, resample, input encoding):
top-1 / top-5 each, and whether the plugin's ``DEFAULT_PREPROCESSING`` is the best top-1.
Variants and figures: docs/models.md#classification-preprocessing.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.harness import plots
from bench.harness.common import FIXTURES, Run, say
from bench.harness.evals import worker_decode
from workers.plugins.efficientnet_lite0 import (
    DEFAULT_PREPROCESSING,
    EfficientNetLite0,
    Preprocessing,
)

IMAGENET_VAL = FIXTURES / "imagenet_val"
VARIANTS: dict[str, Preprocessing] = {
    "square/bilinear/raw (before #17)": Preprocessing(crop=1.0, resample="bilinear",
                                                      input="raw"),
    "square/bilinear/quantized": Preprocessing(crop=1.0, resample="bilinear",
                                               input="quantized"),
    "ref_224/256/bilinear/raw": Preprocessing(crop=224 / 256, resample="bilinear",
                                              input="raw"),
    "ref_224/256/bilinear/quantized": Preprocessing(crop=224 / 256, resample="bilinear",
                                                    input="quantized"),
    "ref_224/256/bicubic/quantized (EfficientNet eval)": Preprocessing(
        crop=224 / 256, resample="bicubic", input="quantized"),
    "square/bicubic/quantized": Preprocessing(crop=1.0, resample="bicubic",
                                              input="quantized"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, default=0,
                        help="evaluate only the first N images (default: all 1,300)")
    parser.add_argument("--threads", type=int, default=1, help="LiteRT threads")
    parser.add_argument("--name", default="classify_eval")


def labelled_images(limit: int) -> list[tuple[str, int]]:
    labels = json.loads((IMAGENET_VAL / "labels.json").read_text())
    items = sorted((name, int(entry["class_id"])) for name, entry in labels.items())
    return items[:limit] if limit else items


def evaluate(model: EfficientNetLite0, items: list[tuple[str, int]]) -> dict[str, Any]:
    hits1 = dict.fromkeys(VARIANTS, 0)
    hits5 = dict.fromkeys(VARIANTS, 0)
    for index, (name, class_id) in enumerate(items):
        data = (IMAGENET_VAL / "images" / name).read_bytes()
        image = worker_decode(model, data)
        for variant, preprocessing in VARIANTS.items():
            probs = model.probabilities([model.prepare(image.pixels, preprocessing)])[0]
            top5 = np.argsort(-probs, kind="stable")[:5]
            hits1[variant] += int(top5[0] == class_id)
            hits5[variant] += int(class_id in top5)
        if (index + 1) % 200 == 0:
            say(f"{index + 1}/{len(items)} images")
    count = len(items)
    return {variant: {"top1": round(hits1[variant] / count, 4),
                      "top5": round(hits5[variant] / count, 4),
                      "preprocessing": VARIANTS[variant].describe()} for variant in VARIANTS}


def run(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    results = Run(args.name, argv)
    model = EfficientNetLite0(num_threads=args.threads)
    model.load()
    items = labelled_images(args.limit)
    say(f"{len(items)} images x {len(VARIANTS)} variants")
    scores = evaluate(model, items)
    best = max(scores, key=lambda v: (scores[v]["top1"], scores[v]["top5"]))
    default = next((v for v, p in VARIANTS.items() if p == DEFAULT_PREPROCESSING), None)
    results.data.update({
        "images": len(items), "dataset": "ILSVRC2012 val subset (../shared/fixtures/"
        "imagenet_val, 227x227 prescaled)", "model_version": model.version,
        "variants": scores, "best_top1": best, "plugin_default": default,
        "plugin_default_is_best": default == best})
    for variant, score in scores.items():
        say(f"{variant:55s} top-1 {score['top1']:.4f}  top-5 {score['top5']:.4f}")
    plots.bars(results.plot_path("accuracy"),
               {"top-1": {v: s["top1"] for v, s in scores.items()},
                "top-5": {v: s["top5"] for v, s in scores.items()}},
               f"EfficientNet-Lite0 int8 on {len(items)} ImageNet val images",
               "accuracy")
    results.finish()
    return results.data
