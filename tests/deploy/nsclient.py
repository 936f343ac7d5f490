"""The client node's side of the namespace test: ``python -m tests.deploy.nsclient ...`` is
run inside the client namespace, so every request really crosses the bridge to the API
node.  Prints JSON on stdout for the test to read.

    submit URL TASK (--image PATH | --width N) [--count K]   -> ["id", ...]
    await URL ID --status running,succeeded [--timeout S]    -> the job once in a status
    results URL ID [ID ...] [--wait S]                       -> [job, ...] once final
    ready URL [--workers N] [--timeout S]                    -> /readyz once Redis answers
                                                                and N classify workers beat
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import requests


def _headers() -> dict[str, str]:
    key = os.environ.get("VISIONQ_API_KEY")
    return {"X-API-Key": key} if key else {}


def submit(url: str, task: str, image: bytes, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        response = requests.post(f"{url}/v1/jobs", params={"task": task}, headers=_headers(),
                                 files={"image": ("image.png", image)}, timeout=10)
        if response.status_code != 202:
            raise SystemExit(f"submit: {response.status_code} {response.text}")
        ids.append(response.json()["id"])
    return ids


def await_status(url: str, job_id: str, statuses: set[str], timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        job = requests.get(f"{url}/v1/jobs/{job_id}", headers=_headers(), timeout=10).json()
        if job.get("status") in statuses:
            return job
        if time.monotonic() > deadline:
            raise SystemExit(f"job {job_id} still {job.get('status')} after {timeout_s:g} s")
        time.sleep(0.05)


def results(url: str, ids: list[str], wait_s: float) -> list[dict]:
    deadline = time.monotonic() + wait_s
    jobs = []
    for job_id in ids:
        while True:  # ?wait is capped by the API; poll again until final or out of time
            left = max(1.0, deadline - time.monotonic())
            job = requests.get(f"{url}/v1/jobs/{job_id}", params={"wait": min(left, 20)},
                               headers=_headers(), timeout=left + 10).json()
            if job.get("status") in ("succeeded", "failed") or time.monotonic() > deadline:
                break
        jobs.append(job)
    return jobs


def ready(url: str, workers: int, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    detail: dict = {}
    while time.monotonic() < deadline:
        try:
            detail = requests.get(f"{url}/readyz", timeout=5).json()
            if detail.get("redis") == "ok" and detail["workers"]["classify"] >= workers:
                return detail
        except requests.RequestException as exc:
            detail = {"error": str(exc)}
        time.sleep(0.2)
    raise SystemExit(f"not ready after {timeout_s:g} s: {detail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nsclient")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("submit")
    p.add_argument("url")
    p.add_argument("task")
    p.add_argument("--image", type=Path)
    p.add_argument("--width", type=int)
    p.add_argument("--count", type=int, default=1)
    p = sub.add_parser("await")
    p.add_argument("url")
    p.add_argument("id")
    p.add_argument("--status", required=True)
    p.add_argument("--timeout", type=float, default=20)
    p = sub.add_parser("results")
    p.add_argument("url")
    p.add_argument("ids", nargs="+")
    p.add_argument("--wait", type=float, default=30)
    p = sub.add_parser("ready")
    p.add_argument("url")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--timeout", type=float, default=20)
    args = parser.parse_args(argv)
    if args.command == "submit":
        if args.image is not None:
            image = args.image.read_bytes()
        else:
            from tests.workers.sleepy_model import image_bytes

            image = image_bytes(args.width)
        out: object = submit(args.url, args.task, image, args.count)
    elif args.command == "await":
        out = await_status(args.url, args.id, set(args.status.split(",")), args.timeout)
    elif args.command == "ready":
        out = ready(args.url, args.workers, args.timeout)
    else:
        out = results(args.url, args.ids, args.wait)
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
