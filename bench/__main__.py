"""``python -m bench <subcommand>``: see ``python -m bench --help``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="visionq benchmarks: every run starts what it measures, is bounded, and "
                    "writes bench/results/<name>.json plus PNG plots.")
    sub = parser.add_subparsers(dest="command", required=True)

    from bench import (
        classify_eval,
        compare,
        detect_latency,
        face4k,
        face_openset,
        face_threshold,
        faces,
        frigate,
        netloss,
        submit,
    )

    compare.add_arguments(sub.add_parser(
        "loadgen", help="open-loop sweep: visionq vs sync Flask vs compute ceiling",
        description=compare.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    submit.add_arguments(sub.add_parser(
        "submit", help="POST /v1/jobs accepted jobs/s and latency (no workers)",
        description=submit.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    face4k.add_arguments(sub.add_parser(
        "face4k", help="4K face detection: images/s per core, CPU-s/image, recall",
        description=face4k.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    faces.add_arguments(sub.add_parser(
        "faces", help="face decode-scale policy: CPU-s/image and recall at 0.3/2/8/12 MP",
        description=faces.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    classify_eval.add_arguments(sub.add_parser(
        "classify-eval", help="classifier preprocessing variants: top-1/top-5 on 1,300 "
                              "ImageNet val images",
        description=classify_eval.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    face_threshold.add_arguments(sub.add_parser(
        "face-threshold", help="face recognition distance threshold: false accept / reject",
        description=face_threshold.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter))
    face_openset.add_arguments(sub.add_parser(
        "face-openset", help="open-set face recognition: strangers (every face in 1,300 "
                             "imagenet_val photos) vs enrolled people, per rule: DET plot",
        description=face_openset.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter))
    netloss.add_arguments(sub.add_parser(
        "loss", help="classification goodput under packet loss (netns + nftables)",
        description=netloss.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    detect_latency.add_arguments(sub.add_parser(
        "detect-latency", help="detection round trip at low load and at 80%% of capacity",
        description=detect_latency.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter))
    frigate.add_arguments(sub.add_parser(
        "frigate", help="Frigate emulation: 320 px frames at 5/s to /v1/vision/detection, "
                        "timeout 0.1 s, a new connection each: %% timeouts, p50/p99",
        description=frigate.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    from bench import detect_eval

    detect_eval.add_arguments(sub.add_parser(
        "detect-eval", help="detector input side: recall / precision on coco8 at own size and "
                            "at 320x320, ms per side on a 320x320 frame",
        description=detect_eval.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    from bench import broker_ceiling, scaleout

    broker_ceiling.add_arguments(sub.add_parser(
        "broker-ceiling", help="jobs/s per Redis core with no HTTP: direct producers, no-op "
                               "workers, persistence off / everysec / always",
        description=broker_ceiling.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter))
    scaleout.add_arguments(sub.add_parser(
        "scaleout", help="simulated workers (sleep model, netns nodes) vs one Redis + API: "
                         "jobs/s against ideal, Redis commands and CPU per job",
        description=scaleout.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    from bench import keep_or_drop

    keep_or_drop.add_arguments(sub.add_parser(
        "keep-or-drop", help="what claiming and the multipart fork still earn, each on its "
                             "headline figure, sides alternating in one run",
        description=keep_or_drop.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    from bench import begin_cost, callbacks, camera, detect_warm, stream

    detect_warm.add_arguments(sub.add_parser(
        "detect-warm", help="detector in process: a frame after an idle second vs back to "
                            "back, keep-warm, ONNX Runtime threads and spinning",
        description=detect_warm.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))

    callbacks.add_arguments(sub.add_parser(
        "callbacks", help="jobs/s with and without a webhook per job (a slow receiver): "
                          "the sender must not slow the workers",
        description=callbacks.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))

    camera.add_arguments(sub.add_parser(
        "camera", help="N Frigate-like cameras (keep-alive, 0.1 s timeout, open loop) on "
                       "/v1/vision/detection, idle and beside 4K face jobs: before / after / "
                       "a one-process synchronous baseline",
        description=camera.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))

    begin_cost.add_arguments(sub.add_parser(
        "begin-cost", help="Redis CPU per job start: the image through the begin script "
                           "(Lua) vs a plain GET pipelined after it",
        description=begin_cost.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    stream.add_arguments(sub.add_parser(
        "stream", help="/v1/stream vs the REST job API: images/s and CPU-ms per image "
                       "(320×320, 1280×720), and 200 connections held",
        description=stream.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    netloss.add_client_arguments(sub.add_parser(
        "client", help="(internal) one open-loop point, JSON on stdout; run inside a netns"))
    ready = sub.add_parser("ready", help="(internal) wait until a server is ready")
    ready.add_argument("--url", required=True)
    ready.add_argument("--path", default="/healthz")
    ready.add_argument("--redis-url")
    ready.add_argument("--tasks", default="")
    ready.add_argument("--timeout", type=float, default=120)

    args = parser.parse_args(argv)
    if args.command == "loadgen":
        compare.run(args, argv)
    elif args.command == "submit":
        submit.run(args, argv)
    elif args.command == "face4k":
        face4k.run(args, argv)
    elif args.command == "faces":
        faces.run(args, argv)
    elif args.command == "classify-eval":
        classify_eval.run(args, argv)
    elif args.command == "face-threshold":
        face_threshold.run(args, argv)
    elif args.command == "face-openset":
        face_openset.run(args, argv)
    elif args.command == "loss":
        netloss.run(args, argv)
    elif args.command == "detect-latency":
        detect_latency.run(args, argv)
    elif args.command == "frigate":
        frigate.run(args, argv)
    elif args.command == "detect-eval":
        detect_eval.run(args, argv)
    elif args.command == "scaleout":
        scaleout.run(args, argv)
    elif args.command == "broker-ceiling":
        broker_ceiling.run(args, argv)
    elif args.command == "keep-or-drop":
        keep_or_drop.run(args, argv[1:])
    elif args.command == "stream":
        stream.run(args, argv)
    elif args.command == "camera":
        camera.run(args, argv)
    elif args.command == "detect-warm":
        detect_warm.run(args, argv)
    elif args.command == "begin-cost":
        begin_cost.run(args, argv)
    elif args.command == "callbacks":
        callbacks.run(args, argv)
    elif args.command == "client":
        netloss.client_main(args)
    elif args.command == "ready":
        from bench.harness.stack import check_ready

        check_ready(args.url, args.path, args.redis_url,
                    [t for t in args.tasks.split(",") if t], args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
