"""The compute ceiling: the model in a plain Python loop, one process per core, on the same
images and plugin as visionq's workers: ``predict`` (images decoded up front) and
``decode+predict`` (the worker's per-job compute).  visionq's throughput over it is its
efficiency; everything the system adds is in the gap.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

from bench.harness.common import cores, say
from bench.harness.sync_flask import build_model, infer
from visionq.imaging import decode, probe


def _worker(task: str, paths: list[str], duration_s: float, with_decode: bool,
            start_at: float) -> tuple[int, float, float]:
    """(images, wall s, CPU s) of one process looping until ``duration_s`` passes."""
    model = build_model(task)
    blobs = [Path(p).read_bytes() for p in paths]
    options = {"landmarks": "none"} if task == "face" else {}
    decoded = [decode(data, max_side=model.max_side_for(probe(data))) for data in blobs]
    for image in decoded[:2]:
        model.predict([image], options)  # warm up
    while time.time() < start_at:  # all processes start together
        time.sleep(0.01)
    count = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - wall0 < duration_s:
        index = count % len(blobs)
        if with_decode:
            infer(model, blobs[index], options)
        else:
            model.predict([decoded[index]], options)
        count += 1
    return count, time.perf_counter() - wall0, time.process_time() - cpu0


def measure(task: str, paths: list[Path], duration_s: float = 15, processes: int | None = None,
            with_decode: bool = False) -> dict[str, Any]:
    processes = processes or cores()
    context = multiprocessing.get_context("spawn")  # LiteRT/ORT do not survive fork
    start_at = time.time() + 8  # model loads finish before the clock starts
    with context.Pool(processes) as pool:
        results = pool.starmap(_worker, [(task, [str(p) for p in paths], duration_s, with_decode,
                                          start_at)] * processes)
    images = sum(r[0] for r in results)
    wall = max(r[1] for r in results)
    cpu = sum(r[2] for r in results)
    figure = {"mode": "decode+predict" if with_decode else "predict", "processes": processes,
              "threads_per_process": 1, "images": images,
              "images_per_s": round(images / wall, 2),
              "cpu_s_per_image": round(cpu / images, 4) if images else None}
    say(f"ceiling {task} ({figure['mode']}, {processes} procs): {figure['images_per_s']} "
        f"images/s, {figure['cpu_s_per_image']} CPU-s/image")
    return figure
