"""``python -m bench <subcommand>``: see ``python -m bench --help``.

A benchmark is a module ``bench/<name>.py`` with ``add_arguments(parser)`` and
``run(args, argv)`` (an ``int`` it returns is the exit status) on top of ``bench.harness``,
and one row in ``BENCHMARKS``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

BENCHMARKS: dict[str, tuple[str, str]] = {
    "loadgen": ("compare", "open-loop sweep: visionq vs sync Flask vs compute ceiling"),
    "submit": ("submit", "POST /v1/jobs accepted jobs/s and latency (no workers)"),
    "face4k": ("face4k", "4K face detection: images/s per core, CPU-s/image, recall"),
    "faces": ("faces", "face decode-scale policy: CPU-s/image and recall at 0.3/2/8/12 MP"),
    "classify-eval": ("classify_eval", "classifier preprocessing variants: top-1/top-5 on "
                                       "1,300 ImageNet val images"),
    "face-openset": ("face_openset", "open-set face recognition: strangers (every face in "
                                     "1,300 imagenet_val photos) vs enrolled people, per "
                                     "rule: DET plot"),
    "detect-eval": ("detect_eval", "detector input side: recall / precision on coco8 at own "
                                   "size and at 320x320, ms per side on a 320x320 frame"),
    "broker-ceiling": ("broker_ceiling", "jobs/s per Redis core with no HTTP: direct "
                                         "producers, no-op workers, persistence off / "
                                         "everysec / always"),
    "profile": ("profile_record", "py-spy flame graphs and collapsed stacks of the stack "
                                  "under load, to bench/results/raw/profiles (not committed)"),
    "detect-warm": ("detect_warm", "detector in process: a frame after an idle second vs "
                                   "back to back, keep-warm, ONNX Runtime threads and "
                                   "spinning"),
    "callbacks": ("callbacks", "jobs/s with and without a webhook per job (a slow "
                               "receiver): the sender must not slow the workers"),
    "camera": ("camera", "N Frigate-like cameras (keep-alive, 0.1 s timeout, open loop) on "
                         "/v1/vision/detection, idle and beside 4K face jobs: before / "
                         "after / a one-process synchronous baseline"),
    "soak": ("soak", "minutes of mixed load under `visionq up` with a fault a minute: "
                     "nothing lost or run twice, latency per window, RSS"),
    "watch-soak": ("watch_soak", "a bucket watcher (moto S3 + SQS) over N uploads while "
                                 "watcher and workers are killed: every result once"),
}
"""command: (module under bench/, one-line help)."""


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="visionq benchmarks: every run starts what it measures, is bounded, and "
                    "writes bench/results/<name>.json plus PNG plots.")
    sub = parser.add_subparsers(dest="command", required=True)
    wanted = argv[0] if argv and argv[0] in BENCHMARKS else None
    for command, (module_name, help_text) in BENCHMARKS.items():
        if wanted and command != wanted:  # import only what runs (models load slowly)
            sub.add_parser(command, help=help_text)
            continue
        module = importlib.import_module(f"bench.{module_name}")
        child = sub.add_parser(command, help=help_text, description=module.__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(child)
    args = parser.parse_args(argv)
    outcome = importlib.import_module(f"bench.{BENCHMARKS[args.command][0]}").run(args, argv)
    return outcome if isinstance(outcome, int) else 0  # soak, watch-soak: 1 when a job is lost


if __name__ == "__main__":
    sys.exit(main())
