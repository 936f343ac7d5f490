"""In-process timing of one model plugin (``bench/models_classify.py``,
``bench/models_detect.py``): single-image latency, batched throughput and JPEG decode time,
each after a warm-up call.  ``predict`` is ``lambda images: model.predict(images, {})``."""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from visionq.imaging import DecodedImage, decode

Predict = Callable[[list[DecodedImage]], object]


def latency(predict: Predict, image: DecodedImage, runs: int) -> dict[str, float]:
    """Milliseconds per single-image call: p50, p90, p99 and the fastest of ``runs``."""
    predict([image])
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        predict([image])
        times.append((time.perf_counter() - start) * 1000)
    percentiles = statistics.quantiles(times, n=100)
    return {"runs": runs, "p50_ms": round(statistics.median(times), 2),
            "p90_ms": round(percentiles[89], 2), "p99_ms": round(percentiles[98], 2),
            "min_ms": round(min(times), 2)}


def throughput(predict: Predict, images: Sequence[DecodedImage], batch: int,
               total: int) -> dict[str, float]:
    """Images per second over ``total`` images (at least one batch) in calls of ``batch``."""
    pool = list(itertools.islice(itertools.cycle(images), max(batch, total)))
    predict(pool[:batch])
    start = time.perf_counter()
    for offset in range(0, len(pool), batch):
        predict(pool[offset:offset + batch])
    elapsed = time.perf_counter() - start
    return {"batch": batch, "images": len(pool), "images_per_s": round(len(pool) / elapsed, 1)}


def decode_ms(path: Path, max_side: int | None, runs: int = 20) -> float:
    """Milliseconds to decode ``path`` (with the JPEG draft for ``max_side``)."""
    data = path.read_bytes()
    start = time.perf_counter()
    for _ in range(runs):
        decode(data, max_side=max_side)
    return round((time.perf_counter() - start) * 1000 / runs, 2)
