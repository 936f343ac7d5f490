"""``python -m bench detect-warm``: the detector in this process on a 320x320 frame, back to
back, after ``--idle`` seconds, and after the same idleness with a keep-warm run 0.1 s
before, for each ``--configs`` entry (ONNX Runtime threads ``t2``, spinning ``s1``/``s0``),
interleaved round by round; median and p90 per condition (docs/performance.md).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from typing import Any

from bench.camera import make_frames
from bench.harness import plots
from bench.harness.common import Run, say
from visionq.imaging import decode

CONDITIONS = ("back_to_back", "after_idle", "after_idle_keepwarm")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=20, help="frames per condition (20)")
    parser.add_argument("--idle", type=float, default=1.0, help="idle seconds (1)")
    parser.add_argument("--configs", default="t2s1,t2s0,t1s0",
                        help="threads and spinning, e.g. t2s1 = 2 threads spinning")
    parser.add_argument("--name", default="detect_warm")


def load(threads: int, spin: bool) -> Any:
    from workers.plugins.centernet_mbv3 import CenterNetMbv3

    model = CenterNetMbv3(num_threads=threads, spin=spin)
    model.load()
    return model


def run(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    results = Run(args.name, argv)
    frames = [decode(f, max_side=512) for f in make_frames(10, (320, 320), 3)]
    keepwarm = decode(make_frames(1, (64, 64), 1)[0], max_side=64)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    models = {c: load(int(c[1]), c[-1] == "1") for c in configs}
    for model in models.values():
        model.predict(frames[:2], {})
    times: dict[str, dict[str, list[float]]] = {c: {k: [] for k in CONDITIONS} for c in configs}

    def timed(model: Any, frame: Any) -> float:
        started = time.perf_counter()
        model.predict([frame], {})
        return time.perf_counter() - started

    for round_no in range(args.rounds):
        for config, model in models.items():
            frame = frames[round_no % len(frames)]
            model.predict([frame], {})
            times[config]["back_to_back"].append(timed(model, frame))
            time.sleep(args.idle)
            times[config]["after_idle"].append(timed(model, frame))
            time.sleep(max(0.0, args.idle - 0.1))
            model.predict([keepwarm], {})
            time.sleep(0.1)
            times[config]["after_idle_keepwarm"].append(timed(model, frame))
        if (round_no + 1) % 5 == 0:
            say(f"detect-warm: {round_no + 1}/{args.rounds} rounds")
    figures = {c: {k: {"p50_ms": round(statistics.median(v) * 1000, 1),
                       "p90_ms": round(sorted(v)[int(0.9 * (len(v) - 1))] * 1000, 1)}
                   for k, v in by.items()} for c, by in times.items()}
    results.data["idle_s"] = args.idle
    results.data["figures"] = figures
    for config, by in figures.items():
        say(f"detect-warm {config}: " + ", ".join(f"{k} p50 {v['p50_ms']} ms"
                                                   for k, v in by.items()))
    plots.bars(results.plot_path("p50"), {c: {k: v["p50_ms"] for k, v in by.items()}
                                          for c, by in figures.items()},
               "320 px frame: back to back vs after an idle second (t = threads, s = spin)",
               "p50 ms")
    results.finish()
    return results.data
