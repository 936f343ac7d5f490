"""Benchmark the ``classify`` model plugin: accuracy on the shared fixtures, preprocessing
variants, single-image latency and batched throughput.

    .venv/bin/python -m bench models-classify            # ~20 s on 2 cores
    .venv/bin/python -m bench models-classify --variants # + preprocessing comparison

Writes ``bench/results/classify_model.json``.  Latency and throughput are measured on the
images as the worker sees them (decoded with the model's ``input_size`` JPEG draft) and
include preprocessing; decoding is timed separately.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bench.harness.common import FIXTURES, Run, say
from bench.harness.model_timing import decode_ms, latency, throughput
from visionq.imaging import DecodedImage, decode
from workers.plugins.efficientnet_lite0 import (
    CROP_FRACTION,
    EfficientNetLite0,
    packaged_weights,
    preprocess,
    process_cpu_count,
)

CLASSIFY = FIXTURES / "classify"
LATENCY_IMAGE = "pytorch_hub_dog_640.jpg"
GEOMETRIES: dict[str, float | None] = {"crop_square": 1.0, "crop_224/256": 224 / 256,
                                        "squash": None}
"""Centre-crop fractions compared by ``--variants``; the plugin uses ``CROP_FRACTION``."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=process_cpu_count(),
                        help="interpreter threads (default: CPUs of this process)")
    parser.add_argument("--batches", default="1,8,32", help="batch sizes for throughput")
    parser.add_argument("--images", type=int, default=64,
                        help="images per throughput measurement (default 64)")
    parser.add_argument("--latency-runs", type=int, default=50,
                        help="single-image calls for the latency figures (default 50)")
    parser.add_argument("--variants", action="store_true",
                        help="also compare preprocessing variants on the fixtures")
    parser.add_argument("--name", default="classify_model", help="results file name")


def load_fixtures(max_side: int | None) -> dict[str, tuple[DecodedImage, dict[str, Any]]]:
    labels = json.loads((CLASSIFY / "labels.json").read_text())["images"]
    return {name: (decode((CLASSIFY / name).read_bytes(), max_side=max_side), label)
            for name, label in sorted(labels.items())}


def score(fixtures: dict[str, tuple[DecodedImage, dict[str, Any]]],
          probabilities: Callable[[DecodedImage], np.ndarray]) -> dict[str, Any]:
    """top-1 (in the acceptable set), top-5 (labelled class), mean p(acceptable set),
    rank of the labelled class per image."""
    top1 = top5 = 0
    p_acceptable, ranks = [], {}
    for name, (image, label) in fixtures.items():
        probs = probabilities(image)
        order = np.argsort(-probs, kind="stable")
        acceptable = [int(i) for i in label["acceptable_top1"]]
        top1 += int(order[0]) in acceptable
        top5 += label["label_index"] in order[:5]
        p_acceptable.append(float(probs[acceptable].sum()))
        ranks[name] = int(np.flatnonzero(order == label["label_index"])[0])
    n = len(fixtures)
    return {"top1": top1 / n, "top5": top5 / n, "n": n,
            "mean_p_acceptable": round(statistics.fmean(p_acceptable), 4), "label_rank": ranks}


def requantiser() -> Callable[[np.ndarray], np.ndarray]:
    """The alternative reading of the metadata: normalise (x-127)/128, then quantise with the
    input tensor's scale and zero point."""
    from ai_edge_litert.interpreter import Interpreter

    weights = packaged_weights()
    assert weights is not None, "install visionq[classify]"
    scale, zero_point = Interpreter(model_path=str(weights)).get_input_details()[0]["quantization"]

    def requantise(pixels: np.ndarray) -> np.ndarray:
        real = (pixels.astype(np.float32) - 127) / 128
        return np.clip(np.round(real / scale + zero_point), 0, 255).astype(np.uint8)

    return requantise


def variants(model: EfficientNetLite0) -> list[dict[str, Any]]:
    values = {"raw_uint8": lambda x: x, "requantised": requantiser()}
    rows = []
    for draft, (geometry, crop), (value, convert) in itertools.product(
            (True, False), GEOMETRIES.items(), values.items()):
        fixtures = load_fixtures(model.input_size if draft else None)

        def probabilities(image: DecodedImage, crop: float | None = crop,
                          convert: Callable[[np.ndarray], np.ndarray] = convert) -> np.ndarray:
            return model.probabilities([convert(preprocess(image.pixels, crop=crop))])[0]

        rows.append({"decode": "draft" if draft else "full", "geometry": geometry,
                     "chosen": crop == CROP_FRACTION and value == "raw_uint8",
                     "input": value, **score(fixtures, probabilities)})
    return rows


def run(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    results = Run(args.name, argv)
    model = EfficientNetLite0(num_threads=args.threads)
    model.load()
    fixtures = load_fixtures(model.input_size)
    images = [image for image, _ in fixtures.values()]

    def predict(batch: list[DecodedImage]) -> object:
        return model.predict(batch, {})

    result: dict[str, Any] = {
        "model": model.name, "model_version": model.version,
        "threads": args.threads,
        "accuracy": score(fixtures, lambda image: model.probabilities(
            [preprocess(image.pixels)])[0]),
        "decode_ms": {"draft": decode_ms(CLASSIFY / LATENCY_IMAGE, model.input_size),
                      "full": decode_ms(CLASSIFY / LATENCY_IMAGE, None)},
        "latency_image": LATENCY_IMAGE,
        "latency_single": latency(predict, fixtures[LATENCY_IMAGE][0], args.latency_runs),
        "throughput": [throughput(predict, images, int(b), args.images)
                       for b in args.batches.split(",")],
    }
    if args.variants:
        result["preprocessing_variants"] = variants(model)
    results.data.update(result)
    results.finish()
    say(json.dumps({k: v for k, v in result.items() if k != "preprocessing_variants"},
                   indent=1))
    for row in result.get("preprocessing_variants", []):
        say(f"{row['decode']:5} {row['geometry']:12} {row['input']:11} top1={row['top1']:.2f} "
              f"top5={row['top5']:.2f} p_ok={row['mean_p_acceptable']:.3f} "
              f"ranks={list(row['label_rank'].values())}{'  <- plugin' if row['chosen'] else ''}")


    return results.data


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.models_classify", description=__doc__)
    add_arguments(parser)
    run(parser.parse_args(), ["models-classify", *sys.argv[1:]])
